# Rule parameters: the config's settings as the command-line flags of the `biomarkers` verbs (and
# the jobs' runtimes). Input functions, the sheet and the config's derived constants are in
# common.smk; this file only turns them into flags.
import math
import shlex


def training_epochs(block):
    """A network's epochs: `epochs` (deep_training: quick) or `full_epochs` (deep_training: full)."""
    return block["full_epochs"] if config["deep_training"] == "full" else block["epochs"]


def training_runtime(block, seconds_per_epoch):
    """A training job's runtime (minutes) for a cluster: three times the measured CPU time per epoch
    (one core of this 2-core machine, demo cohort), at least 10."""
    return max(10, math.ceil(3 * training_epochs(block) * seconds_per_epoch / 60))


def simulate_runtime(wildcards):
    """Runtime (minutes) of the simulation: about 0.7 CPU s per subject (demo), three times that."""
    return max(10, math.ceil(3 * config["simulate"]["subjects"] * 0.7 / 60))


def extra_flags(wildcards, input):
    """`--extra TABLE` for every deep_* table of the cohort."""
    return " ".join(f"--extra {shlex.quote(path)}" for path in input.deep)


def pretraining_flags(wildcards):
    """`--pretrain-patches FILE` for every cohort's patch archive."""
    return " ".join(f"--pretrain-patches {shlex.quote(path)}" for path in every_patch_archive(wildcards))


def uncertainty_flags(wildcards):
    """Settings of `uncertainty-choice` (`uncertainty-scores` takes them from its choice)."""
    return (f"--members {UNCERTAINTY['members']} --folds {config['model']['cv_folds']} --alpha {UNCERTAINTY['alpha']}"
            f" --c0-days {UNCERTAINTY['c0_days']} --abstain-quantile {config['model']['abstain_quantile']}"
            f" --seed {config['evaluation']['seed']}")


def abstention_flag(wildcards, input):
    return f"--abstention {shlex.quote(input.abstention)}" if "abstention" in input.keys() else ""


def cohort_table_flags(wildcards, input):
    """`--cohort NAME=TABLE` of every validation cohort (inputs named cohort_NAME)."""
    pairs = [f"{name}={input[f'cohort_{name}']}" for name in validation_cohorts()]
    return " ".join(f"--cohort {shlex.quote(pair)}" for pair in pairs)


def categorical_flags(wildcards):
    """`--categorical NAME=L1,L2` for every categorical covariate of the config."""
    flags = []
    for name, levels in config["categorical_covariates"].items():
        value = f"{name}={','.join(levels)}"
        flags.append(f"--categorical {shlex.quote(value)}")
    return " ".join(flags)


def truth_flag(wildcards, input):
    """`--truth FILE` for simulated cohorts."""
    return f"--truth {shlex.quote(input.truth)}" if hasattr(input, "truth") else ""


def pipeline_flags(wildcards):
    """Preprocessing flags of `fit` and `cv`: ComBat (clinical covariates left alone), filters."""
    cfg = config["model"]
    flags = []
    if cfg["harmonize"]:
        clinical = list(config["covariates"])
        for name, levels in config["categorical_covariates"].items():
            clinical += [f"{name}_{level}" for level in levels[1:]]
        flags += ["--harmonize", f"--not-harmonized {shlex.quote(','.join(clinical))}"]
    for key in ("corr_threshold", "fdr_q", "max_features"):
        if cfg[key] is not None:
            flags.append(f"--{key.replace('_', '-')} {cfg[key]}")
    return " ".join(flags)


def patches_flag(wildcards, input):
    """`--patches FILE` when the rule reads the lesion patches."""
    return f"--patches {shlex.quote(input.patches)}" if "patches" in input.keys() else ""


def model_spec(wildcards):
    """`--spec`: the wildcard entry's model specification as JSON."""
    return SPECS[wildcards.model].to_json()


def cv_spec_flags(wildcards):
    """`--spec NAME=JSON` for every model cross-validated (those on the pipeline's features)."""
    pairs = [f"{name}={SPECS[name].to_json()}" for name in CV_MODELS]
    return " ".join(f"--spec {shlex.quote(pair)}" for pair in pairs)


def named_scores(wildcards, input):
    """`NAME=SCORES` for every model's scores of the cohort."""
    pairs = [f"{name}={input[name]}" for name in MODELS]
    return " ".join(shlex.quote(pair) for pair in pairs)


def sheet_folder(wildcards, output):
    """Folder of the simulated cohort: the one holding its subjects sheet."""
    return os.path.dirname(output.sheet)


def image_sheet_flags(wildcards):
    """`--column NAME=PATTERN` for every converted image column."""
    columns = {"pet": config["pet_source"] == "dicom", "ct": CT_DICOM, "mask": MASK_DICOM}
    folders = {"pet": "suv", "ct": "ct", "mask": "masks"}
    pairs = [f"{name}={RESULTS}/{folders[name]}/{{subject}}.nii.gz" for name, wanted in columns.items() if wanted]
    return " ".join(f"--column {shlex.quote(pair)}" for pair in pairs)


def compare_flags(wildcards):
    """`--method SPEC` for every threshold method the config compares."""
    return " ".join(f"--method {shlex.quote(m)}" for m in config["segmentation"]["compare"])


def unet_predicted_flag(wildcards):
    """`--predicted unet=PATTERN` when the U-Net is scored on the cohort, and `--predicted-organs`
    (thresholds with the network's organs, organ Dice) when it is organ-aware."""
    if not unet_scored(wildcards.cohort):
        return ""
    pattern = lesion_mask("unet", "{subject}")
    flags = f"--predicted {shlex.quote(f'unet={pattern}')}"
    if UNET["organs"]:
        organs = f"{RESULTS}/unet/{{subject}}_organs.nii.gz"
        flags += f" --predicted-organs {shlex.quote(f'unet={organs}')}"
    return flags


def organ_dice_flag(wildcards, output):
    """`--organ-dice FILE` when the sheet's organ masks can score the network's organs."""
    return f"--organ-dice {shlex.quote(output.organs)}" if SHEET_ORGANS else ""


def without_organs_flag(wildcards):
    """`--without-organs` on the cohorts the U-Net is scored on (the comparison it is for)."""
    wanted = config["segmentation"]["compare_without_organs"] and wildcards.cohort != TRAIN and SHEET_ORGANS
    return "--without-organs" if wanted else ""


def dicom_flag(wildcards):
    """`--dicom` when the simulated cohort must also be written as DICOM."""
    wanted = config["pet_source"] == "dicom" or config.get("simulate", {}).get("dicom", False)
    return "--dicom" if wanted else ""


def source_fwhm(subject):
    """PSF FWHM (mm) of the subject's PET: its centre's (simulated cohorts), or the config's."""
    if SIMULATED:
        table = pd.read_csv(checkpoints.simulate.get().output.centers, sep="\t", dtype={"center": str})
        return float(table.set_index("center").loc[subjects().loc[subject, "center"], "psf_fwhm_mm"])
    if "source_fwhm_mm" in STABILITY:
        return STABILITY["source_fwhm_mm"]
    if any(p.startswith("resolution:") for p in STABILITY["perturbations"]):
        raise WorkflowError("stability.source_fwhm_mm is required for a resolution perturbation of a given cohort")
    return None


def signature_table_flags(wildcards, input):
    """`--cohort-table` for every other cohort, `--unet`/`--autoencoder` for the networks."""
    tables = input.tables if "tables" in input.keys() else []  # absent while a checkpoint is pending
    flags = [f"--cohort-table {shlex.quote(path)}" for path in tables]
    for name in ("unet", "autoencoder"):
        if name in input.keys():
            flags.append(f"--{name} {shlex.quote(input[name])}")
    return " ".join(flags)


def signature_flags(wildcards):
    """The segmentation and U-Net settings of the primary model's lesions."""
    seg = config["segmentation"]
    flags = [f"--method {seg['method']}", f"--threshold {seg['threshold_suv']}", f"--fraction {seg['fraction']}",
             f"--min-volume-ml {seg['min_volume_ml']}", f"--organs {signature_organs()}",
             f"--lesions {model_segmentation(PRIMARY)}", f"--unet-probability {UNET['probability']}",
             "--unet-tta" if UNET["tta"] else "--no-unet-tta", "--unet-ct" if UNET["use_ct"] else "--no-unet-ct",
             "--unet-organs" if UNET["organs"] else "--no-unet-organs",
             "--deep-ct" if DEEP["use_ct"] else "--no-deep-ct"]
    return " ".join(flags)
