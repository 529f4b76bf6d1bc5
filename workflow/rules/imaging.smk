# Lesion segmentation per subject.


rule segment:
    input:
        unpack(organ_input),
        pet=subject_file("pet"),
    output:
        f"{RESULTS}/segmentation/{{subject}}_lesions.nii.gz",
    params:
        method=config["segmentation"]["method"],
        threshold=config["segmentation"]["threshold_suv"],
        fraction=config["segmentation"]["fraction"],
        min_volume=config["segmentation"]["min_volume_ml"],
        organs=organ_flag,
    log:
        f"{RESULTS}/logs/segment/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/segment/{{subject}}.tsv"
    conda:
        ENV
    shell:
        "biomarkers segment --pet {input.pet:q} --out {output:q} --method {params.method}"
        " --threshold {params.threshold} --fraction {params.fraction} --min-volume-ml {params.min_volume}"
        " {params.organs} --subject-id {wildcards.subject} > {log:q} 2>&1"
