# Per-subject stages run in chunks: one job per `chunk_size` subjects of a cohort (sheet order),
# each job a `biomarkers batch` of the per-subject verbs, so the libraries load once per chunk.
# The subjects are known while the workflow parses (a given sheet is read; a simulated cohort's
# subjects come from its plan), so every chunk rule names its per-subject outputs.
import json
from types import SimpleNamespace

from biomarkers.simulate.plan import cohort_plan

CHUNK_SIZE = config["chunk_size"]
# The U-Net's outputs per subject: its lesions, and its organs when it is organ-aware.
UNET_OUTPUTS = ("lesions", "organs") if UNET["organs"] else ("lesions",)
# Peak memory of one job (MB, with headroom) and CPU seconds per subject of each per-subject stage,
# measured on the demo with `python bench/stage_times.py results/demo` (one core of a 2-core machine).
STAGE_COST = {
    "suv": (800, 5),
    "ct": (1200, 5),
    "masks": (800, 3),
    "segment": (800, 3),
    "segment_unet": (1500, 30),
    "features": (1000, 10),
    "features_unet": (1000, 10),
    "embed": (1200, 10),
    "stability": (1000, 30),
}


def chunk_resources(stage, n_subjects):
    """`mem_mb` and `runtime` (minutes: three times the measured time, at least 5) of a chunk job."""
    mem_mb, seconds = STAGE_COST[stage]
    return {"mem_mb": mem_mb, "runtime": max(5, math.ceil(3 * (10 + seconds * n_subjects) / 60))}


def planned_subjects():
    """(subject ID, cohort) of every subject in sheet order, known before any job runs."""
    if SIMULATED:
        sim = config["simulate"]
        return cohort_plan(sim["subjects"], sim["centers"], sim["seed"], sim["validation_centers"],
                           sim["shifted"])
    sheet = subjects()
    return list(zip(sheet["subject_id"], sheet["cohort"]))


PLAN = planned_subjects()


def check_plan(sheet, path):
    """The simulated sheet must hold the planned subjects and cohorts, in order."""
    if list(zip(sheet["subject_id"], sheet["cohort"])) != PLAN:
        raise WorkflowError(f"{path}: the simulated sheet's subjects or cohorts differ from the simulation plan "
                            "(biomarkers.simulate.plan); delete the cohort folder and rerun")


def planned_ids(cohort=None):
    """Planned subject IDs (of one cohort), in sheet order."""
    return [s for s, c in PLAN if cohort is None or c == cohort]


def chunks(ids=None):
    """(label, subject IDs) of every chunk: `chunk_size` subjects of one cohort in sheet order; the
    label is the subject ID for chunks of one, else COHORT_NNN. `ids`: only those subjects."""
    wanted = None if ids is None else set(ids)
    out = []
    for cohort in dict.fromkeys(c for _, c in PLAN):
        members = [s for s in planned_ids(cohort) if wanted is None or s in wanted]
        for k in range(0, len(members), CHUNK_SIZE):
            part = members[k : k + CHUNK_SIZE]
            out.append((part[0] if CHUNK_SIZE == 1 else f"{cohort}_{k // CHUNK_SIZE + 1:03d}", part))
    return out


def chunk_rule_name(stage, index):
    """A rule name for the stage's `index`-th chunk."""
    return f"{stage}_chunk{index + 1:04d}"


def per_subject(subject):
    """A wildcards-like object of one subject, for the input functions written for per-subject rules."""
    return SimpleNamespace(subject=subject)


def chunk_inputs(inputs_of, ids):
    """Input function: the files `inputs_of(subject)` lists, for every subject of the chunk."""

    def get(wildcards):
        return [path for subject in ids for path in inputs_of(subject)]

    return get


def chunk_tasks(task_of, ids):
    """Params function: the chunk's `biomarkers batch --tasks` JSON, one argument list per subject."""

    def get(wildcards):
        return json.dumps([[str(a) for a in task_of(subject)] for subject in ids])

    return get


def file_values(found):
    """The paths of an input function's answer (a dict, a list or a path)."""
    if isinstance(found, dict):
        return list(found.values())
    return list(found) if isinstance(found, (list, tuple)) else [found]


# The per-subject command of every chunked stage, and the files it reads.


def suv_task(subject):
    """`biomarkers suv` of one subject's DICOM series."""
    return ["suv", subjects().loc[subject, "pet_dicom"], "--out", f"{RESULTS}/suv/{subject}.nii.gz",
            "--norm", config["suv_normalisation"]]


def ct_task(subject):
    """`biomarkers resample` of one subject's CT DICOM series onto its PET grid (-1024 HU outside)."""
    return ["resample", subjects().loc[subject, "ct_dicom"], "--reference", pet_image(per_subject(subject)),
            "--out", f"{RESULTS}/ct/{subject}.nii.gz", "--interpolation", "linear", "--outside", "-1024",
            "--modality", "CT", "--subject-id", subject]


def mask_task(subject):
    """`biomarkers mask` of one subject's RTSTRUCT or DICOM-SEG onto its PET grid."""
    return ["mask", subjects().loc[subject, "mask"], "--reference", pet_image(per_subject(subject)),
            "--out", f"{RESULTS}/masks/{subject}.nii.gz", "--subject-id", subject]


def segment_inputs(subject):
    """The subject's PET, and its organ or reference masks when the method uses them."""
    w = per_subject(subject)
    return [pet_image(w), *file_values(organ_input(w)), *file_values(reference_input(w))]


def segment_task(subject):
    """`biomarkers segment` of one subject with the config's method."""
    seg = config["segmentation"]
    w = per_subject(subject)
    task = ["segment", "--pet", pet_image(w), "--out", lesion_mask("segmentation", subject),
            "--method", seg["method"], "--threshold", seg["threshold_suv"], "--fraction", seg["fraction"],
            "--min-volume-ml", seg["min_volume_ml"]]
    organs, reference = organ_input(w), reference_input(w)
    if reference:
        task += ["--reference", reference["reference"]]
        task += ["--check-organs", organs["organs"]] if organs else []
    elif organs:
        task += ["--organs", organs["organs"]]
    return task + ["--subject-id", subject]


def unet_inputs(subject):
    """The subject's PET (and CT) and the network."""
    w = per_subject(subject)
    return [pet_image(w), *file_values(unet_ct_input(w)), unet_model(w)]


def unet_task(subject):
    """`biomarkers segment --method unet` of one subject (and its organs, for an organ-aware network)."""
    w = per_subject(subject)
    ct = unet_ct_input(w)
    task = ["segment", "--pet", pet_image(w), "--method", "unet", "--model", unet_model(w)]
    task += ["--ct", ct["ct"]] if ct else []
    task += ["--probability", UNET["probability"], "--tta" if UNET["tta"] else "--no-tta",
             "--min-volume-ml", config["segmentation"]["min_volume_ml"]]
    task += ["--organs-out", f"{RESULTS}/unet/{subject}_organs.nii.gz"] if UNET["organs"] else []
    return task + ["--out", lesion_mask("unet", subject), "--subject-id", subject]


def features_task(masks, tables):
    """`biomarkers features` of one subject, from the masks in folder `masks` into `tables`."""

    def task(subject):
        return ["features", "--image", pet_image(per_subject(subject)),
                "--mask", lesion_mask(masks, subject), "--params", RADIOMICS_PARAMS,
                "--subject-id", subject, "--out", f"{RESULTS}/features/{tables}/{subject}.parquet"]

    return task


def embed_task(subject):
    """`biomarkers embed` of one subject's lesions with the trained autoencoder."""
    w = per_subject(subject)
    ct = deep_ct_input(w)
    return ["embed", "--image", pet_image(w), "--mask", lesion_mask("segmentation", subject),
            "--model", f"{RESULTS}/models/autoencoder.pt", *(["--ct", ct["ct"]] if ct else []),
            "--subject-id", subject, "--out", f"{RESULTS}/features/deep/{subject}.parquet"]


def stability_task(subject):
    """`biomarkers stability` of one subject: its features under every configured perturbation."""
    w = per_subject(subject)
    fwhm = source_fwhm(subject)
    return ["stability", "--image", pet_image(w), "--mask", lesion_mask("segmentation", subject),
            "--params", RADIOMICS_PARAMS, "--subject-id", subject,
            *[a for p in STABILITY["perturbations"] for a in ("--perturb", p)],
            *([] if fwhm is None else ["--source-fwhm", fwhm]), "--seed", STABILITY["seed"],
            "--out", f"{RESULTS}/stability/lesions/{subject}.parquet"]
