# SUV images (from DICOM when the config says so) and lesion segmentation per subject.


if config["pet_source"] == "dicom":
    for index, (label, ids) in enumerate(chunks()):

        rule:
            name:
                chunk_rule_name("suv", index)
            input:
                chunk_inputs(lambda s: [subjects().loc[s, "pet_dicom"]], ids),
            output:
                [f"{RESULTS}/suv/{s}.{ext}" for s in ids for ext in ("nii.gz", "json")],
            params:
                tasks=chunk_tasks(suv_task, ids),
            log:
                f"{RESULTS}/logs/suv/{label}.log",
            benchmark:
                f"{RESULTS}/benchmarks/suv/{label}.tsv"
            threads: 1
            resources:
                **chunk_resources("suv", len(ids)),
            conda:
                ENV
            shell:
                "biomarkers batch --tasks {params.tasks:q} > {log:q} 2>&1"


# CT DICOM series and RTSTRUCT / DICOM-SEG masks onto the PET grid (when the sheet has them).
for stage, wanted, column, folder, task in [("ct", CT_DICOM, "ct_dicom", "ct", ct_task),
                                            ("masks", MASK_DICOM, "mask", "masks", mask_task)]:
    if not wanted:
        continue
    for index, (label, ids) in enumerate(chunks()):

        rule:
            name:
                chunk_rule_name(stage, index)
            input:
                chunk_inputs(lambda s, column=column: [subjects().loc[s, column], pet_image(per_subject(s))], ids),
            output:
                [f"{RESULTS}/{folder}/{s}.nii.gz" for s in ids],
            params:
                tasks=chunk_tasks(task, ids),
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


for index, (label, ids) in enumerate(chunks()):

    rule:
        name:
            chunk_rule_name("segment", index)
        input:
            chunk_inputs(segment_inputs, ids),
        output:
            [lesion_mask("segmentation", s) for s in ids],
        params:
            tasks=chunk_tasks(segment_task, ids),
        log:
            f"{RESULTS}/logs/segment/{label}.log",
        benchmark:
            f"{RESULTS}/benchmarks/segment/{label}.tsv"
        threads: 1
        resources:
            **chunk_resources("segment", len(ids)),
        conda:
            ENV
        shell:
            "biomarkers batch --tasks {params.tasks:q} > {log:q} 2>&1"


rule train_unet:
    input:
        training_images,
        sheet=image_sheet_input,
    output:
        f"{RESULTS}/models/unet.pt",
    params:
        cohort=TRAIN,
        epochs=training_epochs(UNET),
        patches=UNET["patches_per_epoch"],
        batch=UNET["batch_size"],
        lr=UNET["lr"],
        lesions=UNET["lesion_fraction"],
        hot=UNET["hot_fraction"],
        organ_fraction=UNET["organ_fraction"],
        blur=UNET["blur_fwhm_mm"],
        channels=UNET["base_channels"],
        patch=UNET["patch"],
        ct="--use-ct" if UNET["use_ct"] else "--no-use-ct",
        organs="--use-organs" if UNET["organs"] else "--no-use-organs",
        spacing=UNET["spacing_mm"],
        seed=UNET["seed"],
    log:
        f"{RESULTS}/logs/train_unet.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_unet.tsv"
    conda:
        ENV
    threads: UNET["threads"]
    resources:
        mem_mb=4000,
        runtime=training_runtime(UNET, 16),
    shell:
        "biomarkers train-unet --subjects {input.sheet:q} --cohort {params.cohort} --out {output:q}"
        " --epochs {params.epochs} --patches-per-epoch {params.patches} --batch-size {params.batch}"
        " --lr {params.lr} --lesion-fraction {params.lesions} --hot-fraction {params.hot}"
        " --organ-fraction {params.organ_fraction} --blur-fwhm-mm {params.blur}"
        " --base-channels {params.channels} --patch {params.patch} {params.ct} {params.organs}"
        " --spacing-mm {params.spacing} --seed {params.seed}"
        " --threads {threads} > {log:q} 2>&1"


if UNET["enabled"]:
    for index, (label, ids) in enumerate(chunks()):

        rule:
            name:
                chunk_rule_name("segment_unet", index)
            input:
                chunk_inputs(unet_inputs, ids),
            output:
                [f"{RESULTS}/unet/{s}_{kind}.nii.gz" for s in ids for kind in UNET_OUTPUTS],
            params:
                tasks=chunk_tasks(unet_task, ids),
            log:
                f"{RESULTS}/logs/segment_unet/{label}.log",
            benchmark:
                f"{RESULTS}/benchmarks/segment_unet/{label}.tsv"
            threads: 1
            resources:
                **chunk_resources("segment_unet", len(ids)),
            conda:
                ENV
            shell:
                "biomarkers batch --tasks {params.tasks:q} > {log:q} 2>&1"


rule segmentation_quality:
    input:
        unet_masks,
        unet_organ_masks,
        wildcard_cohort_images,
        sheet=image_sheet_input,
    output:
        cases=f"{RESULTS}/segmentation_quality/{{cohort}}_cases.tsv",
        organs=(
            report(
                f"{RESULTS}/segmentation_quality/{{cohort}}_organ_dice.tsv",
                caption="../report/organ_dice.rst",
                category="Segmentation",
                subcategory="{cohort}",
            )
            if SHEET_ORGANS
            else []
        ),
        summary=report(
            f"{RESULTS}/segmentation_quality/{{cohort}}_summary.tsv",
            caption="../report/segmentation_quality.rst",
            category="Segmentation",
            subcategory="{cohort}",
        ),
        plot=report(
            f"{RESULTS}/report/segmentation_quality_{{cohort}}.png",
            caption="../report/segmentation_quality.rst",
            category="Segmentation",
            subcategory="{cohort}",
        ),
    params:
        methods=compare_flags,
        threshold=config["segmentation"]["threshold_suv"],
        min_volume=config["segmentation"]["min_volume_ml"],
        organs="--exclude-organs" if config["segmentation"]["exclude_organs"] and SHEET_ORGANS else "--no-exclude-organs",
        without=without_organs_flag,
        predicted=unet_predicted_flag,
        organ_dice=organ_dice_flag,
    log:
        f"{RESULTS}/logs/segmentation_quality/{{cohort}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/segmentation_quality/{{cohort}}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    conda:
        ENV
    shell:
        "biomarkers segment-quality --subjects {input.sheet:q} --cohort {wildcards.cohort} {params.methods}"
        " --threshold {params.threshold} --min-volume-ml {params.min_volume} {params.organs} {params.without}"
        " {params.predicted}"
        " --out {output.cases:q} --summary {output.summary:q} --plot {output.plot:q}"
        " {params.organ_dice} > {log:q} 2>&1"
