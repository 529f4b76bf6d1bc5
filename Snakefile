# PET/CT radiomics survival study: segmentation -> features -> model -> validation -> report.
# Run the demo cohort with `snakemake --cores 2`; another cohort with `--configfile cohorts/NAME/config.yaml`.
from snakemake.utils import min_version

min_version("9.0")


# The demo cohort unless a config file is given on the command line: a study's config is
# complete in itself, never merged over the demo's.
if not workflow.overwrite_configfiles:

    configfile: "cohorts/demo/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/params.smk"
include: "workflow/rules/chunks.smk"
include: "workflow/rules/cohort.smk"
include: "workflow/rules/imaging.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        final_targets,
