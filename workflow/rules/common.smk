import os
import shlex

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from biomarkers.errors import BiomarkerError
from biomarkers.io.subjects import check_subject_files, read_subjects


validate(config, schema="../schemas/config.schema.yaml", set_default=True)

RESULTS = config["results"]
ENV = "../../environment.yml"
SIMULATED = "simulate" in config
TRAIN = config["training_cohort"]
# Absolute: the sheet is validated inside input functions, after the include stack is gone.
SUBJECTS_SCHEMA = os.path.join(workflow.basedir, "workflow", "schemas", "subjects.schema.yaml")

_sheet_cache = {}


wildcard_constraints:
    subject="[^/]+",
    cohort="[^/]+",


def subjects_sheet_path():
    """The subjects sheet: written by the `simulate` checkpoint, or given in the config."""
    if SIMULATED:
        return checkpoints.simulate.get().output.sheet
    return config["subjects"]


def subjects():
    """The checked subjects sheet, with paths resolved against its folder.

    The library's checks come first: they stop with one line naming the subject and file.
    """
    path = subjects_sheet_path()
    if path not in _sheet_cache:
        needed = ["pet_dicom" if config["pet_source"] == "dicom" else "pet"]
        needed += ["organs"] if config["segmentation"]["exclude_organs"] else []
        try:
            sheet = read_subjects(path)
            check_subject_files(sheet, needed, path)
        except BiomarkerError as exc:
            raise WorkflowError(str(exc)) from None
        validate(sheet, schema=SUBJECTS_SCHEMA)
        _sheet_cache[path] = sheet.set_index("subject_id", drop=False)
    return _sheet_cache[path]


def subject_file(column):
    """Input function: the file in `column` of the wildcard's subject."""

    def get(wildcards):
        return subjects().loc[wildcards.subject, column]

    return get


def pet_image(wildcards):
    """The subject's SUV image: from the sheet, or converted from its DICOM series."""
    if config["pet_source"] == "dicom":
        return f"{RESULTS}/suv/{wildcards.subject}.nii.gz"
    return subjects().loc[wildcards.subject, "pet"]


def organ_input(wildcards):
    """Organ mask of physiological uptake, when the config excludes organs."""
    if not config["segmentation"]["exclude_organs"]:
        return []
    return {"organs": subjects().loc[wildcards.subject, "organs"]}


def cohort_lesion_tables(wildcards):
    """Lesion tables of every subject of one cohort."""
    sheet = subjects()
    ids = sheet.loc[sheet["cohort"] == wildcards.cohort, "subject_id"]
    return expand(f"{RESULTS}/features/lesions/{{subject}}.parquet", subject=ids)


def cohorts():
    """Every cohort of the sheet, training first."""
    names = sorted(set(subjects()["cohort"]))
    return [TRAIN] + [c for c in names if c != TRAIN]


def truth_input(wildcards):
    """The simulator's ground truth (adds the oracle C-index), for simulated cohorts."""
    return {"truth": checkpoints.simulate.get().output.truth} if SIMULATED else {}


def final_targets(wildcards):
    """Metrics and figures of every cohort, plus the model's coefficient plot."""
    names = cohorts()
    return [
        *expand(f"{RESULTS}/metrics/{{cohort}}.json", cohort=names),
        *expand(f"{RESULTS}/report/km_{{cohort}}.png", cohort=names),
        f"{RESULTS}/report/coefficients.png",
        f"{RESULTS}/report/metrics.tsv",
        *(
            expand(f"{RESULTS}/report/segmentation_quality_{{cohort}}.png", cohort=names)
            if config["segmentation"]["compare"]
            else []
        ),
    ]


def organ_flag(wildcards, input):
    """`--organs FILE` when organs are excluded, else nothing."""
    return f"--organs {shlex.quote(input.organs)}" if hasattr(input, "organs") else ""


def subjects_sheet_path_input(wildcards):
    """Input-function form of `subjects_sheet_path`."""
    return subjects_sheet_path()


def categorical_flags(wildcards):
    """`--categorical NAME=L1,L2` for every categorical covariate of the config."""
    return " ".join(
        f"--categorical {shlex.quote(name + '=' + ','.join(levels))}"
        for name, levels in config["categorical_covariates"].items()
    )


def truth_flag(wildcards, input):
    """`--truth FILE` for simulated cohorts."""
    return f"--truth {shlex.quote(input.truth)}" if hasattr(input, "truth") else ""


def cohort_metric_tables(wildcards):
    """Metric tables of every cohort."""
    return expand(f"{RESULTS}/metrics/{{cohort}}.tsv", cohort=cohorts())


def sheet_folder(wildcards, output):
    """Folder of the simulated cohort: the one holding its subjects sheet."""
    return os.path.dirname(output.sheet)


# A given sheet is checked when the workflow starts, before any job runs.
if not SIMULATED:
    subjects()


def compare_flags(wildcards):
    """`--method SPEC` for every threshold method the config compares."""
    return " ".join(f"--method {shlex.quote(m)}" for m in config["segmentation"]["compare"])


def dicom_flag(wildcards):
    """`--dicom` when the simulated cohort must also be written as DICOM."""
    wanted = config["pet_source"] == "dicom" or config.get("simulate", {}).get("dicom", False)
    return "--dicom" if wanted else ""
