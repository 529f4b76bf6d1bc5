# Per-lesion features, then one feature table per cohort.


rule lesion_features:
    input:
        image=pet_image,
        mask=rules.segment.output[0],
        params=config["radiomics_params"],
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
        " --subject-id {wildcards.subject} --out {output:q} > {log:q} 2>&1"


rule cohort_table:
    input:
        sheet=subjects_sheet_path_input,
        lesions=cohort_lesion_tables,
    output:
        f"{RESULTS}/features/{{cohort}}.parquet",
    params:
        covariates=",".join(config["covariates"]),
        categorical=categorical_flags,
    log:
        f"{RESULTS}/logs/cohort_table/{{cohort}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/cohort_table/{{cohort}}.tsv"
    conda:
        ENV
    shell:
        "biomarkers aggregate --subjects {input.sheet:q} --cohort {wildcards.cohort} --out {output:q}"
        " --covariates '{params.covariates}' {params.categorical} {input.lesions:q} > {log:q} 2>&1"
