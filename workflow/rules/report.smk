# One table of every cohort's metrics for the HTML report (`snakemake --report`).


rule metrics_table:
    input:
        cohort_metric_tables,
    output:
        report(f"{RESULTS}/report/metrics.tsv", caption="../report/metrics.rst", category="Validation"),
    log:
        f"{RESULTS}/logs/metrics_table.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV
    shell:
        "biomarkers collect --out {output:q} {input:q} > {log:q} 2>&1"


rule headline:
    input:
        rules.metrics_table.output[0],
    output:
        table=report(f"{RESULTS}/report/headline.tsv", caption="../report/headline.rst", category="Validation"),
        plot=report(f"{RESULTS}/report/cindex_models.png", caption="../report/cindex_models.rst", category="Validation"),
    params:
        train=TRAIN,
    log:
        f"{RESULTS}/logs/headline.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV
    shell:
        "biomarkers headline {input:q} --out {output.table:q} --plot {output.plot:q} --plot-skip-cohort {params.train:q}"
        " > {log:q} 2>&1"
