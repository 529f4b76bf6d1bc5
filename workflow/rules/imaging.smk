# SUV images (from DICOM when the config says so) and lesion segmentation per subject.


rule suv:
    input:
        subject_file("pet_dicom"),
    output:
        image=f"{RESULTS}/suv/{{subject}}.nii.gz",
        sidecar=f"{RESULTS}/suv/{{subject}}.json",
    params:
        norm=config["suv_normalisation"],
    log:
        f"{RESULTS}/logs/suv/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/suv/{{subject}}.tsv"
    conda:
        ENV
    shell:
        "biomarkers suv {input:q} --out {output.image:q} --norm {params.norm} > {log:q} 2>&1"


rule segment:
    input:
        unpack(organ_input),
        unpack(reference_input),
        pet=pet_image,
    output:
        f"{RESULTS}/segmentation/{{subject}}_lesions.nii.gz",
    params:
        method=config["segmentation"]["method"],
        threshold=config["segmentation"]["threshold_suv"],
        fraction=config["segmentation"]["fraction"],
        min_volume=config["segmentation"]["min_volume_ml"],
        organs=segment_flags,
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


rule train_unet:
    input:
        sheet=subjects_sheet_path_input,
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
    shell:
        "biomarkers train-unet --subjects {input.sheet:q} --cohort {params.cohort} --out {output:q}"
        " --epochs {params.epochs} --patches-per-epoch {params.patches} --batch-size {params.batch}"
        " --lr {params.lr} --lesion-fraction {params.lesions} --hot-fraction {params.hot}"
        " --organ-fraction {params.organ_fraction} --blur-fwhm-mm {params.blur}"
        " --base-channels {params.channels} --patch {params.patch} {params.ct} {params.organs}"
        " --spacing-mm {params.spacing} --seed {params.seed}"
        " --threads {threads} > {log:q} 2>&1"


rule segment_unet:
    input:
        unpack(unet_ct_input),
        pet=pet_image,
        model=unet_model,
    output:
        lesions=f"{RESULTS}/unet/{{subject}}_lesions.nii.gz",
        organs=f"{RESULTS}/unet/{{subject}}_organs.nii.gz" if UNET["organs"] else [],
    params:
        ct=ct_flag,
        probability=UNET["probability"],
        organs=unet_organs_flag,
        tta="--tta" if UNET["tta"] else "--no-tta",
        min_volume=config["segmentation"]["min_volume_ml"],
    log:
        f"{RESULTS}/logs/segment_unet/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/segment_unet/{{subject}}.tsv"
    conda:
        ENV
    shell:
        "biomarkers segment --pet {input.pet:q} --method unet --model {input.model:q} {params.ct}"
        " --probability {params.probability} {params.tta} --min-volume-ml {params.min_volume}"
        " {params.organs} --out {output.lesions:q}"
        " --subject-id {wildcards.subject} > {log:q} 2>&1"


rule segmentation_quality:
    input:
        unet_masks,
        unet_organ_masks,
        sheet=subjects_sheet_path_input,
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
    conda:
        ENV
    shell:
        "biomarkers segment-quality --subjects {input.sheet:q} --cohort {wildcards.cohort} {params.methods}"
        " --threshold {params.threshold} --min-volume-ml {params.min_volume} {params.organs} {params.without}"
        " {params.predicted}"
        " --out {output.cases:q} --summary {output.summary:q} --plot {output.plot:q}"
        " {params.organ_dice} > {log:q} 2>&1"
