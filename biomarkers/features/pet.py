"""PET metrics per lesion: SUVmax, SUVmean, SUVpeak (IBSI local and global peak), MTV, TLG.

Definitions follow the IBSI reference manual (Zwanenburg et al., arXiv:1612.07003,
section 3.2 "local intensity"): the *local intensity peak* is the mean intensity in a
1 cm3 sphere (radius 6.2035 mm) centred on the voxel of maximum intensity in the ROI
(the highest such mean where several voxels share the maximum); the *global intensity
peak* is the highest such sphere mean centred on any ROI voxel. The sphere holds every
image voxel (inside or outside the ROI) whose centre lies within the radius; voxels
beyond the image edge are not counted.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage, signal

#: Radius (mm) of a sphere of volume 1 cm3: (3 * 1000 / (4 pi)) ** (1/3).
PEAK_RADIUS_MM = (3000.0 / (4.0 * np.pi)) ** (1.0 / 3.0)

PET_COLUMNS = ("suv_max", "suv_mean", "suv_peak", "suv_peak_global", "mtv_ml", "tlg")


def sphere_kernel(spacing_mm: tuple[float, float, float], radius_mm: float = PEAK_RADIUS_MM) -> np.ndarray:
    """Boolean kernel of voxels whose centres lie within ``radius_mm`` of the central voxel."""
    half = [int(np.floor(radius_mm / s)) for s in spacing_mm]
    grids = np.meshgrid(*[np.arange(-h, h + 1) * s for h, s in zip(half, spacing_mm)], indexing="ij")
    return sum(g**2 for g in grids) <= radius_mm**2 + 1e-9


def local_mean(image: np.ndarray, spacing_mm: tuple[float, float, float],
               radius_mm: float = PEAK_RADIUS_MM) -> np.ndarray:
    """Mean of the image over a sphere around every voxel, by FFT convolution.

    Voxels outside the image are excluded from both sum and count.
    """
    kernel = sphere_kernel(spacing_mm, radius_mm).astype(np.float64)
    total = signal.fftconvolve(image.astype(np.float64), kernel, mode="same")
    count = signal.fftconvolve(np.ones(image.shape), kernel, mode="same")
    return total / np.rint(count)


def pet_metrics(suv: np.ndarray, labels: np.ndarray, spacing_mm: tuple[float, float, float],
                origin_index_to_mm=None) -> pd.DataFrame:
    """PET metrics for every non-zero label.

    Parameters
    ----------
    suv : ndarray
        SUV volume (z, y, x).
    labels : ndarray of int
        Lesion labels on the same grid (0 background).
    spacing_mm : tuple of float
        Voxel spacing in (z, y, x) order.
    origin_index_to_mm : callable, optional
        Maps a (z, y, x) continuous index to physical (x, y, z) mm; adds centroid columns.

    Returns
    -------
    DataFrame
        ``lesion_id`` then :data:`PET_COLUMNS` (and ``centroid_*_mm`` if requested).
    """
    ids = np.unique(labels)
    ids = ids[ids != 0]
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    kernel = sphere_kernel(spacing_mm)
    margin = np.array(kernel.shape) // 2
    rows = []
    objects = ndimage.find_objects(labels.astype(np.int64))
    for lesion_id in ids:
        box = objects[lesion_id - 1]
        # Crop with a margin of one kernel radius: for ROI voxels the sphere then lies
        # inside the crop except where it is cut by the true image edge, so the crop's
        # sphere means equal the whole image's.
        lo = np.maximum([s.start for s in box] - margin, 0)
        hi = np.minimum([s.stop for s in box] + margin, labels.shape)
        crop = tuple(slice(a, b) for a, b in zip(lo, hi))
        roi = labels[crop] == lesion_id
        values = suv[crop][roi].astype(np.float64)
        means = local_mean(suv[crop], spacing_mm)[roi]
        suv_max = values.max()
        suv_mean = values.mean()
        mtv_ml = roi.sum() * voxel_ml
        row = {
            "lesion_id": int(lesion_id),
            "suv_max": suv_max,
            "suv_mean": suv_mean,
            "suv_peak": means[values == suv_max].max(),
            "suv_peak_global": means.max(),
            "mtv_ml": mtv_ml,
            "tlg": suv_mean * mtv_ml,
        }
        if origin_index_to_mm is not None:
            centre = np.argwhere(roi).mean(axis=0) + lo
            x, y, z = origin_index_to_mm(centre)
            row.update(centroid_x_mm=x, centroid_y_mm=y, centroid_z_mm=z)
        rows.append(row)
    columns = ["lesion_id", *PET_COLUMNS]
    if origin_index_to_mm is not None:
        columns += ["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]
    return pd.DataFrame(rows, columns=columns)

