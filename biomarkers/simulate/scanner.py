"""Centre (scanner) model: PSF blur, resampling to the centre's voxel grid, noise.

A centre is a PET/CT scanner with its reconstruction: voxel size, spatial
resolution (Gaussian PSF given as FWHM in mm) and noise level. The fine phantom
is blurred by the PSF, area-averaged onto the centre's grid and given
Poisson-like, slightly spatially correlated noise. Label images are resampled
by majority of the voxel volume. All steps are single-threaded and
deterministic, so outputs do not depend on the number of worker processes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, sparse

from biomarkers.simulate.phantom import ORGAN_LABELS, Box, Grid, Phantom

FWHM_PER_SIGMA: float = 2.0 * np.sqrt(2.0 * np.log(2.0))  # 2.3548
REFERENCE_SUV: float = 2.3        # activity at which ``noise_cv`` is the voxel CV (liver level)
NOISE_SIGMA_VOXELS: float = 0.8   # correlation of the PET noise, in centre voxels
CT_NOISE_HU: float = 8.0          # SD of the low-dose CT noise after resampling

# (spacing x, y, z in mm, PSF FWHM in mm, noise CV at liver level); centre k uses row k % 8,
# and every further round of 8 centres gets 0.5 mm more blur and 0.01 more noise.
_CENTRE_TABLE: tuple[tuple[float, float, float, float, float], ...] = (
    (4.0, 4.0, 4.0, 6.0, 0.10), (3.0, 3.0, 3.0, 5.0, 0.15), (5.0, 5.0, 4.0, 8.0, 0.12),
    (3.6, 3.6, 3.3, 5.5, 0.13), (4.1, 4.1, 3.0, 6.5, 0.11), (2.7, 2.7, 3.3, 4.5, 0.18),
    (5.5, 5.5, 5.0, 9.0, 0.09), (4.0, 4.0, 2.0, 7.0, 0.14))


@dataclass(frozen=True)
class Center:
    """Scanner parameters of one centre."""

    name: str
    spacing_mm: tuple[float, float, float]
    psf_fwhm_mm: float
    noise_cv: float


@dataclass
class Scan:
    """A subject's images on the centre's grid, arrays (z, y, x)."""

    grid: Grid
    pet_suv: np.ndarray   # float32
    ct_hu: np.ndarray     # int16
    mask: np.ndarray      # uint16 lesion labels 1..n
    organs: np.ndarray    # uint8 organ labels


def default_centers(n_centers: int) -> list[Center]:
    """Deterministic scanner parameters for centres ``C1`` .. ``Cn``."""
    if n_centers < 1:
        raise ValueError(f"n_centers must be at least 1, got {n_centers}")
    centers = []
    for k in range(n_centers):
        sx, sy, sz, fwhm, cv = _CENTRE_TABLE[k % len(_CENTRE_TABLE)]
        rounds = k // len(_CENTRE_TABLE)
        centers.append(Center(f"C{k + 1}", (sx, sy, sz), fwhm + 0.5 * rounds,
                              round(cv + 0.01 * rounds, 3)))
    return centers


def center_grid(center: Center, fine: Grid) -> Grid:
    """The centre's grid: whole voxels of ``center.spacing_mm`` centred in the fine grid's field of view."""
    shape, origin = [], []
    for axis in range(3):
        edges = fine.edges_mm(axis)
        extent, s = edges[-1] - edges[0], center.spacing_mm[axis]
        n = int(np.floor(extent / s + 1e-6))
        origin.append(float(edges[0] + (extent - n * s) / 2.0 + s / 2.0))
        shape.append(n)
    return Grid((shape[2], shape[1], shape[0]), center.spacing_mm, tuple(origin))


def _overlap_matrix(fine_edges: np.ndarray, coarse_edges: np.ndarray) -> sparse.csr_matrix:
    """Fraction of each coarse voxel (rows) covered by each fine voxel (columns)."""
    lo = np.maximum(coarse_edges[:-1, None], fine_edges[None, :-1])
    hi = np.minimum(coarse_edges[1:, None], fine_edges[None, 1:])
    weights = np.clip(hi - lo, 0.0, None) / np.diff(coarse_edges)[:, None]
    weights[weights < 1e-9] = 0.0
    return sparse.csr_matrix(weights.astype(np.float32))


class Resampler:
    """Area-averaging from a fine grid onto a coarser grid covering the same field of view."""

    def __init__(self, fine: Grid, coarse: Grid) -> None:
        self.fine = fine
        self.coarse = coarse
        # matrices for array axes (z, y, x)
        self.weights = [_overlap_matrix(fine.edges_mm(a), coarse.edges_mm(a)) for a in (2, 1, 0)]

    @staticmethod
    def _apply(matrix: sparse.csr_matrix, volume: np.ndarray, axis: int) -> np.ndarray:
        moved = np.moveaxis(volume, axis, 0)
        flat = np.ascontiguousarray(moved).reshape(moved.shape[0], -1)
        out = (matrix @ flat).reshape((matrix.shape[0],) + moved.shape[1:])
        return np.ascontiguousarray(np.moveaxis(out, 0, axis))

    def average(self, volume: np.ndarray, box: Box | None = None) -> tuple[Box, np.ndarray]:
        """Area-average ``volume`` (the whole fine grid, or the fine sub-box ``box``).

        Returns the coarse box the result covers and the averaged values.
        """
        out = np.asarray(volume, np.float32)
        coarse_box = []
        for axis, matrix in enumerate(self.weights):
            if box is None:
                rows = slice(0, matrix.shape[0])
                sub = matrix
            else:
                cols = matrix[:, box[axis]]
                nz = np.flatnonzero(np.diff(cols.indptr))
                rows = slice(int(nz[0]), int(nz[-1]) + 1) if nz.size else slice(0, 0)
                sub = cols[rows]
            out = self._apply(sub, out, axis)
            coarse_box.append(rows)
        return (coarse_box[0], coarse_box[1], coarse_box[2]), out


def _labels_by_majority(resampler: Resampler, fine_labels: np.ndarray,
                        boxes: list[tuple[int, Box]], dtype: type) -> np.ndarray:
    """Resample label regions: a coarse voxel takes the label covering at least half of it.

    A region that wins no voxel keeps its best-covered voxel, so no label disappears.
    """
    out = np.zeros(resampler.coarse.shape_zyx, dtype)
    best = np.zeros(resampler.coarse.shape_zyx, np.float32)
    for label, box in boxes:
        cbox, frac = resampler.average(fine_labels[box] == label, box)
        if frac.size == 0:  # region outside the centre's field of view
            continue
        win = (frac >= 0.5) & (frac > best[cbox])
        if not win.any():
            win = frac == frac.max()
            win &= np.cumsum(win.ravel()).reshape(win.shape) == 1
        out[cbox][win] = label
        best[cbox][win] = frac[win]
    return out


def _correlated_noise(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Unit-variance Gaussian noise smoothed with a Gaussian of :data:`NOISE_SIGMA_VOXELS`."""
    radius = int(np.ceil(4.0 * NOISE_SIGMA_VOXELS))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / NOISE_SIGMA_VOXELS) ** 2)
    kernel /= kernel.sum()
    noise = rng.standard_normal(shape, dtype=np.float32)
    for axis in range(3):
        noise = ndimage.correlate1d(noise, kernel, axis=axis, mode="reflect")
    return noise / np.float32(np.sqrt(np.sum(kernel ** 2)) ** 3)


def add_pet_noise(activity: np.ndarray, noise_cv: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson-like, spatially correlated PET noise added to an activity image.

    The noise of a voxel with activity ``a`` has standard deviation
    ``noise_cv * sqrt(a * REFERENCE_SUV)``: its coefficient of variation is ``noise_cv`` at
    :data:`REFERENCE_SUV` and scales like ``1 / sqrt(a)``, as for counts. The noise field is
    unit-variance Gaussian noise smoothed with a Gaussian of :data:`NOISE_SIGMA_VOXELS` voxels
    and rescaled to unit variance (exactly so away from the image edge, which is reflected).

    Parameters
    ----------
    activity : ndarray
        Activity (SUV) volume, (z, y, x); negative values are taken as 0.
    noise_cv : float
        Coefficient of variation of the noise at :data:`REFERENCE_SUV`.
    rng : numpy.random.Generator
        Source of the noise.

    Returns
    -------
    ndarray of float32
        The noisy volume, clipped at 0.
    """
    activity = np.clip(np.asarray(activity, np.float32), 0.0, None)
    sd = np.float32(noise_cv) * np.sqrt(activity * np.float32(REFERENCE_SUV))
    return np.clip(activity + sd * _correlated_noise(activity.shape, rng), 0.0, None)


def acquire(phantom: Phantom, center: Center, rng: np.random.Generator) -> Scan:
    """Image a phantom at a centre.

    Parameters
    ----------
    phantom : Phantom
        Fine-grid ground truth.
    center : Center
        Scanner parameters.
    rng : numpy.random.Generator
        Source of the PET and CT noise.

    Returns
    -------
    Scan
        PET (SUV, float32), CT (HU, int16), lesion mask and organ labels on the centre's grid.
    """
    coarse = center_grid(center, phantom.grid)
    resampler = Resampler(phantom.grid, coarse)
    sigma_vox = [center.psf_fwhm_mm / FWHM_PER_SIGMA / phantom.grid.spacing_mm[a] for a in (2, 1, 0)]
    blurred = ndimage.gaussian_filter(phantom.suv, sigma_vox, mode="nearest", truncate=3.0)
    _, activity = resampler.average(blurred)
    activity = np.clip(activity, 0.0, None)
    pet = add_pet_noise(activity, center.noise_cv, rng)
    _, ct = resampler.average(phantom.hu)
    ct = ct + rng.normal(0.0, CT_NOISE_HU, coarse.shape_zyx).astype(np.float32)
    ct_hu = np.clip(np.rint(ct), -1024, 3071).astype(np.int16)
    lesion_boxes = [(k + 1, les.box) for k, les in enumerate(phantom.lesions)]
    mask = _labels_by_majority(resampler, phantom.lesion_labels, lesion_boxes, np.uint16)
    organ_fine = np.zeros_like(phantom.tissue)
    organ_boxes = []
    for cls, label in ORGAN_LABELS.items():
        box = phantom.organ_boxes[label]
        organ_fine[box][phantom.tissue[box] == cls] = label
        organ_boxes.append((label, box))
    organs = _labels_by_majority(resampler, organ_fine, organ_boxes, np.uint8)
    organs[mask > 0] = 0  # a voxel shared half and half by a liver lesion and the liver
    return Scan(coarse, pet.astype(np.float32), ct_hu, mask, organs)
