"""Simulate a multi-centre PET/CT cohort and write it to disk.

Layout written under ``out_dir``::

    subjects.tsv   one row per subject (written last: marks the cohort complete)
    truth.tsv      true linear predictor, its lesion components, the latent event time and
                   each subject's shift (:mod:`biomarkers.simulate.shift`)
    centers.tsv    scanner parameters of each centre
    images/{subject_id}_{pet,ct,mask,organs}.nii.gz

Random streams are derived from ``seed`` with :class:`numpy.random.SeedSequence`
spawn keys: (0,) cohort plan and covariates, (1,) survival outcomes, (2, i, 0)
anatomy and (2, i, 1) scanner noise of subject ``i``; (4,) and (5,) covariates and
outcomes of the shifted subjects. Results therefore do not depend on the number of
worker processes.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterable, Iterator

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from biomarkers.io.atomic import atomic_path
from biomarkers.io.images import write_image
from biomarkers.simulate import outcome, shift
from biomarkers.simulate.plan import plan_generator, subject_ids
from biomarkers.simulate.phantom import Grid, build_phantom
from biomarkers.simulate.scanner import Center, acquire, default_centers

SUBJECT_COLUMNS = ("subject_id", "cohort", "center", "pet", "ct", "mask", "organs",
                   "time", "event", "age", "sex", "ecog")
TRUTH_COLUMNS = ("subject_id", "true_lp", "true_mtv_ml", "true_heterogeneity",
                 "true_lesion_count", "true_dissemination_mm", "true_event_days", "shift", "ood")
CENTER_COLUMNS = ("center", "spacing_mm", "psf_fwhm_mm", "noise_cv")
IMAGE_KINDS = ("pet", "ct", "mask", "organs")


@dataclass(frozen=True)
class SubjectPlan:
    """Everything a worker needs to simulate and write one subject."""

    subject_id: str
    index: int
    seed: int
    sex: str
    center: Center
    images_dir: Path
    dicom: bool = False
    #: ``none`` or a kind of :data:`biomarkers.simulate.shift.SHIFT_KINDS`
    shift: str = "none"


def subject_rngs(seed: int, index: int) -> tuple[np.random.Generator, np.random.Generator]:
    """The anatomy and scanner-noise generators of subject ``index`` (0-based)."""
    return (np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2, index, 0))),
            np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2, index, 1))))


def image_path(subject_id: str, kind: str) -> str:
    """Path of a subject's image relative to the cohort folder."""
    return f"images/{subject_id}_{kind}.nii.gz"


def _write_image(array: np.ndarray, grid: Grid, path: Path) -> None:
    """Write a (z, y, x) array on ``grid`` as compressed NIfTI, atomically."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(grid.spacing_mm)
    image.SetOrigin(grid.origin_mm)
    write_image(image, path)


def _write_tsv(path: Path, columns: Iterable[str], rows: Iterable[Iterable[str]]) -> None:
    """Write a tab-separated table of pre-formatted strings, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as handle:
        handle.write("\t".join(columns) + "\n")
        for row in rows:
            handle.write("\t".join(row) + "\n")


def simulate_subject(plan: SubjectPlan) -> outcome.LesionBurden:
    """Build, image and write one subject; return its true lesion burden."""
    anatomy_rng, noise_rng = subject_rngs(plan.seed, plan.index)
    phantom = build_phantom(anatomy_rng, plan.sex, shift.lesion_pattern(plan.shift))
    scan = acquire(phantom, plan.center, noise_rng)
    pet_suv = scan.pet_suv.astype(np.float32)
    if shift.calibration(plan.shift) != 1.0:
        pet_suv = (pet_suv * np.float32(shift.calibration(plan.shift))).astype(np.float32)
    if plan.dicom:
        pet_suv = _write_dicom(pet_suv, scan.grid, plan)
    arrays = {"pet": pet_suv, "ct": scan.ct_hu, "mask": scan.mask, "organs": scan.organs}
    for kind in IMAGE_KINDS:
        _write_image(arrays[kind], scan.grid, plan.images_dir / f"{plan.subject_id}_{kind}.nii.gz")
    return outcome.lesion_burden(np.array([les.volume_ml for les in phantom.lesions]),
                                 np.array([les.texture_amplitude for les in phantom.lesions]),
                                 np.array([les.centre_mm for les in phantom.lesions]))


def _write_dicom(pet_suv: np.ndarray, grid: Grid, plan: SubjectPlan) -> np.ndarray:
    """Write the PET as a DICOM series; return the SUVs `biomarkers suv` reads back from it.

    The NIfTI PET is then written from those int16-quantised values, so a study from DICOM
    and one from NIfTI see the same SUVs.
    """
    from biomarkers.imaging.suv import read_suv  # pydicom only when asked for
    from biomarkers.simulate.dicom import PetHeader, write_pet_dicom

    folder = plan.images_dir / f"{plan.subject_id}_pet_dicom"
    write_pet_dicom(pet_suv, grid.spacing_mm, grid.origin_mm, folder, plan.subject_id,
                    np.random.SeedSequence(plan.seed, spawn_key=(3, plan.index)), PetHeader(sex=plan.sex))
    return sitk.GetArrayFromImage(read_suv(folder)[0])


def _check_arguments(n_subjects: int, n_centers: int, seed: int, validation_centers: int,
                     threads: int, shifted: int = 0) -> None:
    if n_subjects < 1:
        raise ValueError(f"n_subjects must be at least 1, got {n_subjects}")
    if n_centers < 1:
        raise ValueError(f"n_centers must be at least 1, got {n_centers}")
    if not 0 <= validation_centers < n_centers:
        raise ValueError(f"validation_centers must be between 0 and n_centers - 1 = {n_centers - 1} "
                         f"(at least one training centre), got {validation_centers}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    if shifted < 0 or (shifted and validation_centers < 1):
        raise ValueError(f"shifted subjects ({shifted}) must be non-negative and need a validation centre")


def _run(plans: list[SubjectPlan], threads: int) -> Iterator[outcome.LesionBurden]:
    """Simulate subjects in order, in a pool of ``threads`` processes when above 1."""
    if threads == 1 or len(plans) == 1:
        yield from map(simulate_subject, plans)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(threads, len(plans)), mp_context=context) as pool:
        yield from pool.map(simulate_subject, plans)


def simulate_cohort(out_dir: Path, n_subjects: int = 150, n_centers: int = 3, seed: int = 0,
                    validation_centers: int = 1, threads: int = 1, progress: bool = False,
                    dicom: bool = False, shifted: int = 0) -> Path:
    """Write a synthetic multi-centre PET/CT cohort; return the path of subjects.tsv.

    Parameters
    ----------
    out_dir : Path
        Output folder (created if needed).
    n_subjects : int
        Number of subjects; they are spread evenly over the centres in a seeded random order.
    n_centers : int
        Number of centres (scanners), named ``C1`` .. ``Cn``.
    seed : int
        Seed of every random draw; the same seed gives byte-identical files.
    validation_centers : int
        The last ``validation_centers`` centres form the ``validation`` cohort, the others ``train``.
    threads : int
        Worker processes (started with "spawn": a calling script needs an
        ``if __name__ == "__main__"`` guard); the output does not depend on it.
    progress : bool
        Show a progress bar over subjects.
    dicom : bool
        Also write each PET as a DICOM series (Units BQML, DecayCorrection START; header
        values drawn from spawn key (3, i)) under ``images/{subject_id}_pet_dicom/``, listed
        in a last subjects.tsv column ``pet_dicom``. Converting it back with
        :func:`biomarkers.imaging.suv.convert_dicom_to_suv` gives exactly the NIfTI PET, which
        is then written from the int16-quantised series.
    shifted : int
        Subjects added to the last centre (validation cohort) that a model should not trust:
        out of distribution or less determined by their images (:mod:`biomarkers.simulate.shift`).
        The regular subjects are the same with or without them.

    Returns
    -------
    Path
        ``out_dir / "subjects.tsv"``.
    """
    _check_arguments(n_subjects, n_centers, seed, validation_centers, threads, shifted)
    out_dir = Path(out_dir)
    images_dir = out_dir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    centers = default_centers(n_centers)
    plan_rng, center_of = plan_generator(n_subjects, n_centers, seed)
    covariates = outcome.draw_covariates(n_subjects, plan_rng)
    kinds = ["none"] * n_subjects + [shift.shift_kind(j) for j in range(shifted)]
    if shifted:
        extra = outcome.draw_covariates(shifted, np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(4,))))
        covariates = outcome.Covariates(*(np.concatenate([a, b]) for a, b in
                                          zip((covariates.age_years, covariates.sex, covariates.ecog),
                                              (extra.age_years, extra.sex, extra.ecog))))
        center_of = np.concatenate([center_of, np.full(shifted, n_centers - 1)])
    n_all = n_subjects + shifted
    ids = subject_ids(n_all)
    plans = [SubjectPlan(ids[i], i, seed, str(covariates.sex[i]),
                         shift.shifted_center(centers[center_of[i]]) if kinds[i] == "scanner" else centers[center_of[i]],
                         images_dir, dicom, kinds[i])
             for i in range(n_all)]
    bar = tqdm(_run(plans, threads), total=n_all, disable=not progress,
               desc="simulate", unit="subject")
    burdens = list(bar)
    lp = outcome.linear_predictor(np.array([b.mtv_ml for b in burdens]),
                                  np.array([b.heterogeneity for b in burdens]),
                                  np.array([b.dissemination_mm for b in burdens]),
                                  covariates.age_years, covariates.ecog)
    outcome_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
    time_days, event, event_days = outcome.draw_survival(lp[:n_subjects], outcome_rng, latent=True)
    if shifted:
        shifted_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(5,)))
        more = outcome.draw_survival(lp[n_subjects:], shifted_rng, latent=True)
        time_days, event, event_days = (np.concatenate([a, b]) for a, b in zip((time_days, event, event_days), more))

    _write_tsv(out_dir / "centers.tsv", CENTER_COLUMNS,
               ([c.name, "x".join(f"{s:.1f}" for s in c.spacing_mm), f"{c.psf_fwhm_mm:.1f}",
                 f"{c.noise_cv:.3f}"] for c in centers))
    _write_tsv(out_dir / "truth.tsv", TRUTH_COLUMNS,
               ([ids[i], f"{lp[i]:.6f}", f"{b.mtv_ml:.4f}", f"{b.heterogeneity:.6f}",
                 str(b.lesion_count), f"{b.dissemination_mm:.2f}", f"{event_days[i]:.1f}", kinds[i],
                 str(int(kinds[i] in shift.OOD_KINDS))] for i, b in enumerate(burdens)))
    n_train = n_centers - validation_centers
    dicom_dirs = [f"images/{subject_id}_pet_dicom" for subject_id in ids] if dicom else []
    rows = ([ids[i], "train" if center_of[i] < n_train else "validation", centers[center_of[i]].name,
             *(image_path(ids[i], kind) for kind in IMAGE_KINDS),
             f"{time_days[i]:.1f}", str(int(event[i])), str(int(covariates.age_years[i])),
             str(covariates.sex[i]), str(int(covariates.ecog[i])), *dicom_dirs[i:i + 1]]
            for i in range(n_all))
    subjects = out_dir / "subjects.tsv"
    _write_tsv(subjects, SUBJECT_COLUMNS + (("pet_dicom",) if dicom else ()), rows)
    return subjects
