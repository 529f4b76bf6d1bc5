"""Shifted subjects: the patients an uncertainty measure exists for, with their ground truth.

``simulate_cohort(..., shifted=N)`` appends N subjects to the last (validation) centre, after the
regular ones and from random streams of their own, so the regular subjects' files, covariates and
outcomes stay exactly what they were without them. Their kinds take turns, in this order:

``scanner`` (out of distribution)
    Imaged on a scanner unlike every centre's: 2 mm voxels, 3.5 mm PSF (a digital PET with
    resolution recovery), noise CV 0.22, and SUVs 30 % high (a dose-calibrator cross-calibration
    error; the EARL accreditation tolerance is about 10 %). The sheet still names the validation
    centre: a replaced scanner at a known hospital, which ComBat's per-centre estimates cannot
    know about.
``bulky`` (out of distribution)
    Eight lesions of 18-22 mm radius and SUV 12-15 (:data:`~biomarkers.simulate.phantom.LESION_PATTERNS`):
    a burden beyond the range of the training cohort, where a fitted model extrapolates.
``faint`` (outcome less determined by the images)
    Lesion uptake SUV 2.6-3.6, near the 2.5 threshold: the segmented volume and texture say
    little of the true burden that drives the hazard, so the score is often wrong though the
    patient resembles the training cohort.

The outcome of every shifted subject follows the same model as everyone's
(:mod:`biomarkers.simulate.outcome`) from its true burden. ``truth.tsv`` names each subject's
``shift`` (``none`` for the regular ones) and ``ood`` (1 for scanner and bulky).

Random streams (spawn keys of the cohort seed): (4,) covariates, (5,) outcomes; the anatomy
and noise of shifted subject j use (2, n + j, 0|1) as a regular subject of index n + j would.
"""
from __future__ import annotations

from biomarkers.simulate.scanner import Center

SHIFT_KINDS: tuple[str, ...] = ("scanner", "bulky", "faint")
#: Kinds out of the training distribution (the target of out-of-distribution detection).
OOD_KINDS: frozenset[str] = frozenset({"scanner", "bulky"})
SHIFT_SPACING_MM: tuple[float, float, float] = (2.0, 2.0, 2.0)
SHIFT_PSF_FWHM_MM: float = 3.5
SHIFT_NOISE_CV: float = 0.22
SHIFT_CALIBRATION: float = 1.3


def shift_kind(j: int) -> str:
    """Kind of the ``j``-th shifted subject (0-based)."""
    return SHIFT_KINDS[j % len(SHIFT_KINDS)]


def shifted_center(center: Center) -> Center:
    """The unlike scanner, under the name of the centre it replaced."""
    return Center(center.name, SHIFT_SPACING_MM, SHIFT_PSF_FWHM_MM, SHIFT_NOISE_CV)


def lesion_pattern(kind: str) -> str:
    """The phantom's lesion pattern of a subject of ``kind`` (``none`` for a regular subject)."""
    return kind if kind in ("bulky", "faint") else "typical"


def calibration(kind: str) -> float:
    """Factor on the PET's SUVs of a subject of ``kind``."""
    return SHIFT_CALIBRATION if kind == "scanner" else 1.0
