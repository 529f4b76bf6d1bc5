"""Lesion-centred PET/CT patches of fixed physical size for the patch encoders.

Each patch is a cube of ``size_mm`` (default 64 mm) centred on the lesion's centroid and
sampled on a fixed voxel grid of ``shape`` (default 32^3, i.e. 2 mm patch voxels) by
trilinear interpolation, so that scans with 2 mm and with 4 x 4 x 5 mm voxels give patches
that show the same anatomy at the same scale. Patch voxel ``j`` of an axis lies at
``(j + 0.5) * size_mm / n - size_mm / 2`` mm from the centroid: the grid is symmetric about
the centroid, which therefore falls between voxels ``n/2 - 1`` and ``n/2`` of an even axis.

Channels, in this order (see :data:`CHANNELS`):

* ``pet``: SUV resampled, then :func:`biomarkers.deep.normalise.pet_channel`;
* ``ct``: HU resampled, then :func:`biomarkers.deep.normalise.ct_channel` (when CT is given);
* ``mask``: the binary mask of *this* lesion resampled trilinearly (partial-volume fractions
  0..1). The mask tells the encoder which lesion is meant when lesions touch or several lie
  in one patch; it is an input only and is not reconstructed by the autoencoder.

Outside the image the patch holds SUV 0 and HU -1000 (air) before normalisation, and mask 0;
values are interpolated across the image border as if the image continued with them.
Patches follow the image's voxel axes (z, y, x); direction cosines are not applied, which is
exact for the axis-aligned PET/CT grids this pipeline reads.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage

from biomarkers.deep.normalise import ct_channel, pet_channel
from biomarkers.errors import InputError
from biomarkers.imaging.masks import label_array
from biomarkers.io.images import check_same_geometry, read_image, read_image_pair, spacing_zyx_mm, to_array

#: Channel names, in the order they are stacked.
CHANNELS = ("pet", "ct", "mask")
#: Image channels (reconstructed by the autoencoder); ``mask`` is an input only.
IMAGE_CHANNELS = ("pet", "ct")
#: Values outside the image, before normalisation.
FILL_SUV = 0.0
FILL_HU = -1000.0


@dataclass(frozen=True)
class PatchSpec:
    """What a patch encoder is fed: physical size, voxel shape and channels.

    Parameters
    ----------
    size_mm : tuple of float
        Edge lengths of the patch (z, y, x) in mm.
    shape : tuple of int
        Voxels of the patch (z, y, x).
    channels : tuple of str
        Subset of :data:`CHANNELS`, in that order; ``pet`` is always first.
    """

    size_mm: tuple[float, float, float] = (64.0, 64.0, 64.0)
    shape: tuple[int, int, int] = (32, 32, 32)
    channels: tuple[str, ...] = CHANNELS

    def __post_init__(self) -> None:
        object.__setattr__(self, "size_mm", tuple(float(s) for s in self.size_mm))
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "channels", tuple(str(c) for c in self.channels))
        if len(self.size_mm) != 3 or min(self.size_mm) <= 0:
            raise ValueError(f"size_mm must be 3 positive lengths, got {self.size_mm}")
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ValueError(f"shape must be 3 positive voxel counts, got {self.shape}")
        if not self.channels or self.channels[0] != "pet" or \
                list(self.channels) != [c for c in CHANNELS if c in self.channels]:
            raise ValueError(f"channels must be 'pet' followed by 'ct' and/or 'mask' in that order, "
                             f"got {list(self.channels)}")

    @property
    def with_ct(self) -> bool:
        """Whether the patches carry a CT channel."""
        return "ct" in self.channels

    @property
    def with_mask(self) -> bool:
        """Whether the patches carry the lesion-mask channel."""
        return "mask" in self.channels

    def record(self) -> dict:
        """The specification as plain values (for checkpoints and parquet metadata)."""
        return {"size_mm": list(self.size_mm), "shape": list(self.shape), "channels": list(self.channels),
                "interpolation": "trilinear", "fill": {"suv": FILL_SUV, "hu": FILL_HU, "mask": 0.0},
                "centre": "lesion centroid (unweighted mean of voxel positions)"}

    @classmethod
    def from_record(cls, record: dict) -> "PatchSpec":
        """Inverse of :meth:`record`."""
        return cls(tuple(record["size_mm"]), tuple(record["shape"]), tuple(record["channels"]))


def lesion_centroids_mm(labels: np.ndarray, spacing_mm: Sequence[float],
                        lesion_ids: Sequence[int]) -> np.ndarray:
    """Centroids (n, 3) of the lesions in mm from voxel (0, 0, 0)'s centre, in (z, y, x) order.

    Raises
    ------
    ValueError
        If a lesion label does not occur in ``labels``.
    """
    ids = np.asarray([int(i) for i in lesion_ids], dtype=np.int64)
    if not len(ids):
        return np.zeros((0, 3))
    flat = np.asarray(labels).ravel()
    inside = np.flatnonzero(flat > 0)
    found = flat[inside].astype(np.int64)
    size = max(int(ids.max()), int(found.max()) if len(found) else 0) + 1
    counts = np.bincount(found, minlength=size)
    missing = [int(i) for i in ids if i <= 0 or counts[i] == 0]
    if missing:
        raise ValueError(f"lesion label(s) {missing} do not occur in the mask")
    index = np.unravel_index(inside, np.shape(labels))
    sums = np.stack([np.bincount(found, weights=axis, minlength=size) for axis in index], axis=1)
    return sums[ids] / counts[ids, None] * np.asarray(spacing_mm, dtype=np.float64)


def sample_patch(volume: np.ndarray, centre_mm: np.ndarray, spacing_mm: Sequence[float],
                 size_mm: Sequence[float], shape: Sequence[int], fill: float,
                 label: int | None = None) -> np.ndarray:
    """Trilinear sample of ``volume`` on a patch grid centred at ``centre_mm`` (float32).

    Only the block of ``volume`` that the patch touches is read, so a patch costs the same
    whatever the size of the image. With ``label``, ``volume`` is a label image and the
    binary mask ``volume == label`` is sampled.
    """
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    axes = []
    for centre, step_mm, size, n in zip(centre_mm, spacing, size_mm, shape):
        offsets = (np.arange(n) + 0.5) * (size / n) - size / 2.0
        axes.append((centre + offsets) / step_mm)  # continuous voxel index
    lo = [max(0, int(np.floor(a[0]))) for a in axes]
    hi = [min(dim, int(np.floor(a[-1])) + 2) for a, dim in zip(axes, volume.shape)]
    if any(h <= l for l, h in zip(lo, hi)):  # the patch lies wholly outside the image
        return np.full(tuple(shape), fill, dtype=np.float32)
    block = volume[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    block = (block == label) if label is not None else block
    block = np.asarray(block, dtype=np.float64)
    grid = np.meshgrid(*[a - l for a, l in zip(axes, lo)], indexing="ij")
    # "grid-constant" interpolates towards ``fill`` across the border; the block ends only at
    # the image border or beyond every sample's neighbours, so cropping changes nothing.
    out = ndimage.map_coordinates(block, grid, order=1, mode="grid-constant", cval=fill)
    return out.astype(np.float32)


def lesion_patches(suv: np.ndarray, hu: np.ndarray | None, labels: np.ndarray,
                   spacing_mm: Sequence[float], lesion_ids: Sequence[int],
                   size_mm: Sequence[float] = (64.0, 64.0, 64.0), shape: Sequence[int] = (32, 32, 32),
                   mask_channel: bool = True) -> np.ndarray:
    """Normalised lesion-centred patches, one per lesion.

    Parameters
    ----------
    suv : ndarray (z, y, x)
        PET in SUV.
    hu : ndarray (z, y, x) or None
        CT in Hounsfield units on the PET grid; ``None`` for PET-only patches.
    labels : ndarray of int (z, y, x)
        Lesion label image on the same grid (0 background).
    spacing_mm : sequence of 3 float
        Voxel spacing (z, y, x) in mm, as :func:`biomarkers.io.images.spacing_zyx_mm` gives it.
    lesion_ids : sequence of int
        Labels to extract, in the order of the output rows.
    size_mm : sequence of 3 float
        Physical edge lengths of the patch (z, y, x).
    shape : sequence of 3 int
        Voxels of the patch (z, y, x).
    mask_channel : bool
        Append the lesion's own mask as the last channel.

    Returns
    -------
    ndarray of float32, shape (n_lesions, channels, *shape)
        Channels ``pet``, [``ct``], [``mask``] (module docstring).

    Raises
    ------
    ValueError
        If the arrays do not share one shape or a label is absent.
    """
    suv = np.asarray(suv)
    labels = np.asarray(labels)
    if labels.shape != suv.shape or (hu is not None and np.shape(hu) != suv.shape):
        raise ValueError(f"SUV {suv.shape}, CT {None if hu is None else np.shape(hu)} and labels "
                         f"{labels.shape} must share one grid")
    channels = ("pet",) + (("ct",) if hu is not None else ()) + (("mask",) if mask_channel else ())
    spec = PatchSpec(tuple(size_mm), tuple(shape), channels)
    ids = [int(i) for i in lesion_ids]
    centres = lesion_centroids_mm(labels, spacing_mm, ids)
    out = np.empty((len(ids), len(channels), *spec.shape), dtype=np.float32)
    for row, (lesion_id, centre) in enumerate(zip(ids, centres)):
        parts = [pet_channel(sample_patch(suv, centre, spacing_mm, spec.size_mm, spec.shape, FILL_SUV))]
        if hu is not None:
            parts.append(ct_channel(sample_patch(hu, centre, spacing_mm, spec.size_mm, spec.shape, FILL_HU)))
        if mask_channel:
            parts.append(sample_patch(labels, centre, spacing_mm, spec.size_mm, spec.shape, 0.0, lesion_id))
        out[row] = np.stack(parts)
    return out


def subject_patches(pet_path: str | Path, ct_path: str | Path | None, mask_path: str | Path, subject_id: str,
                    spec: PatchSpec) -> tuple[np.ndarray, list[int]]:
    """Patches (n, C, *shape) of every lesion of one subject's files, and the lesion labels.

    Raises
    ------
    InputError
        A file is missing or unreadable, the CT is needed but not given, or the CT or the
        mask is not on the PET grid (the message names the subject and the file).
    """
    pet, mask = read_image_pair(pet_path, mask_path, subject_id)
    hu = None
    if spec.with_ct:
        if ct_path is None:
            raise InputError(f"the encoder needs a CT image (channels {list(spec.channels)}); give the CT file",
                             subject_id, pet_path)
        ct = read_image(ct_path, subject_id, "ct")
        check_same_geometry(pet, ct, pet_path, ct_path, subject_id)
        hu = to_array(ct)
    labels = label_array(mask, subject_id, mask_path)
    ids = [int(i) for i in np.unique(labels) if i > 0]
    patches = lesion_patches(to_array(pet), hu, labels, spacing_zyx_mm(pet), ids, spec.size_mm, spec.shape,
                             spec.with_mask)
    return patches, ids
