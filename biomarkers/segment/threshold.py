"""Threshold segmentation of PET lesions with connected components.

Two methods:

``fixed``
    every voxel with SUV >= ``threshold_suv`` (2.5 is the classic cut-off).
``relative``
    candidate regions are the components of SUV >= ``threshold_suv``; inside each, voxels
    with SUV >= ``fraction`` x that region's SUVmax are kept (41 % is the EANM choice for
    fixed-threshold MTV).

Physiological uptake (brain, heart, kidneys, bladder, liver; the ``organs`` label image) is
excluded in two steps: organ voxels are never lesion voxels, and a remaining component that
touches an organ (26-neighbourhood) but is no hotter than that organ (its SUVmax at most the
organ's 95th SUV percentile) is spill-over of the organ's uptake through the scanner's blur,
not a lesion, and is dropped. A lesion inside or beside an organ is hotter than the organ and
survives; one no hotter than its organ cannot be told from it by thresholds (a known limit).
Components smaller than ``min_volume_ml`` are dropped.
Labels are numbered 1..n in raster order of each component's first voxel.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

METHODS = ("fixed", "relative")
_STRUCTURE = ndimage.generate_binary_structure(3, 3)  # 26-connectivity


def segment_lesions(suv: np.ndarray, spacing_mm: tuple[float, float, float], method: str = "relative",
                    threshold_suv: float = 2.5, fraction: float = 0.41, min_volume_ml: float = 0.5,
                    organs: np.ndarray | None = None) -> np.ndarray:
    """Label lesions in an SUV volume.

    Parameters
    ----------
    suv : ndarray
        SUV volume (z, y, x).
    spacing_mm : tuple of float
        Voxel spacing in (z, y, x) order.
    method : {"fixed", "relative"}
        See the module docstring.
    threshold_suv : float
        Absolute SUV threshold (``fixed``) or candidate threshold (``relative``).
    fraction : float
        Fraction of each region's SUVmax for ``relative``.
    min_volume_ml : float
        Components below this volume are discarded.
    organs : ndarray, optional
        Organ label image on the same grid; non-zero voxels are physiological uptake.

    Returns
    -------
    ndarray of uint16
        Lesion labels 1..n, 0 background.
    """
    if method not in METHODS:
        raise ValueError(f"unknown segmentation method {method!r}; choose one of {', '.join(METHODS)}")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    candidates = _drop_organ_uptake(suv >= threshold_suv, suv, organs)
    if method == "relative":
        labels, n = ndimage.label(candidates, structure=_STRUCTURE)
        if n:
            region_max = ndimage.maximum(suv, labels, index=np.arange(1, n + 1))
            cut = np.concatenate([[np.inf], fraction * np.asarray(region_max)])
            candidates = candidates & (suv >= cut[labels])
    labels, n = ndimage.label(candidates, structure=_STRUCTURE)
    if n == 0:
        return labels.astype(np.uint16)
    counts = np.bincount(labels.ravel(), minlength=n + 1)
    keep = counts * voxel_ml >= min_volume_ml
    keep[0] = False
    new_ids = np.zeros(n + 1, dtype=np.uint16)
    new_ids[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint16)
    return new_ids[labels]


def _drop_organ_uptake(binary: np.ndarray, suv: np.ndarray, organs: np.ndarray | None) -> np.ndarray:
    """Remove organ voxels, then components touching an organ but no hotter than it."""
    if organs is None or not organs.any():
        return binary
    binary = binary & (organs == 0)
    labels, n = ndimage.label(binary, structure=_STRUCTURE)
    if n == 0:
        return binary
    ceiling = np.zeros(n + 1)  # per component: the hottest touched organ's 95th percentile
    for organ_id in np.unique(organs[organs > 0]):
        organ = organs == organ_id
        touched = np.unique(labels[ndimage.binary_dilation(organ, structure=_STRUCTURE)])
        ceiling[touched] = np.maximum(ceiling[touched], np.percentile(suv[organ], 95))
    comp_max = np.concatenate([[np.inf], ndimage.maximum(suv, labels, index=np.arange(1, n + 1))])
    drop = comp_max <= ceiling
    drop[0] = False
    return binary & ~drop[labels]
