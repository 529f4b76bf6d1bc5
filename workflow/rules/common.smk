# The config validated, the constants it decides, each `models:` entry as a ModelSpec, the subjects
# sheet and the input functions (which files a rule reads or writes); the settings as the verbs'
# flags are in params.smk.
import os
from types import SimpleNamespace

import pandas as pd

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from biomarkers.errors import BiomarkerError
from biomarkers.features.params import resolve_params
from biomarkers.imaging.masks import LABEL_IMAGE_SUFFIXES
from biomarkers.io.layout import MASK_NAME
from biomarkers.io.subjects import check_subject_files, read_subjects
from biomarkers.survival.spec import ModelSpec


def check_config(config):
    """The config's first schema error as one line naming the key (Snakemake's own message
    prints the whole schema); unknown keys are errors at every level."""
    import jsonschema
    import yaml

    with open(os.path.join(workflow.basedir, "workflow", "schemas", "config.schema.yaml")) as handle:
        schema = yaml.safe_load(handle)
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "top level"
        if error.validator in ("oneOf", "anyOf"):  # jsonschema's message would print the whole config
            keys = [" and ".join(alt.get("required", [])) for alt in error.schema[error.validator]]
            message = f"give exactly one of: {', '.join(k for k in keys if k)}"
        else:
            message = error.message.splitlines()[0]
            message = message if len(message) <= 240 else message[:240] + " ..."
        raise WorkflowError(f"config, {where}: {message}")


try:
    validate(config, schema="../schemas/config.schema.yaml", set_default=True)
except WorkflowError:
    check_config(config)  # the same error, in one line
    raise

RESULTS = config["results"]
ENV = "../../environment.yml"
SIMULATED = "simulate" in config
TRAIN = config["training_cohort"]
# A shipped parameter file by name (pet, ct) or a path: a file either way, so edits rerun features.
RADIOMICS_PARAMS = str(resolve_params(config["radiomics_params"]))
# Absolute: the sheet is validated inside input functions, after the include stack is gone.
SUBJECTS_SCHEMA = os.path.join(workflow.basedir, "workflow", "schemas", "subjects.schema.yaml")

_sheet_cache = {}

UNET = config["unet"]
# The organ-aware U-Net's organs stand in for a sheet without organ masks.
PREDICTED_ORGANS = UNET["enabled"] and UNET["organs"]


def lesion_mask(folder, subject):
    """A subject's lesion mask in a results folder (segmentation, unet), named as the library's
    verbs that take a masks folder look for it (`biomarkers.io.layout`); `subject` may be a wildcard."""
    return f"{RESULTS}/{folder}/{MASK_NAME.format(subject_id=subject)}"


def unet_model(wildcards):
    """The U-Net checkpoint: the config's, or the one trained on the training cohort."""
    return UNET.get("checkpoint") or f"{RESULTS}/models/unet.pt"


MODELS = list(config["models"])


def model_segmentation(name):
    """`pipeline` (the features of segmentation.method) or `unet` (of the U-Net's lesions)."""
    return config["models"][name].get("segmentation", "pipeline")


# Each `models:` entry as the library's typed specification (model, hyperparameters checked and
# cast, features, log features): a bad entry stops the workflow here, before any rule runs.
try:
    SPECS = {
        name: ModelSpec.from_entry(name, entry, config["model"]["features"], config["model"]["log_features"])
        for name, entry in config["models"].items()
    }
except ValueError as exc:
    raise WorkflowError(f"config models: {exc}") from None
# Models scored with MC dropout (risk_sd > 0): their uncertainty is checked in the report.
MC_MODELS = [m for m in MODELS if SPECS[m].stochastic]
UNET_MODELS = [m for m in MODELS if model_segmentation(m) == "unet"]
if UNET_MODELS and not UNET["enabled"]:
    raise WorkflowError(f"models {', '.join(UNET_MODELS)} use the U-Net's segmentation; set unet: {{enabled: true}}")
if config["model"]["primary"] not in MODELS:
    raise WorkflowError(
        f"model.primary is {config['model']['primary']!r}, not one of the configured models {', '.join(MODELS)}"
    )


wildcard_constraints:
    subject="[^/]+",
    cohort="[^/]+",
    model="|".join(MODELS),


def subjects_sheet_path():
    """The subjects sheet: written by the `simulate` checkpoint, or given in the config."""
    if not SIMULATED:
        return config["subjects"]
    if "simulated" not in _sheet_cache:  # the checkpoint's output, once it exists, does not change
        _sheet_cache["simulated"] = checkpoints.simulate.get().output.sheet
    return _sheet_cache["simulated"]


def subjects():
    """The checked subjects sheet, with paths resolved against its folder.

    The library's checks come first: they stop with one line naming the subject and file.
    """
    path = subjects_sheet_path()
    if path not in _sheet_cache:
        needed = ["pet_dicom" if config["pet_source"] == "dicom" else "pet"]
        needed += ["mask"] if config["segmentation"]["method"] == "reference" else []
        try:
            sheet = read_subjects(path)
            organs = "organs" in sheet.columns
            if config["segmentation"]["exclude_organs"] and not organs and not PREDICTED_ORGANS:
                raise WorkflowError(
                    f"{path}: segmentation.exclude_organs needs organ masks (column organs) or a U-Net's predicted "
                    "organs (unet: {enabled: true, organs: true, checkpoint: <an organ-aware network>}); "
                    "or set segmentation: {exclude_organs: false}"
                )
            if UNET["enabled"] and UNET["organs"] and not UNET.get("checkpoint") and not organs:
                raise WorkflowError(
                    f"{path}: unet.organs is true but the sheet has no organs column to train on; add the organ "
                    "masks, give a trained organ-aware network (unet.checkpoint), or set unet: {organs: false}"
                )
            cohorts = sorted(sheet["cohort"].dropna().unique())
            if TRAIN not in cohorts:
                raise WorkflowError(f"{path}: training_cohort {TRAIN!r} names no cohort of the sheet "
                                    f"(cohorts: {', '.join(cohorts)})")
            needed += ["organs"] if organs and config["segmentation"]["exclude_organs"] else []
            needed += ["ct_dicom"] if "ct_dicom" in sheet.columns and "ct" not in sheet.columns else []
            check_subject_files(sheet, needed, path)
        except BiomarkerError as exc:
            raise WorkflowError(str(exc)) from None
        validate(sheet, schema=SUBJECTS_SCHEMA)
        if SIMULATED:
            check_plan(sheet, path)
        _sheet_cache[path] = sheet.set_index("subject_id", drop=False)
    return _sheet_cache[path]


def cohort_ids(cohort):
    """Subject IDs of one cohort of the sheet."""
    sheet = subjects()
    return sheet.loc[sheet["cohort"] == cohort, "subject_id"]


def pet_image(wildcards):
    """The subject's SUV image: from the sheet, or converted from its DICOM series."""
    if config["pet_source"] == "dicom":
        return f"{RESULTS}/suv/{wildcards.subject}.nii.gz"
    return subjects().loc[wildcards.subject, "pet"]


def organ_input(wildcards):
    """Organ mask of physiological uptake, when the config excludes organs (or checks against them):
    the sheet's, else the organ-aware U-Net's prediction."""
    if not config["segmentation"]["exclude_organs"] and config["segmentation"]["method"] != "reference":
        return []
    if "organs" not in subjects().columns:
        if PREDICTED_ORGANS:
            return {"organs": f"{RESULTS}/unet/{wildcards.subject}_organs.nii.gz"}
        return []
    return {"organs": subjects().loc[wildcards.subject, "organs"]}


def reference_input(wildcards):
    """The subject's expert lesion mask, when it is the segmentation."""
    if config["segmentation"]["method"] != "reference":
        return {}
    return {"reference": mask_image(wildcards.subject)}


def cohort_lesion_tables(wildcards):
    """Lesion tables of every subject of one cohort."""
    return expand(f"{RESULTS}/features/lesions/{{subject}}.parquet", subject=cohort_ids(wildcards.cohort))


DEEP = config["deep_features"]


def cohort_unet_lesion_tables(wildcards):
    """Lesion tables of the U-Net's segmentation of every subject of one cohort."""
    return expand(f"{RESULTS}/features/unet_lesions/{{subject}}.parquet", subject=cohort_ids(wildcards.cohort))


def model_feature_table(wildcards):
    """The feature table of the wildcard's model and cohort (fit: the training cohort), from the
    pipeline's segmentation or the U-Net's."""
    cohort = getattr(wildcards, "cohort", TRAIN)
    if model_segmentation(wildcards.model) == "unet":
        return f"{RESULTS}/features/unet/{cohort}.parquet"
    return f"{RESULTS}/features/{cohort}.parquet"


def cohort_deep_tables(wildcards):
    """deep_* lesion tables of every subject of one cohort (when deep features are on)."""
    if not DEEP["enabled"]:
        return []
    return expand(f"{RESULTS}/features/deep/{{subject}}.parquet", subject=cohort_ids(wildcards.cohort))


def training_lesion_masks(wildcards):
    """The training cohort's lesion masks (the autoencoder learns from their patches)."""
    return expand(lesion_mask("segmentation", "{subject}"), subject=cohort_ids(TRAIN))


def deep_ct_input(wildcards):
    """The subject's CT, when the autoencoder uses it."""
    return {"ct": ct_image(wildcards.subject)} if DEEP["use_ct"] else {}


def cohorts():
    """Every cohort of the sheet, training first."""
    names = sorted(set(subjects()["cohort"]))
    return [TRAIN] + [c for c in names if c != TRAIN]


def truth_input(wildcards):
    """The simulator's ground truth (adds the oracle C-index), for simulated cohorts."""
    return {"truth": checkpoints.simulate.get().output.truth} if SIMULATED else {}


# Models whose uncertainty methods are compared (`uncertainty: models`); not the end-to-end CNN (its
# ensemble and cross-validation would cost hours on a CPU).
UNCERTAINTY = config["uncertainty"]
UNCERTAINTY_MODELS = list(UNCERTAINTY["models"])
for _name in UNCERTAINTY_MODELS:
    if _name not in MODELS or SPECS[_name].kind == "cnn_survival":
        raise WorkflowError(f"config uncertainty: models: {_name!r} is not a tabular entry of `models:`")


SUBTYPES = config["subtypes"]
PRETRAINING = config["pretraining"]


def pretraining_inputs(wildcards):
    """Training and validation tables and patches of the end-to-end model, and every cohort's patches."""
    return {"train": model_feature_table(SimpleNamespace(model=wildcards.model)),
            "train_patches": f"{RESULTS}/patches/{TRAIN}.npz",
            "validation": model_feature_table(wildcards),
            "validation_patches": f"{RESULTS}/patches/{wildcards.cohort}.npz",
            "every": every_patch_archive(wildcards)}


def every_patch_archive(wildcards):
    """Every cohort's lesion patch archive."""
    return expand(f"{RESULTS}/patches/{{cohort}}.npz", cohort=cohorts())


def subtype_tables(wildcards):
    """Feature tables of every cohort, training first (deep features included when configured)."""
    return {"train": f"{RESULTS}/features/{TRAIN}.parquet",
            **{f"cohort_{c}": f"{RESULTS}/features/{c}.parquet" for c in validation_cohorts()}}


def validation_cohorts():
    """Every cohort but the training one."""
    return [c for c in cohorts() if c != TRAIN]


def abstention_input(wildcards):
    """The uncertainty choice `fit` freezes into a model the uncertainty methods are compared for."""
    if wildcards.model not in UNCERTAINTY_MODELS:
        return {}
    return {"abstention": f"{RESULTS}/uncertainty/{wildcards.model}/choice.json"}


def uncertainty_cohort_tables(wildcards):
    """Feature tables of the training cohort and every validation cohort, for the uncertainty scores."""
    tables = {"train": model_feature_table(SimpleNamespace(model=wildcards.model))}
    for name in validation_cohorts():
        tables[f"cohort_{name}"] = model_feature_table(SimpleNamespace(model=wildcards.model, cohort=name))
    return tables


def final_targets(wildcards):
    """Metrics and figures of every model and cohort, the model comparison and cross-validation."""
    names = cohorts()
    return [
        *expand(f"{RESULTS}/metrics/{{model}}/{{cohort}}.json", model=MODELS, cohort=names),
        *expand(f"{RESULTS}/report/model_{{model}}.png", model=MODELS),
        *expand(f"{RESULTS}/report/uncertainty_{{model}}_{{cohort}}.png", model=MC_MODELS, cohort=names),
        *expand(f"{RESULTS}/report/uncertainty_evaluation_{{model}}_{{cohort}}.png", model=UNCERTAINTY_MODELS,
                cohort=names[1:]),
        f"{RESULTS}/report/metrics.tsv",
        f"{RESULTS}/report/headline.tsv",
        *(expand(f"{RESULTS}/report/compare_{{cohort}}.tsv", cohort=names) if len(MODELS) > 1 else []),
        *([f"{RESULTS}/models/cv_summary.tsv"] if config["model"]["cv_folds"] and CV_MODELS else []),
        *(
            expand(f"{RESULTS}/report/segmentation_quality_{{cohort}}.png", cohort=names)
            if config["segmentation"]["compare"]
            else []
        ),
        *([f"{RESULTS}/report/icc.png"] if config["stability"]["subjects"] else []),
        *([f"{RESULTS}/signature"] if SIGNATURE else []),
        *(expand(f"{RESULTS}/report/subtypes_{{cohort}}.png", cohort=names) if SUBTYPES["features"] else []),
        *expand(f"{RESULTS}/report/explanations_{{model}}_{{cohort}}.png", model=PATCH_MODELS, cohort=names),
        *expand(f"{RESULTS}/report/pretraining_{{model}}_{{cohort}}.png", model=PATCH_MODELS if PRETRAINING["seeds"]
                else [], cohort=names[1:]),
    ]


def subjects_sheet_path_input(wildcards):
    """Input-function form of `subjects_sheet_path`."""
    return subjects_sheet_path()


def cohort_metric_tables(wildcards):
    """Metric tables of every model and cohort, the primary model first."""
    order = [config["model"]["primary"]] + [m for m in MODELS if m != config["model"]["primary"]]
    return expand(f"{RESULTS}/metrics/{{model}}/{{cohort}}.tsv", model=order, cohort=cohorts())


# End-to-end models read the cohort's lesion patches besides its feature table.
PATCH_MODELS = [m for m in MODELS if SPECS[m].kind == "cnn_survival"]
PATCHES = config["lesion_patches"]


def patches_input(wildcards):
    """The cohort's lesion patch archive, for end-to-end models (fit: the training cohort)."""
    names = [wildcards.model] if hasattr(wildcards, "model") else MODELS
    if not any(name in PATCH_MODELS for name in names):
        return {}
    return {"patches": f"{RESULTS}/patches/{getattr(wildcards, 'cohort', TRAIN)}.npz"}


def cohort_lesion_masks(wildcards):
    """The pipeline's lesion masks of the cohort's subjects."""
    return expand(lesion_mask("segmentation", "{subject}"), subject=cohort_ids(wildcards.cohort))


# Nested cross-validation compares the models on one feature table: the pipeline's segmentation.
CV_MODELS = [m for m in MODELS if m not in UNET_MODELS]


def model_scores(wildcards):
    """The cohort's scores of every model, by model name."""
    return {name: f"{RESULTS}/scores/{name}/{wildcards.cohort}.parquet" for name in MODELS}


# A given sheet is checked when the workflow starts, before any job runs.
if not SIMULATED:
    subjects()
# Whether the sheet has organ masks (a simulated cohort always has): organ Dice needs them.
SHEET_ORGANS = SIMULATED or "organs" in subjects().columns
# A sheet's CT as DICOM series (column ct_dicom) and reference masks as RTSTRUCT or DICOM-SEG are
# brought onto the PET grid once per subject (`biomarkers resample`, `biomarkers mask`).
CT_DICOM = not SIMULATED and "ct_dicom" in subjects().columns and "ct" not in subjects().columns
MASK_DICOM = not SIMULATED and "mask" in subjects().columns and any(
    isinstance(p, str) and not p.lower().endswith(LABEL_IMAGE_SUFFIXES) for p in subjects()["mask"]
)
# Whether the rules that read images through a sheet need one with the converted files.
CONVERTED = config["pet_source"] == "dicom" or CT_DICOM or MASK_DICOM


def ct_image(subject):
    """The subject's CT on the PET grid: the sheet's, or resampled from its DICOM series."""
    return f"{RESULTS}/ct/{subject}.nii.gz" if CT_DICOM else subjects().loc[subject, "ct"]


def mask_image(subject):
    """The subject's reference lesion mask: the sheet's label image, or converted from DICOM."""
    return f"{RESULTS}/masks/{subject}.nii.gz" if MASK_DICOM else subjects().loc[subject, "mask"]


def cohort_images(cohort, kinds=("pet", "ct", "mask", "organs")):
    """The images of the cohort's subjects that a rule reading them through the sheet opens (of
    `kinds`: PET, CT, reference and organ masks, where the sheet has them), declared so that
    editing one reruns the rule."""
    sheet = subjects()
    files = []
    for subject in cohort_ids(cohort):
        if "pet" in kinds:
            files.append(pet_image(SimpleNamespace(subject=subject)))
        if "ct" in kinds and (CT_DICOM or "ct" in sheet.columns):
            files.append(ct_image(subject))
        if "mask" in kinds and "mask" in sheet.columns:
            files.append(mask_image(subject))
        if "organs" in kinds and "organs" in sheet.columns:
            files.append(sheet.loc[subject, "organs"])
    return [f for f in files if isinstance(f, str) and f]


def training_images(wildcards):
    """The training cohort's images (`train-unet` reads them through the sheet)."""
    return cohort_images(TRAIN)


def wildcard_cohort_images(wildcards):
    """The wildcard cohort's images (`segment-quality` reads them through the sheet)."""
    return cohort_images(wildcards.cohort)


def autoencoder_images(wildcards):
    """The training cohort's PET, and CT when the autoencoder uses it (`train-autoencoder` reads
    them through the sheet)."""
    return cohort_images(TRAIN, ("pet", "ct") if DEEP["use_ct"] else ("pet",))


def patch_images(wildcards):
    """The wildcard cohort's PET, and CT when the patches have it (`lesion-patches` reads them
    through the sheet)."""
    return cohort_images(wildcards.cohort, ("pet", "ct") if PATCHES["use_ct"] else ("pet",))


def image_sheet_input(wildcards):
    """The sheet the rules reading images through a sheet get: the subjects sheet, or (when any
    image is converted: SUV, CT or mask from DICOM) a copy naming the converted files."""
    return f"{RESULTS}/cohort/images.tsv" if CONVERTED else subjects_sheet_path()


def converted_images(wildcards):
    """Every converted image of every subject (the inputs of the image sheet)."""
    ids = planned_ids()
    files = [f"{RESULTS}/suv/{s}.nii.gz" for s in ids] if config["pet_source"] == "dicom" else []
    files += [f"{RESULTS}/ct/{s}.nii.gz" for s in ids] if CT_DICOM else []
    return files + ([f"{RESULTS}/masks/{s}.nii.gz" for s in ids] if MASK_DICOM else [])


def unet_scored(cohort):
    """The U-Net is scored on the cohorts it was not trained on."""
    return UNET["enabled"] and cohort != TRAIN


def unet_masks(wildcards):
    """The U-Net's lesion masks of the cohort's subjects (when it is scored there)."""
    if not unet_scored(wildcards.cohort):
        return []
    return expand(lesion_mask("unet", "{subject}"), subject=cohort_ids(wildcards.cohort))


def unet_organ_masks(wildcards):
    """The organ-aware U-Net's organ masks of the cohort's subjects (when it is scored there)."""
    if not (unet_scored(wildcards.cohort) and UNET["organs"]):
        return []
    return expand(f"{RESULTS}/unet/{{subject}}_organs.nii.gz", subject=cohort_ids(wildcards.cohort))


def unet_ct_input(wildcards):
    """The subject's CT, when the U-Net uses it."""
    return {"ct": ct_image(wildcards.subject)} if UNET["use_ct"] else {}


STABILITY = config["stability"]


def stability_subjects():
    """The first `stability.subjects` training subjects, by ID."""
    return sorted(planned_ids(TRAIN))[: STABILITY["subjects"]]


def stability_tables(wildcards):
    """Perturbed-feature tables of the stability subjects."""
    return expand(f"{RESULTS}/stability/lesions/{{subject}}.parquet", subject=stability_subjects())


def centers_input(wildcards):
    """The simulated cohort's scanner table (PSF FWHM per centre)."""
    return {"centers": checkpoints.simulate.get().output.centers} if SIMULATED else {}


# The frozen signature of the primary model: every per-patient step, for `biomarkers predict`.
PRIMARY = config["model"]["primary"]
SIGNATURE = PRIMARY not in PATCH_MODELS  # an end-to-end model's signature is not supported yet


def signature_organs():
    """Where the primary model's threshold segmentation took its organ masks from."""
    seg = config["segmentation"]
    if model_segmentation(PRIMARY) == "unet" or seg["method"] == "reference" or not seg["exclude_organs"]:
        return "none"
    return "given" if SHEET_ORGANS else "unet"


def signature_inputs(wildcards):
    """The networks the signature carries: the U-Net (its lesions or organs), the autoencoder."""
    inputs = {}
    if model_segmentation(PRIMARY) == "unet" or signature_organs() == "unet":
        inputs["unet"] = unet_model(wildcards)
    if DEEP["enabled"]:
        inputs["autoencoder"] = f"{RESULTS}/models/autoencoder.pt"
    inputs["tables"] = [model_feature_table(SimpleNamespace(model=PRIMARY, cohort=c)) for c in cohorts() if c != TRAIN]
    return inputs

