# Per-lesion features, then one feature table per cohort.


# The lesion features of the pipeline's segmentation, and the same features of the U-Net's
# lesions (for models with `segmentation: unet`).
for stage, masks, tables in [("features", "segmentation", "lesions"), ("features_unet", "unet", "unet_lesions")]:
    if stage == "features_unet" and not UNET_MODELS:
        continue
    for index, (label, ids) in enumerate(chunks()):

        rule:
            name:
                chunk_rule_name(stage, index)
            input:
                chunk_inputs(lambda s, masks=masks: [pet_image(per_subject(s)), lesion_mask(masks, s)], ids),
                params=RADIOMICS_PARAMS,
            output:
                [f"{RESULTS}/features/{tables}/{s}.parquet" for s in ids],
            params:
                tasks=chunk_tasks(features_task(masks, tables), ids),
            log:
                f"{RESULTS}/logs/{stage}/{label}.log",
            benchmark:
                f"{RESULTS}/benchmarks/{stage}/{label}.tsv"
            threads: 1
            resources:
                **chunk_resources(stage, len(ids)),
            conda:
                ENV
            shell:
                "biomarkers batch --tasks {params.tasks:q} > {log:q} 2>&1"


rule train_autoencoder:
    input:
        autoencoder_images,
        sheet=image_sheet_input,
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
    resources:
        mem_mb=1500,
        runtime=training_runtime(DEEP, 30),
    shell:
        "biomarkers train-autoencoder --subjects {input.sheet:q} --cohort {params.cohort} --masks {params.masks:q}"
        " --out {output:q} --latent {params.latent} --epochs {params.epochs} {params.ct} --seed {params.seed}"
        " --threads {threads} > {log:q} 2>&1"


if DEEP["enabled"]:
    for index, (label, ids) in enumerate(chunks()):

        rule:
            name:
                chunk_rule_name("embed", index)
            input:
                chunk_inputs(
                    lambda s: [pet_image(per_subject(s)), lesion_mask("segmentation", s),
                               *file_values(deep_ct_input(per_subject(s)))],
                    ids,
                ),
                model=f"{RESULTS}/models/autoencoder.pt",
            output:
                [f"{RESULTS}/features/deep/{s}.parquet" for s in ids],
            params:
                tasks=chunk_tasks(embed_task, ids),
            log:
                f"{RESULTS}/logs/embed/{label}.log",
            benchmark:
                f"{RESULTS}/benchmarks/embed/{label}.tsv"
            threads: 1
            resources:
                **chunk_resources("embed", len(ids)),
            conda:
                ENV
            shell:
                "biomarkers batch --tasks {params.tasks:q} > {log:q} 2>&1"


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
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
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


for index, (label, ids) in enumerate(chunks(stability_subjects())):

    rule:
        name:
            chunk_rule_name("stability", index)
        input:
            chunk_inputs(lambda s: [pet_image(per_subject(s)), lesion_mask("segmentation", s)], ids),
            unpack(centers_input),
            params=RADIOMICS_PARAMS,
        output:
            [f"{RESULTS}/stability/lesions/{s}.parquet" for s in ids],
        params:
            tasks=chunk_tasks(stability_task, ids),
        log:
            f"{RESULTS}/logs/stability/{label}.log",
        benchmark:
            f"{RESULTS}/benchmarks/stability/{label}.tsv"
        threads: 1
        resources:
            **chunk_resources("stability", len(ids)),
        conda:
            ENV
        shell:
            "biomarkers batch --tasks {params.tasks:q} > {log:q} 2>&1"


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
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        ENV
    shell:
        "biomarkers icc --kind {params.kind:q} --out {output.table:q} --plot {output.plot:q} {input:q} > {log:q} 2>&1"
