"""PET metrics per lesion: SUVmax, SUVmean, SUVpeak (IBSI local and global peak), MTV, TLG, IVH.

Definitions follow the IBSI reference manual (Zwanenburg et al., arXiv:1612.07003,
section 3.2 "local intensity"): the *local intensity peak* is the mean intensity in a
1 cm3 sphere (radius 6.2035 mm) centred on the voxel of maximum intensity in the ROI
(the highest such mean where several voxels share the maximum); the *global intensity
peak* is the highest such sphere mean centred on any ROI voxel. The sphere holds every
image voxel (inside or outside the ROI) whose centre lies within the radius; voxels
beyond the image edge are not counted. The intensity-volume histogram features
(:mod:`biomarkers.features.ivh`) are computed on SUV discretised with a fixed bin width of
0.1 SUV, the width the manual suggests for FDG-PET (section 3.5).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.fft
from scipy import ndimage, signal

from biomarkers.features.ivh import IVH_COLUMNS, ivh_metrics

#: Radius (mm) of a sphere of volume 1 cm3: (3 * 1000 / (4 pi)) ** (1/3).
PEAK_RADIUS_MM = (3000.0 / (4.0 * np.pi)) ** (1.0 / 3.0)

PET_COLUMNS = ("suv_max", "suv_mean", "suv_peak", "suv_peak_global", "mtv_ml", "tlg")

#: Bin width (SUV) of the intensity-volume histogram of every lesion.
IVH_BIN_WIDTH_SUV = 0.1


def sphere_kernel(spacing_mm: tuple[float, float, float], radius_mm: float = PEAK_RADIUS_MM) -> np.ndarray:
    """Boolean kernel of voxels whose centres lie within ``radius_mm`` of the central voxel."""
    half = [int(np.floor(radius_mm / s)) for s in spacing_mm]
    grids = np.meshgrid(*[np.arange(-h, h + 1) * s for h, s in zip(half, spacing_mm)], indexing="ij")
    return sum(g**2 for g in grids) <= radius_mm**2 + 1e-9


def _inside_counts(shape: tuple[int, ...], kernel: np.ndarray) -> np.ndarray:
    """Number of image voxels in the sphere around every voxel (fewer near the image edge).

    The count depends only on each axis's distance to the two edges, clipped at the
    kernel's half-width, so it is computed on a reduced grid of at most ``2h + 1`` voxels
    per axis and indexed back to the full shape.
    """
    half = [k // 2 for k in kernel.shape]
    reduced = [min(n, 2 * h + 1) for n, h in zip(shape, half)]
    small = ndimage.correlate(np.ones(reduced), kernel, mode="constant", cval=0.0)
    index = []
    for n, h, r in zip(shape, half, reduced):
        i = np.arange(n)
        if r < n:
            i = np.where(i < h, i, np.where(i >= n - h, i - (n - r), h))
        index.append(i)
    return np.rint(small[np.ix_(*index)])


#: Above this many voxels in the sphere, the sum is taken by FFT rather than directly.
_DIRECT_MAX_TAPS = 64


def local_mean(image: np.ndarray, spacing_mm: tuple[float, float, float],
               radius_mm: float = PEAK_RADIUS_MM) -> np.ndarray:
    """Mean of the image over a sphere around every voxel (a convolution).

    Voxels outside the image are excluded from both sum and count. The sum is a direct
    correlation with the sphere's voxels when the sphere holds few of them (coarse PET
    voxels), else an FFT convolution; both are exact to rounding.
    """
    kernel = sphere_kernel(spacing_mm, radius_mm).astype(np.float64)
    image = np.asarray(image, dtype=np.float64)
    if kernel.sum() <= _DIRECT_MAX_TAPS:
        total = ndimage.correlate(image, kernel, mode="constant", cval=0.0)
    else:
        with scipy.fft.set_workers(-1):
            total = signal.fftconvolve(image, kernel, mode="same")
    return total / _inside_counts(image.shape, kernel)


def pet_metrics(suv: np.ndarray, labels: np.ndarray, spacing_mm: tuple[float, float, float],
                origin_index_to_mm=None, ivh_bin_width: float = IVH_BIN_WIDTH_SUV) -> pd.DataFrame:
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
    ivh_bin_width : float
        Bin width (in SUV) of the intensity-volume histogram.

    Returns
    -------
    DataFrame
        ``lesion_id``, :data:`PET_COLUMNS`, :data:`~biomarkers.features.ivh.IVH_COLUMNS`
        (and ``centroid_*_mm`` if requested).
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
            **ivh_metrics(values, ivh_bin_width),
        }
        if origin_index_to_mm is not None:
            centre = np.argwhere(roi).mean(axis=0) + lo
            x, y, z = origin_index_to_mm(centre)
            row.update(centroid_x_mm=x, centroid_y_mm=y, centroid_z_mm=z)
        rows.append(row)
    columns = ["lesion_id", *PET_COLUMNS, *IVH_COLUMNS]
    if origin_index_to_mm is not None:
        columns += ["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]
    return pd.DataFrame(rows, columns=columns)

