# Per-lesion features, then one feature table per cohort.


rule lesion_features:
    input:
        image=pet_image,
        mask=rules.segment.output[0],
        params=RADIOMICS_PARAMS,
    output:
        f"{RESULTS}/features/lesions/{{subject}}.parquet",
    log:
        f"{RESULTS}/logs/features/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/features/{{subject}}.tsv"
    conda:
        ENV
    shell:
        "biomarkers features --image {input.image:q} --mask {input.mask:q} --params {input.params:q}"
        " --subject-id {wildcards.subject:q} --out {output:q} > {log:q} 2>&1"


# The same features of the U-Net's lesions, for models with `segmentation: unet`.
use rule lesion_features as lesion_features_unet with:
    input:
        image=pet_image,
        mask=f"{RESULTS}/unet/{{subject}}_lesions.nii.gz",
        params=RADIOMICS_PARAMS,
    output:
        f"{RESULTS}/features/unet_lesions/{{subject}}.parquet",
    log:
        f"{RESULTS}/logs/features_unet/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/features_unet/{{subject}}.tsv"


rule train_autoencoder:
    input:
        sheet=subjects_sheet_path_input,
        masks=training_lesion_masks,
    output:
        f"{RESULTS}/models/autoencoder.pt",
    params:
        cohort=TRAIN,
        masks=f"{RESULTS}/segmentation",
        latent=DEEP["latent"],
        epochs=training_epochs(DEEP),
        ct="--use-ct" if DEEP["use_ct"] else "--no-use-ct",
        seed=DEEP["seed"],
    log:
        f"{RESULTS}/logs/train_autoencoder.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_autoencoder.tsv"
    conda:
        ENV
    threads: DEEP["threads"]
    shell:
        "biomarkers train-autoencoder --subjects {input.sheet:q} --cohort {params.cohort} --masks {params.masks:q}"
        " --out {output:q} --latent {params.latent} --epochs {params.epochs} {params.ct} --seed {params.seed}"
        " --threads {threads} > {log:q} 2>&1"


rule embed:
    input:
        unpack(deep_ct_input),
        image=pet_image,
        mask=rules.segment.output[0],
        model=rules.train_autoencoder.output[0],
    output:
        f"{RESULTS}/features/deep/{{subject}}.parquet",
    params:
        ct=ct_flag,
    log:
        f"{RESULTS}/logs/embed/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/embed/{{subject}}.tsv"
    conda:
        ENV
    shell:
        "biomarkers embed --image {input.image:q} --mask {input.mask:q} --model {input.model:q} {params.ct}"
        " --subject-id {wildcards.subject:q} --out {output:q} > {log:q} 2>&1"


rule cohort_table:
    input:
        sheet=subjects_sheet_path_input,
        lesions=cohort_lesion_tables,
        deep=cohort_deep_tables,
    output:
        f"{RESULTS}/features/{{cohort}}.parquet",
    params:
        covariates=",".join(config["covariates"]),
        categorical=categorical_flags,
        texture=config["texture_aggregation"],
        extra=extra_flags,
    log:
        f"{RESULTS}/logs/cohort_table/{{cohort}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/cohort_table/{{cohort}}.tsv"
    conda:
        ENV
    shell:
        "biomarkers aggregate --subjects {input.sheet:q} --cohort {wildcards.cohort:q} --out {output:q}"
        " --covariates '{params.covariates}' {params.categorical} --texture {params.texture} {params.extra}"
        " {input.lesions:q} > {log:q} 2>&1"


use rule cohort_table as cohort_table_unet with:
    input:
        sheet=subjects_sheet_path_input,
        lesions=cohort_unet_lesion_tables,
        deep=[],
    output:
        f"{RESULTS}/features/unet/{{cohort}}.parquet",
    log:
        f"{RESULTS}/logs/cohort_table_unet/{{cohort}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/cohort_table_unet/{{cohort}}.tsv"


rule stability:
    input:
        unpack(centers_input),
        image=pet_image,
        mask=rules.segment.output[0],
        params=RADIOMICS_PARAMS,
    output:
        f"{RESULTS}/stability/lesions/{{subject}}.parquet",
    params:
        perturb=perturb_flags,
        fwhm=source_fwhm_flag,
        seed=STABILITY["seed"],
    log:
        f"{RESULTS}/logs/stability/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/stability/{{subject}}.tsv"
    conda:
        ENV
    shell:
        "biomarkers stability --image {input.image:q} --mask {input.mask:q} --params {input.params:q}"
        " --subject-id {wildcards.subject:q} {params.perturb} {params.fwhm} --seed {params.seed}"
        " --out {output:q} > {log:q} 2>&1"


rule icc:
    input:
        stability_tables,
    output:
        table=report(f"{RESULTS}/stability/icc.tsv", caption="../report/icc_table.rst", category="Feature stability"),
        plot=report(f"{RESULTS}/report/icc.png", caption="../report/icc.rst", category="Feature stability"),
    params:
        kind=STABILITY["kind"],
    log:
        f"{RESULTS}/logs/icc.log",
    benchmark:
        f"{RESULTS}/benchmarks/icc.tsv"
    conda:
        ENV
    shell:
        "biomarkers icc --kind {params.kind:q} --out {output.table:q} --plot {output.plot:q} {input:q} > {log:q} 2>&1"
