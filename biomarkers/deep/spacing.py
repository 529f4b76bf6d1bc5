"""Resampling network inputs and outputs to and from a fixed voxel spacing.

Centres scan at different voxel sizes (the demo: 3, 4 and 5 x 5 x 4 mm). A network trained on
voxels sees a lesion of 12 mm as 4 voxels at one centre and 2.4 at another; trained and applied
at one physical spacing (as nnU-Net does with its target spacing), it sees the same anatomy in
every centre. Resampling keeps each volume's physical extent (voxel edges aligned, SciPy's
``grid_mode``): the new shape is ``round(shape * spacing / target)``.

Images are interpolated linearly, label images as one-hot channels interpolated linearly and
assigned to the largest (so a small structure is not lost to nearest-neighbour sampling), and
probabilities are brought back to the original grid linearly.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage


def target_shape(shape: Sequence[int], spacing_mm: Sequence[float], target_mm: Sequence[float]) -> tuple[int, ...]:
    """Shape covering the same extent at ``target_mm`` (at least one voxel per axis)."""
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing_mm, target_mm))


def _zoom(volume: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    if tuple(volume.shape) == tuple(shape):
        return np.array(volume, copy=True)
    factors = [n / m for n, m in zip(shape, volume.shape)]
    out = ndimage.zoom(volume, factors, order=order, mode="nearest", grid_mode=True, prefilter=False)
    if out.shape != tuple(shape):  # zoom rounds its output size; factors from the shapes make it exact
        raise AssertionError(f"resampled to {out.shape}, expected {tuple(shape)}")
    return out


def resample_channels(channels: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Channels (C, z, y, x) resampled linearly to ``shape`` (float32)."""
    return np.stack([_zoom(np.asarray(c, np.float32), shape, 1) for c in channels]).astype(np.float32)


def resample_labels(labels: np.ndarray, shape: Sequence[int], n_classes: int) -> np.ndarray:
    """Class image (values 0..n_classes-1) resampled to ``shape``: one-hot, linear, arg-max (uint8)."""
    labels = np.asarray(labels)
    if tuple(labels.shape) == tuple(shape):
        return labels.astype(np.uint8)
    best = np.full(tuple(shape), -1.0, np.float32)
    out = np.zeros(tuple(shape), np.uint8)
    for k in range(n_classes):
        share = _zoom((labels == k).astype(np.float32), shape, 1)
        better = share > best
        out[better], best[better] = k, share[better]
    return out
