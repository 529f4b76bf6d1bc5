"""Threshold segmentation of PET lesions with connected components.

Methods (``method`` argument, ``biomarkers segment --method``):

``fixed``
    every voxel with SUV >= ``threshold_suv`` (2.5 and 4.0 are the usual cut-offs).
``relative``
    relative threshold seeded from a coarse mask: candidate regions are the components of
    SUV >= ``threshold_suv``; inside each, voxels with SUV >= ``fraction`` x that region's
    SUVmax are kept (41 % of SUVmax is the EANM guideline's choice for MTV).
``relative-maxima``
    relative threshold seeded from local maxima: every local SUV maximum (the hottest voxel
    within ``seed_radius_mm``, SUV >= ``threshold_suv``) seeds a lesion, grown, hottest seed
    first, as the connected region of SUV >= ``fraction`` x the seed's SUV among voxels no
    hotter seed has taken. Neighbouring lesions that a coarse mask would merge stay apart.
``percist``
    PERCIST 1.0 liver-referenced threshold (Wahl et al., J Nucl Med 2009;50:122S-150S):
    1.5 x mean + 2 x SD of the SUV in a 3 cm diameter sphere in the liver, placed here at the
    liver voxel farthest from the liver's edge (needs the organ mask's liver label).

Physiological uptake (brain, heart, kidneys, bladder, liver; the ``organs`` label image) is
excluded in two steps: organ voxels are never lesion voxels, and a remaining component that
touches an organ (26-neighbourhood) but is no hotter than that organ (its SUVmax at most the
organ's 95th SUV percentile) is spill-over of the organ's uptake through the scanner's blur,
not a lesion, and is dropped. A lesion inside or beside an organ is hotter than the organ and
survives; one no hotter than its organ cannot be told from it by thresholds (a known limit).
Components smaller than ``min_volume_ml`` are dropped.
Labels are numbered 1..n in raster order of each lesion's first voxel.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

METHODS = ("fixed", "relative", "relative-maxima", "percist")
_STRUCTURE = ndimage.generate_binary_structure(3, 3)  # 26-connectivity
#: PERCIST liver reference: a sphere of 3 cm diameter.
PERCIST_SPHERE_RADIUS_MM = 15.0


def segment_lesions(suv: np.ndarray, spacing_mm: tuple[float, float, float], method: str = "relative",
                    threshold_suv: float = 2.5, fraction: float = 0.41, min_volume_ml: float = 0.5,
                    organs: np.ndarray | None = None, liver_label: int = 2,
                    seed_radius_mm: float = 6.0) -> np.ndarray:
    """Label lesions in an SUV volume.

    Parameters
    ----------
    suv : ndarray
        SUV volume (z, y, x).
    spacing_mm : tuple of float
        Voxel spacing in (z, y, x) order.
    method : {"fixed", "relative", "relative-maxima", "percist"}
        See the module docstring.
    threshold_suv : float
        Absolute SUV threshold (``fixed``), candidate or seed threshold (``relative``,
        ``relative-maxima``); ignored by ``percist``, which derives its own.
    fraction : float
        Fraction of the region's or seed's SUV for the relative methods.
    min_volume_ml : float
        Lesions below this volume are discarded.
    organs : ndarray, optional
        Organ label image on the same grid; non-zero voxels are physiological uptake.
    liver_label : int
        Label of the liver in ``organs`` (``percist``).
    seed_radius_mm : float
        A seed of ``relative-maxima`` is the hottest voxel within this radius.

    Returns
    -------
    ndarray of uint16
        Lesion labels 1..n, 0 background.
    """
    if method not in METHODS:
        raise ValueError(f"unknown segmentation method {method!r}; choose one of {', '.join(METHODS)}")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    if method != "percist" and not threshold_suv > 0:
        raise ValueError(f"the SUV threshold must be positive, got {threshold_suv} (SUV 0 and below is "
                         "background and would make the whole body one lesion)")
    if not min_volume_ml >= 0:
        raise ValueError(f"min_volume_ml must be 0 or more, got {min_volume_ml}")
    if method == "percist":
        threshold_suv = percist_threshold(suv, organs, spacing_mm, liver_label)
    candidates = _drop_organ_uptake(suv >= threshold_suv, suv, organs)
    if method == "relative-maxima":
        labels = _grow_from_maxima(suv, candidates, fraction, spacing_mm, seed_radius_mm)
    else:
        if method == "relative":
            labels, n = ndimage.label(candidates, structure=_STRUCTURE)
            if n:
                candidates = candidates & (suv >= fraction * _label_max(suv, labels, n)[labels])
        labels, _ = ndimage.label(candidates, structure=_STRUCTURE)
    return _renumber(labels, float(np.prod(spacing_mm)) / 1000.0, min_volume_ml)


def percist_threshold(suv: np.ndarray, organs: np.ndarray | None, spacing_mm: tuple[float, float, float],
                      liver_label: int = 2) -> float:
    """PERCIST 1.0 threshold, 1.5 x mean + 2 x SD of the liver reference sphere.

    The 3 cm sphere is centred on the liver voxel farthest from the liver's edge and holds
    the liver voxels whose centres lie within 15 mm of it.
    """
    if organs is None or not (organs == liver_label).any():
        raise ValueError(f"percist needs an organ mask with the liver (label {liver_label})")
    liver = organs == liver_label
    depth = ndimage.distance_transform_edt(liver, sampling=spacing_mm)
    centre = np.unravel_index(int(np.argmax(depth)), liver.shape)
    half = [int(np.ceil(PERCIST_SPHERE_RADIUS_MM / s)) for s in spacing_mm]
    box = tuple(slice(max(c - h, 0), min(c + h + 1, n)) for c, h, n in zip(centre, half, liver.shape))
    grid = np.meshgrid(*[(np.arange(b.start, b.stop) - c) * s for b, c, s in zip(box, centre, spacing_mm)],
                       indexing="ij")
    sphere = (sum(g**2 for g in grid) <= PERCIST_SPHERE_RADIUS_MM**2) & liver[box]
    values = suv[box][sphere].astype(np.float64)
    if values.size < 2:
        raise ValueError("percist: the liver mask is too small for a reference region")
    return float(1.5 * values.mean() + 2.0 * values.std(ddof=1))


def _grow_from_maxima(suv: np.ndarray, candidates: np.ndarray, fraction: float,
                      spacing_mm: tuple[float, float, float], seed_radius_mm: float) -> np.ndarray:
    """Labels grown from local maxima, hottest first (see ``relative-maxima``)."""
    half = [max(int(seed_radius_mm // s), 1) for s in spacing_mm]
    grid = np.meshgrid(*[np.arange(-h, h + 1) * s for h, s in zip(half, spacing_mm)], indexing="ij")
    footprint = sum(g**2 for g in grid) <= seed_radius_mm**2
    masked = np.where(candidates, suv, -np.inf)
    peaks = candidates & (masked == ndimage.maximum_filter(masked, footprint=footprint, mode="constant",
                                                           cval=-np.inf))
    peak_labels, n_peaks = ndimage.label(peaks, structure=_STRUCTURE)  # plateaus give one seed
    if n_peaks == 0:
        return np.zeros(suv.shape, dtype=np.int64)
    seeds = ndimage.maximum_position(suv, peak_labels, index=np.arange(1, n_peaks + 1))
    regions, _ = ndimage.label(candidates, structure=_STRUCTURE)
    boxes = ndimage.find_objects(regions)
    labels = np.zeros(suv.shape, dtype=np.int64)
    next_id = 1
    for seed in sorted(seeds, key=lambda p: (-suv[p], p)):
        if labels[seed]:
            continue  # inside a hotter seed's lesion
        box = boxes[regions[seed] - 1]
        local = (regions[box] == regions[seed]) & (labels[box] == 0) & (suv[box] >= fraction * suv[seed])
        comp, _ = ndimage.label(local, structure=_STRUCTURE)
        seed_local = tuple(p - b.start for p, b in zip(seed, box))
        labels[box][comp == comp[seed_local]] = next_id
        next_id += 1
    return labels


def label_components(binary: np.ndarray, spacing_mm: Sequence[float], min_volume_ml: float) -> np.ndarray:
    """Connected components (26-neighbourhood) of ``binary`` as lesions 1..n (uint16), numbered in
    raster order of each one's first voxel, those under ``min_volume_ml`` dropped: the lesion
    numbering of every segmentation method here and of the U-Net (:mod:`biomarkers.segment.unet_infer`)."""
    labels, _ = ndimage.label(binary, structure=_STRUCTURE)
    return _renumber(labels, float(np.prod(spacing_mm)) / 1000.0, min_volume_ml)


def _renumber(labels: np.ndarray, voxel_ml: float, min_volume_ml: float) -> np.ndarray:
    """Drop labels under ``min_volume_ml`` and number the rest 1..n in raster order."""
    if not labels.any():
        return np.zeros(labels.shape, dtype=np.uint16)
    flat = labels.ravel()
    counts = np.bincount(flat)
    ids, first = np.unique(flat, return_index=True)
    order = [i for _, i in sorted(zip(first, ids)) if i != 0 and counts[i] * voxel_ml >= min_volume_ml]
    new_ids = np.zeros(counts.size, dtype=np.uint16)
    new_ids[order] = np.arange(1, len(order) + 1, dtype=np.uint16)
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
    organ_ids = np.arange(1, int(organs.max()) + 1)
    for organ_id, box in zip(organ_ids, ndimage.find_objects(organs)):
        if box is None:
            continue
        box = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box)  # room for the dilation
        organ = organs[box] == organ_id
        touched = np.unique(labels[box][ndimage.binary_dilation(organ, structure=_STRUCTURE)])
        ceiling[touched] = np.maximum(ceiling[touched], np.percentile(suv[box][organ], 95))
    ceiling[0] = -np.inf
    drop = _label_max(suv, labels, n) <= ceiling
    return binary & ~drop[labels]


def _label_max(values: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Maximum of ``values`` per label 0..n (+inf for the background), over labelled voxels only."""
    inside = labels > 0
    out = np.full(n + 1, -np.inf)
    np.maximum.at(out, labels[inside], values[inside])
    out[0] = np.inf
    return out
