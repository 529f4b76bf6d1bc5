# The synthetic cohort (only when the config has a `simulate` section).


checkpoint simulate:
    output:
        sheet=f"{RESULTS}/cohort/subjects.tsv",
        truth=f"{RESULTS}/cohort/truth.tsv",
        centers=report(f"{RESULTS}/cohort/centers.tsv", caption="../report/centers.rst", category="Cohort"),
    params:
        folder=sheet_folder,
        n=config.get("simulate", {}).get("subjects"),
        centers=config.get("simulate", {}).get("centers"),
        validation=config.get("simulate", {}).get("validation_centers"),
        seed=config.get("simulate", {}).get("seed"),
        shifted=config.get("simulate", {}).get("shifted"),
        dicom=dicom_flag,
    log:
        f"{RESULTS}/logs/simulate.log",
    benchmark:
        f"{RESULTS}/benchmarks/simulate.tsv"
    threads: config.get("simulate", {}).get("threads", 2)
    resources:
        mem_mb=2500,
        runtime=simulate_runtime,
    conda:
        ENV
    shell:
        "biomarkers simulate --out {params.folder:q} --subjects {params.n} --centers {params.centers}"
        " --validation-centers {params.validation} --seed {params.seed}"
        " --shifted {params.shifted} {params.dicom} --threads {threads} 2> {log:q}"


# A copy of the sheet naming the converted images (SUV, CT, masks from DICOM), for the rules that
# read images through a sheet (U-Net training, segmentation quality, patches, autoencoder).
rule image_sheet:
    input:
        converted_images,
        sheet=subjects_sheet_path_input,
    output:
        f"{RESULTS}/cohort/images.tsv",
    params:
        columns=image_sheet_flags,
    log:
        f"{RESULTS}/logs/image_sheet.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        ENV
    shell:
        "biomarkers image-sheet --subjects {input.sheet:q} {params.columns} --out {output:q} > {log:q} 2>&1"
