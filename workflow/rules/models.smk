# Choose among models by nested cross-validation on the training cohort; fit every model on the
# training cohort only; score every cohort with the frozen models; evaluate; compare models.


rule lesion_patches:
    input:
        patch_images,
        masks=cohort_lesion_masks,
        sheet=image_sheet_input,
    output:
        f"{RESULTS}/patches/{{cohort}}.npz",
    params:
        masks=f"{RESULTS}/segmentation",
        size=PATCHES["size_mm"],
        shape=PATCHES["shape"],
        ct="--use-ct" if PATCHES["use_ct"] else "--no-use-ct",
    log:
        f"{RESULTS}/logs/lesion_patches/{{cohort}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/lesion_patches/{{cohort}}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=15,
    conda:
        ENV
    shell:
        "biomarkers lesion-patches --subjects {input.sheet:q} --cohort {wildcards.cohort} --masks {params.masks:q}"
        " --size-mm {params.size} --shape {params.shape} {params.ct} --out {output:q} > {log:q} 2>&1"


rule crossvalidate:
    input:
        unpack(patches_input),
        features=f"{RESULTS}/features/{TRAIN}.parquet",
    output:
        summary=report(f"{RESULTS}/models/cv_summary.tsv", caption="../report/cv.rst", category="Models"),
        folds=f"{RESULTS}/models/cv_folds.tsv",
    params:
        specs=cv_spec_flags,
        pipeline=pipeline_flags,
        include=",".join(config["model"]["features"]),
        folds=config["model"]["cv_folds"],
        repeats=config["model"]["cv_repeats"],
        patches=patches_flag,
        train=TRAIN,
    log:
        f"{RESULTS}/logs/crossvalidate.log",
    benchmark:
        f"{RESULTS}/benchmarks/crossvalidate.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    shell:
        "biomarkers cv --features {input.features:q} {params.specs} --include '{params.include}'"
        " {params.pipeline} --folds {params.folds} --repeats {params.repeats}"
        " {params.patches} --training-cohort {params.train:q} --threads {threads} --out {output.summary:q}"
        " --folds-out {output.folds:q} > {log:q} 2>&1"


rule fit:
    input:
        unpack(patches_input),
        unpack(abstention_input),
        features=model_feature_table,
    output:
        model=directory(f"{RESULTS}/models/{{model}}"),
        plot=report(
            f"{RESULTS}/report/model_{{model}}.png",
            caption="../report/model.rst",
            category="Models",
            subcategory="{model}",
        ),
    params:
        spec=model_spec,
        pipeline=pipeline_flags,
        horizons=",".join(str(h) for h in config["model"]["horizons_days"]),
        abstain=config["model"]["abstain_quantile"],
        patches=patches_flag,
        abstention=abstention_flag,
        train=TRAIN,
    log:
        f"{RESULTS}/logs/fit/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fit/{{model}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    shell:
        "biomarkers fit --features {input.features:q} --spec {params.spec:q} --out {output.model:q} --plot {output.plot:q}"
        " {params.pipeline}"
        " --horizons '{params.horizons}' --abstain-quantile {params.abstain} {params.patches} {params.abstention}"
        " --threads {threads} --training-cohort {params.train:q} > {log:q} 2>&1"


rule score:
    input:
        unpack(patches_input),
        model=rules.fit.output.model,
        features=model_feature_table,
    output:
        f"{RESULTS}/scores/{{model}}/{{cohort}}.parquet",
    params:
        patches=patches_flag,
    log:
        f"{RESULTS}/logs/score/{{model}}/{{cohort}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/score/{{model}}/{{cohort}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "biomarkers score --model {input.model:q} --features {input.features:q} {params.patches} --threads {threads}"
        " --out {output:q} > {log:q} 2>&1"


rule evaluate:
    input:
        unpack(truth_input),
        scores=rules.score.output[0],
    output:
        metrics=f"{RESULTS}/metrics/{{model}}/{{cohort}}.json",
        table=f"{RESULTS}/metrics/{{model}}/{{cohort}}.tsv",
        km=report(
            f"{RESULTS}/report/km_{{model}}_{{cohort}}.png",
            caption="../report/km.rst",
            category="Validation",
            subcategory="{cohort}",
            labels={"model": "{model}", "figure": "Kaplan-Meier by risk group"},
        ),
        cindex=report(
            f"{RESULTS}/report/cindex_{{model}}_{{cohort}}.png",
            caption="../report/cindex.rst",
            category="Validation",
            subcategory="{cohort}",
            labels={"model": "{model}", "figure": "C-index"},
        ),
        calibration=report(
            f"{RESULTS}/report/calibration_{{model}}_{{cohort}}.png",
            caption="../report/calibration.rst",
            category="Validation",
            subcategory="{cohort}",
            labels={"model": "{model}", "figure": "calibration"},
        ),
    params:
        truth=truth_flag,
        bootstrap=config["evaluation"]["bootstrap"],
        seed=config["evaluation"]["seed"],
    log:
        f"{RESULTS}/logs/evaluate/{{model}}/{{cohort}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{model}}/{{cohort}}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        ENV
    shell:
        "biomarkers evaluate --scores {input.scores:q} --out {output.metrics:q} {params.truth}"
        " --bootstrap {params.bootstrap} --seed {params.seed} --table {output.table:q}"
        " --km-plot {output.km:q} --cindex-plot {output.cindex:q} --calibration-plot {output.calibration:q}"
        " --label {wildcards.cohort:q} --model-name {wildcards.model:q}"
        " > {log:q} 2>&1"


rule uncertainty:
    input:
        scores=rules.score.output[0],
        metrics=rules.evaluate.output.metrics,
    output:
        report(
            f"{RESULTS}/report/uncertainty_{{model}}_{{cohort}}.png",
            caption="../report/uncertainty.rst",
            category="Validation",
            subcategory="{cohort}",
            labels={"model": "{model}", "figure": "uncertainty"},
        ),
    log:
        f"{RESULTS}/logs/uncertainty/{{model}}/{{cohort}}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        ENV
    shell:
        "biomarkers uncertainty-plot --scores {input.scores:q} --metrics {input.metrics:q} --out {output:q}"
        " --label '{wildcards.model}, {wildcards.cohort}' > {log:q} 2>&1"


rule compare_models:
    input:
        unpack(model_scores),
    output:
        table=report(
            f"{RESULTS}/report/compare_{{cohort}}.tsv",
            caption="../report/compare.rst",
            category="Validation",
            subcategory="{cohort}",
            labels={"model": "all", "figure": "paired comparison"},
        ),
    params:
        scores=named_scores,
        bootstrap=config["evaluation"]["bootstrap"],
        seed=config["evaluation"]["seed"],
    log:
        f"{RESULTS}/logs/compare/{{cohort}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/compare/{{cohort}}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        ENV
    shell:
        "biomarkers compare {params.scores} --out {output.table:q} --bootstrap {params.bootstrap} --seed {params.seed}"
        " > {log:q} 2>&1"


rule signature:
    input:
        unpack(signature_inputs),
        model=f"{RESULTS}/models/{PRIMARY}",
        train_scores=f"{RESULTS}/scores/{PRIMARY}/{TRAIN}.parquet",
        params=RADIOMICS_PARAMS,
    output:
        directory(f"{RESULTS}/signature"),
    params:
        settings=signature_flags,
        tables=signature_table_flags,
        norm=config["suv_normalisation"],
        covariates=",".join(config["covariates"]),
        categorical=categorical_flags,
        texture=config["texture_aggregation"],
    log:
        f"{RESULTS}/logs/signature.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        ENV
    shell:
        "biomarkers signature --model {input.model:q} --out {output:q} --params {input.params:q}"
        " --training-scores {input.train_scores:q} {params.tables} {params.settings} --suv-norm {params.norm}"
        " --covariates '{params.covariates}' {params.categorical} --texture {params.texture} > {log:q} 2>&1"


# Uncertainty methods compared (MC dropout, ensemble, input distance, conformal bound) on
# cross-validation of the training cohort: the conformal calibration and the abstention method,
# which `fit` freezes into the model.
rule uncertainty_choice:
    input:
        train=model_feature_table,
    output:
        calibration=f"{RESULTS}/uncertainty/{{model}}/calibration.parquet",
        choice=f"{RESULTS}/uncertainty/{{model}}/choice.json",
    params:
        spec=model_spec,
        pipeline=pipeline_flags,
        settings=uncertainty_flags,
        train=TRAIN,
    log:
        f"{RESULTS}/logs/uncertainty_choice/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/uncertainty_choice/{{model}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        ENV
    shell:
        "biomarkers uncertainty-choice --features {input.train:q} --spec {params.spec:q}"
        " {params.pipeline} {params.settings}"
        " --training-cohort {params.train:q} --threads {threads} --out {output.calibration:q}"
        " --choice {output.choice:q} > {log:q} 2>&1"


# Each method's uncertainty in every validation cohort, from the models refitted on the training cohort.
rule uncertainty_scores:
    input:
        unpack(uncertainty_cohort_tables),
        calibration=rules.uncertainty_choice.output.calibration,
    output:
        scores=f"{RESULTS}/uncertainty/{{model}}/scores.parquet",
    params:
        cohorts=cohort_table_flags,
        train=TRAIN,
    log:
        f"{RESULTS}/logs/uncertainty_scores/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/uncertainty_scores/{{model}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        ENV
    shell:
        "biomarkers uncertainty-scores --features {input.train:q} {params.cohorts} --calibration {input.calibration:q}"
        " --training-cohort {params.train:q} --threads {threads} --out {output.scores:q} > {log:q} 2>&1"


rule uncertainty_evaluation:
    wildcard_constraints:
        cohort=r"(?!choice\.)[^/]+",  # uncertainty/<model>/choice.json is uncertainty_choice's
    input:
        unpack(truth_input),
        scores=rules.uncertainty_scores.output.scores,
    output:
        metrics=f"{RESULTS}/uncertainty/{{model}}/{{cohort}}.json",
        table=report(
            f"{RESULTS}/uncertainty/{{model}}/{{cohort}}.tsv",
            caption="../report/uncertainty_evaluation.rst",
            category="Uncertainty",
            subcategory="{cohort}",
            labels={"model": "{model}", "figure": "table"},
        ),
        plot=report(
            f"{RESULTS}/report/uncertainty_evaluation_{{model}}_{{cohort}}.png",
            caption="../report/uncertainty_evaluation.rst",
            category="Uncertainty",
            subcategory="{cohort}",
            labels={"model": "{model}", "figure": "evaluation"},
        ),
    params:
        truth=truth_flag,
        bootstrap=config["evaluation"]["bootstrap"],
        seed=config["evaluation"]["seed"],
    log:
        f"{RESULTS}/logs/uncertainty_evaluation/{{model}}/{{cohort}}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=20,
    conda:
        ENV
    shell:
        "biomarkers uncertainty-evaluate --scores {input.scores:q} --cohort {wildcards.cohort:q} {params.truth}"
        " --bootstrap {params.bootstrap} --seed {params.seed} --out {output.metrics:q} --table {output.table:q}"
        " --plot {output.plot:q} --label {wildcards.cohort:q} > {log:q} 2>&1"


# Imaging subtypes: k-means on the training cohort's (deep) features, frozen, assigned to every
# validation cohort; Kaplan-Meier and log-rank by subtype.
rule subtypes:
    input:
        unpack(subtype_tables),
    output:
        model=f"{RESULTS}/subtypes/subtypes.json",
        assignments=f"{RESULTS}/subtypes/assignments.tsv",
        plots=[
            report(
                f"{RESULTS}/report/subtypes_{cohort}.png",
                caption="../report/subtypes.rst",
                category="Subtypes",
                labels={"cohort": cohort},
            )
            for cohort in [TRAIN] + [c for c in dict.fromkeys(c for _, c in PLAN) if c != TRAIN]
        ],
    params:
        cohorts=cohort_table_flags,
        include=",".join(SUBTYPES["features"]),
        k=",".join(str(k) for k in SUBTYPES["k"]),
        harmonize="--harmonize" if config["model"]["harmonize"] else "--no-harmonize",
        seed=SUBTYPES["seed"],
        folder=lambda wildcards, output: os.path.dirname(output.model),
        plots=lambda wildcards, output: os.path.dirname(output.plots[0]),
        train=TRAIN,
    log:
        f"{RESULTS}/logs/subtypes.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        ENV
    shell:
        "biomarkers subtypes --features {input.train:q} {params.cohorts} --include '{params.include}' --k {params.k}"
        " {params.harmonize} --seed {params.seed} --training-cohort {params.train:q} --out {params.folder:q}"
        " --plot-dir {params.plots:q} > {log:q} 2>&1"


# What drives the end-to-end model's score: each lesion's attention weight and leave-one-out
# contribution, and occlusion maps of the highest- and lowest-risk patients of each cohort.
rule explain:
    input:
        model=rules.fit.output.model,
        features=model_feature_table,
        patches=f"{RESULTS}/patches/{{cohort}}.npz",
    output:
        table=f"{RESULTS}/explanations/{{model}}/{{cohort}}.tsv",
        plot=report(
            f"{RESULTS}/report/explanations_{{model}}_{{cohort}}.png",
            caption="../report/explanations.rst",
            category="Explanations",
            subcategory="{cohort}",
            labels={"model": "{model}"},
        ),
    log:
        f"{RESULTS}/logs/explain/{{model}}/{{cohort}}.log",
    threads: 1
    resources:
        mem_mb=1500,
        runtime=15,
    conda:
        ENV
    shell:
        "biomarkers explain --model {input.model:q} --features {input.features:q} --patches {input.patches:q}"
        " --out {output.table:q} --plot {output.plot:q} --label '{wildcards.model}, {wildcards.cohort}' --threads {threads} > {log:q} 2>&1"


# Transfer learning: the end-to-end model from scratch vs with an encoder pretrained without outcomes.
rule pretraining:
    input:
        unpack(pretraining_inputs),
    output:
        metrics=f"{RESULTS}/pretraining/{{model}}/{{cohort}}.json",
        plot=report(
            f"{RESULTS}/report/pretraining_{{model}}_{{cohort}}.png",
            caption="../report/pretraining.rst",
            category="Models",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "pretraining, {cohort}"},
        ),
    params:
        spec=model_spec,
        every=pretraining_flags,
        seeds=",".join(str(s) for s in PRETRAINING["seeds"]),
        epochs=PRETRAINING["epochs"],
        bootstrap=config["evaluation"]["bootstrap"],
        seed=config["evaluation"]["seed"],
        train=TRAIN,
    log:
        f"{RESULTS}/logs/pretraining/{{model}}/{{cohort}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/pretraining/{{model}}/{{cohort}}.tsv"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=120,
    conda:
        ENV
    shell:
        "biomarkers pretraining --features {input.train:q} --patches {input.train_patches:q}"
        " --validation-features {input.validation:q} --validation-patches {input.validation_patches:q} {params.every}"
        " --spec {params.spec:q} --seeds {params.seeds} --pretrain-epochs {params.epochs}"
        " --bootstrap {params.bootstrap} --seed {params.seed} --training-cohort {params.train:q}"
        " --out {output.metrics:q} --plot {output.plot:q} --label '{wildcards.model}, {wildcards.cohort}' --threads {threads} > {log:q} 2>&1"
