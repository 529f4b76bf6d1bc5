"""Segmentation quality against a reference, as the autoPET challenge scores it.

autoPET (Gatidis et al., "The autoPET challenge", Nat Mach Intell 2024; evaluation script of
the challenge) reports per case:

* Dice of the foreground (all lesions together);
* false-positive volume: the volume of predicted connected components that do not overlap
  the reference at all;
* false-negative volume: the volume of reference connected components that the prediction
  does not overlap at all.

Components use 18-connectivity, as in the challenge's script. Volumes are in mL.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

_CONNECTIVITY_18 = ndimage.generate_binary_structure(3, 2)


def _unmatched_volume_ml(mask: np.ndarray, other: np.ndarray, voxel_ml: float) -> tuple[float, int, int]:
    """Volume and count of ``mask``'s components that do not touch ``other``; total count."""
    labels, n = ndimage.label(mask, structure=_CONNECTIVITY_18)
    if n == 0:
        return 0.0, 0, 0
    hit = np.zeros(n + 1, dtype=bool)
    hit[np.unique(labels[other & mask])] = True
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    missed = ~hit
    missed[0] = False
    return float(sizes[missed].sum() * voxel_ml), int(missed.sum()), n


def autopet_metrics(prediction: np.ndarray, reference: np.ndarray,
                    spacing_mm: tuple[float, float, float]) -> dict[str, float]:
    """Dice, false-positive and false-negative volume of one case (see the module docstring).

    Dice is NaN when both masks are empty (autoPET scores Dice on positive cases only).
    """
    pred, ref = prediction > 0, reference > 0
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    denominator = pred.sum() + ref.sum()
    dice = 2.0 * (pred & ref).sum() / denominator if denominator else np.nan
    fp_ml, fp_n, pred_n = _unmatched_volume_ml(pred, ref, voxel_ml)
    fn_ml, fn_n, ref_n = _unmatched_volume_ml(ref, pred, voxel_ml)
    return {"dice": float(dice), "fp_volume_ml": fp_ml, "fn_volume_ml": fn_ml,
            "pred_volume_ml": float(pred.sum() * voxel_ml), "ref_volume_ml": float(ref.sum() * voxel_ml),
            "pred_components": pred_n, "ref_components": ref_n,
            "fp_components": fp_n, "fn_components": fn_n}


def summarise(per_case: pd.DataFrame, by: str = "method") -> pd.DataFrame:
    """Cohort summary per ``by``: mean and median Dice, mean and median FP/FN volume."""
    grouped = per_case.groupby(by, sort=False)
    extra = {}
    if "organs" in per_case:
        extra["organs"] = grouped["organs"].first()
    if "flagged" in per_case:
        extra["flagged"] = grouped["flagged"].sum().astype(int)
    return pd.DataFrame({
        **extra,
        "cases": grouped.size(),
        "dice_mean": grouped["dice"].mean(),
        "dice_median": grouped["dice"].median(),
        "fp_volume_ml_mean": grouped["fp_volume_ml"].mean(),
        "fp_volume_ml_median": grouped["fp_volume_ml"].median(),
        "fn_volume_ml_mean": grouped["fn_volume_ml"].mean(),
        "fn_volume_ml_median": grouped["fn_volume_ml"].median(),
    }).reset_index()
