"""Plausibility checks of a lesion segmentation: organ-like locations and total volume.

A segmentation that counts physiological uptake as tumour (a threshold method run without organ
masks counts the brain, heart and bladder: litres) makes every feature and model downstream
meaningless while looking like any other label image. Two checks flag it for review:

* **organ share**: the share of the segmented volume lying inside an organ label image
  (:mod:`biomarkers.segment.organs`; e.g. the organ-aware U-Net's prediction), flagged above
  ``max_organ_share`` when at least ``min_organ_ml`` lie there. Lesions are never organ voxels
  in that convention, so a large share is physiological uptake;
* **total volume**: more than ``max_total_ml`` in all (the default 1,000 mL is far above the
  total metabolic tumour volume of nearly every FDG study; such a case deserves a look).

A flagged segmentation is reported (``biomarkers segment`` writes a one-line warning naming the
subject and file to its log; ``segment-quality`` counts flagged cases per method) rather than
refused: a bulky lymphoma can be real.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Share of the segmented volume inside organs above which a segmentation is flagged.
MAX_ORGAN_SHARE = 0.25
#: Least segmented volume (mL) inside organs for the organ share to flag a segmentation (a few
#: boundary voxels of a small lesion next to an organ are no physiological uptake).
MIN_ORGAN_ML = 5.0
#: Total segmented volume (mL) above which a segmentation is flagged.
MAX_TOTAL_ML = 1000.0


@dataclass(frozen=True)
class Plausibility:
    """What the checks measured and whether the segmentation is flagged."""

    total_ml: float
    organ_share: float          # NaN without an organ image
    flagged: bool
    reasons: tuple[str, ...]


def check_segmentation(labels: np.ndarray, spacing_mm: tuple[float, float, float],
                       organs: np.ndarray | None = None, max_organ_share: float = MAX_ORGAN_SHARE,
                       max_total_ml: float = MAX_TOTAL_ML, min_organ_ml: float = MIN_ORGAN_ML) -> Plausibility:
    """Measure a lesion label image (non-zero = lesion) against the two checks."""
    lesion = np.asarray(labels) > 0
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    total = float(lesion.sum() * voxel_ml)
    share = float("nan")
    reasons = []
    if organs is not None:
        inside = int((lesion & (np.asarray(organs) > 0)).sum())
        share = inside / int(lesion.sum()) if lesion.any() else 0.0
        if share > max_organ_share and inside * voxel_ml >= min_organ_ml:
            reasons.append(f"{100 * share:.0f} % of the segmented volume lies in organs of physiological uptake")
    if total > max_total_ml:
        reasons.append(f"total segmented volume {total:.0f} mL exceeds {max_total_ml:.0f} mL")
    return Plausibility(total, share, bool(reasons), tuple(reasons))
