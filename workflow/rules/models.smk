# Fit on the training cohort only; score every cohort with the frozen model; evaluate.


rule fit:
    input:
        f"{RESULTS}/features/{TRAIN}.parquet",
    output:
        model=directory(f"{RESULTS}/model"),
        plot=report(f"{RESULTS}/report/coefficients.png", caption="../report/coefficients.rst", category="Model"),
    params:
        name=config["model"]["name"],
        include=",".join(config["model"]["features"]),
        log_features=",".join(config["model"]["log_features"]),
        penalizer=config["model"]["penalizer"],
        l1_ratio=config["model"]["l1_ratio"],
    log:
        f"{RESULTS}/logs/fit.log",
    benchmark:
        f"{RESULTS}/benchmarks/fit.tsv"
    conda:
        ENV
    shell:
        "biomarkers fit --features {input:q} --model {params.name} --out {output.model:q} --plot {output.plot:q}"
        " --include '{params.include}' --log-features '{params.log_features}'"
        " --penalizer {params.penalizer} --l1-ratio {params.l1_ratio} > {log:q} 2>&1"


rule score:
    input:
        model=rules.fit.output.model,
        features=f"{RESULTS}/features/{{cohort}}.parquet",
    output:
        f"{RESULTS}/scores/{{cohort}}.parquet",
    log:
        f"{RESULTS}/logs/score/{{cohort}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/score/{{cohort}}.tsv"
    conda:
        ENV
    shell:
        "biomarkers score --model {input.model:q} --features {input.features:q} --out {output:q} > {log:q} 2>&1"


rule evaluate:
    input:
        unpack(truth_input),
        scores=rules.score.output[0],
    output:
        metrics=f"{RESULTS}/metrics/{{cohort}}.json",
        table=f"{RESULTS}/metrics/{{cohort}}.tsv",
        km=report(
            f"{RESULTS}/report/km_{{cohort}}.png",
            caption="../report/km.rst",
            category="Validation",
            subcategory="{cohort}",
        ),
        cindex=report(
            f"{RESULTS}/report/cindex_{{cohort}}.png",
            caption="../report/cindex.rst",
            category="Validation",
            subcategory="{cohort}",
        ),
    params:
        truth=truth_flag,
        bootstrap=config["evaluation"]["bootstrap"],
        seed=config["evaluation"]["seed"],
    log:
        f"{RESULTS}/logs/evaluate/{{cohort}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{cohort}}.tsv"
    conda:
        ENV
    shell:
        "biomarkers evaluate --scores {input.scores:q} --out {output.metrics:q} {params.truth}"
        " --bootstrap {params.bootstrap} --seed {params.seed} --table {output.table:q}"
        " --km-plot {output.km:q} --cindex-plot {output.cindex:q} --label {wildcards.cohort} > {log:q} 2>&1"
