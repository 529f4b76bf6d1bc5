"""Threshold segmentation of PET lesions with connected components.

Two methods:

``fixed``
    every voxel with SUV >= ``threshold_suv`` (2.5 is the classic cut-off).
``relative``
    candidate regions are the components of SUV >= ``threshold_suv``; inside each, voxels
    with SUV >= ``fraction`` x that region's SUVmax are kept (41 % is the EANM choice for
    fixed-threshold MTV).

Components that lie mostly (``organ_overlap_max``) inside a physiological-uptake organ
(brain, heart, kidneys, bladder, liver) dilated by one voxel are physiological, not
lesions, and are dropped; components smaller than ``min_volume_ml`` are dropped.
Labels are numbered 1..n in raster order of each component's first voxel.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

METHODS = ("fixed", "relative")
_STRUCTURE = ndimage.generate_binary_structure(3, 3)  # 26-connectivity


def segment_lesions(suv: np.ndarray, spacing_mm: tuple[float, float, float], method: str = "relative",
                    threshold_suv: float = 2.5, fraction: float = 0.41, min_volume_ml: float = 0.5,
                    organs: np.ndarray | None = None, organ_overlap_max: float = 0.5) -> np.ndarray:
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
    organ_overlap_max : float
        A component with more than this fraction of its voxels in the dilated organ mask is dropped.

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
    candidates = _keep_lesion_components(suv >= threshold_suv, organs, organ_overlap_max)
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


def _keep_lesion_components(binary: np.ndarray, organs: np.ndarray | None, overlap_max: float) -> np.ndarray:
    """Drop components that lie mostly inside the (one-voxel dilated) organ mask."""
    if organs is None or not organs.any():
        return binary
    organ = ndimage.binary_dilation(organs > 0, structure=_STRUCTURE)
    labels, n = ndimage.label(binary, structure=_STRUCTURE)
    if n == 0:
        return binary
    total = np.bincount(labels.ravel(), minlength=n + 1)
    inside = np.bincount(labels[organ].ravel(), minlength=n + 1)
    drop = inside > overlap_max * total
    drop[0] = True
    return binary & ~drop[labels] & ~organ
