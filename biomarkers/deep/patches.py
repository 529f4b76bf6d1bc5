"""Training patches for the 3D U-Net: lesion-balanced sampling and meaning-preserving augmentation.

Lesions fill a tiny part of a whole-body volume, so uniformly drawn patches would rarely show
one. With probability ``lesion_fraction`` a patch is centred on a lesion voxel drawn uniformly
from the reference labels of a case that has lesions; otherwise on a voxel drawn uniformly
from the whole volume of any case. Optionally (``hot_fraction`` > 0) that share of the
background patches is instead centred on a "hot" non-lesion voxel (SUV >= ``hot_suv``, e.g.
brain, heart, kidneys, bladder), so that the network sees physiological uptake labelled as
background more often than uniform sampling would show it (hard negatives). Patches reaching beyond the image are padded with the
background of each channel (SUV 0 for PET, -1000 HU for CT, after the fixed normalisation of
:mod:`biomarkers.deep.normalise`) and label 0.

Augmentation (:class:`~biomarkers.deep.augmentation.Augmentation`) is limited to changes that keep the clinical meaning of the voxel values:

* flips along each of the three axes (probability 1/2 each);
* a rotation about the axial (z) axis by up to ``max_rotation_deg`` (in the y-x plane, whose
  voxel spacing is the same along y and x for PET) and an isotropic scaling by up to
  ``max_scale``, applied to image and label with the same matrix: image by trilinear
  interpolation (a weighted mean of neighbouring voxels, never outside their range), label
  by nearest neighbour;
* additive Gaussian noise of SD ``noise_sd`` on the normalised channels (small: 0.02 is about
  0.25 SUV at SUV 3, 0.55 SUV at SUV 8, and 20 HU);
* optionally (``blur_probability`` > 0) a coarser scanner: the PET of the patch is blurred, in
  SUV (activity is what a point-spread function spreads), by a Gaussian whose FWHM per axis is
  drawn uniformly up to ``max_blur_fwhm_voxels``; the label is not blurred, so the network learns
  the lesion's extent from images as blurred as a lower-resolution centre's. The patch is blurred
  with its surroundings and then cropped, so its borders are not darkened. A blur spreads uptake
  without changing its total, so it keeps the meaning of SUV (a lesion imaged by a worse scanner).

There is deliberately no intensity scaling, gamma, contrast or histogram change: an SUV of 5
must stay an SUV of 5, and a rescaled PET channel would teach the network that lesion
uptake is arbitrary. All randomness comes from the numpy ``Generator`` the caller passes.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

from biomarkers.deep.augmentation import Augmentation
from biomarkers.deep.normalise import ct_channel, pet_channel, pet_suv

#: Background of the raw images: SUV outside the body and HU of air.
BACKGROUND_SUV, BACKGROUND_HU = 0.0, -1000.0
#: FWHM of a Gaussian in units of its standard deviation, 2 sqrt(2 ln 2).
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
#: The blur augmentation's Gaussian is cut at this many standard deviations.
BLUR_TRUNCATE = 3.0


def background_values(n_channels: int) -> np.ndarray:
    """Normalised background value of each input channel (PET, then CT)."""
    values = [float(pet_channel(np.float32(BACKGROUND_SUV))), float(ct_channel(np.float32(BACKGROUND_HU)))]
    if not 1 <= n_channels <= len(values):
        raise ValueError(f"expected 1 (PET) or 2 (PET, CT) channels, got {n_channels}")
    return np.asarray(values[:n_channels], dtype=np.float32)


def crop(volume: np.ndarray, centre: Sequence[int], patch_size: Sequence[int], fill: float) -> np.ndarray:
    """Box of ``patch_size`` starting at ``centre - patch_size // 2``, padded with ``fill``."""
    out = np.full(tuple(patch_size), fill, dtype=volume.dtype)
    src, dst = [], []
    for c, p, n in zip(centre, patch_size, volume.shape):
        start = int(c) - p // 2
        lo, hi = max(start, 0), min(start + p, n)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - start, hi - start))
    out[tuple(dst)] = volume[tuple(src)]
    return out


def _warp(volume: np.ndarray, matrix: np.ndarray, centre: Sequence[int], patch_size: Sequence[int],
          order: int, fill: float) -> np.ndarray:
    """Patch whose voxel ``o`` samples ``volume`` at ``centre + matrix @ (o - patch_size // 2)``."""
    half = np.asarray(patch_size) // 2
    offset = np.asarray(centre, dtype=np.float64) - matrix @ half
    return ndimage.affine_transform(volume, matrix, offset=offset, output_shape=tuple(patch_size),
                                    order=order, mode="constant", cval=fill, prefilter=False)


def extract_patch(channels: np.ndarray, label: np.ndarray, centre: Sequence[int], patch_size: Sequence[int],
                  augmentation: Augmentation, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One (augmented) patch around ``centre``.

    Parameters
    ----------
    channels : ndarray
        Normalised input channels (C, z, y, x), float32.
    label : ndarray
        Binary lesion label (z, y, x).
    centre : sequence of int
        Voxel the patch is centred on (it lands at index ``patch_size // 2``).
    patch_size : sequence of int
        Patch size in voxels (z, y, x).
    augmentation : Augmentation
        What to apply; draws from ``rng`` only for the enabled parts.
    rng : numpy.random.Generator
        Source of all randomness.

    Returns
    -------
    image : ndarray of float32, shape (C, *patch_size)
    label : ndarray of uint8, shape patch_size
    """
    fills = background_values(channels.shape[0])
    label = np.asarray(label)
    label = label.view(np.uint8) if label.dtype == bool else label.astype(np.uint8, copy=False)
    angle = np.deg2rad(rng.uniform(-1, 1) * augmentation.max_rotation_deg) if augmentation.max_rotation_deg else 0.0
    scale = 1.0 + rng.uniform(-1, 1) * augmentation.max_scale if augmentation.max_scale else 1.0
    sigma = None
    if augmentation.blurs and rng.random() < augmentation.blur_probability:
        sigma = rng.uniform(0.0, 1.0, 3) * np.asarray(augmentation.max_blur_fwhm_voxels) / FWHM_PER_SIGMA
    # with a blur, a patch of ``margin`` more voxels on every side is blurred, then cropped
    margin = np.zeros(3, dtype=int) if sigma is None else np.ceil(BLUR_TRUNCATE * sigma).astype(int)
    size = tuple(int(p) + 2 * int(m) for p, m in zip(patch_size, margin))
    if angle == 0.0 and scale == 1.0:
        image = np.stack([crop(c, centre, size, f) for c, f in zip(channels, fills)])
        lab = crop(label, centre, size, 0)
    else:
        cos, sin = np.cos(angle), np.sin(angle)
        matrix = np.array([[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]]) / scale  # output -> input
        image = np.stack([_warp(c, matrix, centre, size, 1, f) for c, f in zip(channels, fills)])
        lab = _warp(label, matrix, centre, size, 0, 0)
    if sigma is not None:
        suv = ndimage.gaussian_filter(pet_suv(image[0]), sigma, mode="nearest", truncate=BLUR_TRUNCATE)
        image[0] = pet_channel(suv)
        inner = tuple(slice(int(m), int(m) + int(p)) for m, p in zip(margin, patch_size))
        image, lab = image[(slice(None), *inner)], lab[inner]
    if augmentation.flip:
        axes = tuple(int(a) for a in np.flatnonzero(rng.random(3) < 0.5))
        if axes:
            image = np.flip(image, axis=tuple(a + 1 for a in axes))
            lab = np.flip(lab, axis=axes)
    image = np.ascontiguousarray(image, dtype=np.float32)
    if augmentation.noise_sd:
        image += rng.normal(0.0, augmentation.noise_sd, image.shape).astype(np.float32)
    return image, np.ascontiguousarray(lab)


class PatchSampler:
    """Draws lesion-balanced, augmented training patches from a list of cases.

    Parameters
    ----------
    cases : sequence of (channels, label)
        Normalised channels (C, z, y, x) and a lesion label (z, y, x, non-zero = lesion) per case;
        all cases have the same number of channels.
    patch_size : sequence of int
        Patch size in voxels (z, y, x).
    lesion_fraction : float
        Probability that a patch is centred on a lesion voxel (when any case has lesions).
    augmentation : Augmentation
        Augmentation applied to every patch.
    hot_fraction : float
        Share of the other (background) patches centred on a non-lesion voxel with
        SUV >= ``hot_suv`` (when any case has one); 0 draws all of them uniformly.
    hot_suv : float
        SUV from which a non-lesion voxel counts as hot.
    lesion_class : int, optional
        Labels are class images (e.g. organs and lesion) kept as they are, and this value
        marks lesion voxels; None (default) makes every non-zero label voxel lesion (0/1).
    organ_fraction : float
        With class images: share of the background patches centred on an organ voxel, the
        organ class drawn uniformly among those present (class-balanced sampling: small organs
        such as the kidneys are seen as often as the brain); the rest follow ``hot_fraction``.
    """

    def __init__(self, cases: Sequence[tuple[np.ndarray, np.ndarray]], patch_size: Sequence[int] = (48, 48, 48),
                 lesion_fraction: float = 0.5, augmentation: Augmentation = Augmentation(),
                 hot_fraction: float = 0.0, hot_suv: float = 2.5, lesion_class: int | None = None,
                 organ_fraction: float = 0.0) -> None:
        if not cases:
            raise ValueError("no training cases")
        if not 0.0 <= lesion_fraction <= 1.0:
            raise ValueError(f"lesion_fraction must be in [0, 1], got {lesion_fraction}")
        if not 0.0 <= hot_fraction <= 1.0:
            raise ValueError(f"hot_fraction must be in [0, 1], got {hot_fraction}")
        if not 0.0 <= organ_fraction <= 1.0:
            raise ValueError(f"organ_fraction must be in [0, 1], got {organ_fraction}")
        if organ_fraction > 0 and lesion_class is None:
            raise ValueError("organ_fraction needs class labels (lesion_class)")
        if len(patch_size) != 3 or min(patch_size) < 1:
            raise ValueError(f"patch_size must be three positive voxel counts, got {patch_size}")
        n_channels = {c.shape[0] for c, _ in cases}
        if len(n_channels) != 1:
            raise ValueError(f"cases have different numbers of channels: {sorted(n_channels)}")
        for channels, label in cases:
            if channels.shape[1:] != label.shape:
                raise ValueError(f"label shape {label.shape} differs from image shape {channels.shape[1:]}")
        if lesion_class is None:
            self.cases = [(channels, (np.asarray(label) > 0).view(np.uint8)) for channels, label in cases]
            lesion_class = 1
        else:
            self.cases = [(channels, np.asarray(label).astype(np.uint8, copy=False)) for channels, label in cases]
        self.patch_size = tuple(int(p) for p in patch_size)
        self.lesion_fraction = float(lesion_fraction)
        self.augmentation = augmentation
        self._lesion_voxels = [np.flatnonzero(label == lesion_class) for _, label in self.cases]
        self._with_lesions = [i for i, v in enumerate(self._lesion_voxels) if v.size]
        self.hot_fraction = float(hot_fraction)
        self._hot_voxels: list[np.ndarray] = []
        if self.hot_fraction > 0:
            level = pet_channel(np.float32(hot_suv))
            self._hot_voxels = [np.flatnonzero((c[0] >= level) & (label != lesion_class)) for c, label in self.cases]
        self._with_hot = [i for i, v in enumerate(self._hot_voxels) if v.size]
        self.organ_fraction = float(organ_fraction)
        # (case, voxels) of every organ class present, by class
        self._organ_voxels: dict[int, list[tuple[int, np.ndarray]]] = {}
        if self.organ_fraction > 0:
            for i, (_, label) in enumerate(self.cases):
                for cls in range(1, lesion_class):
                    voxels = np.flatnonzero(label == cls)
                    if voxels.size:
                        self._organ_voxels.setdefault(cls, []).append((i, voxels))

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, bool]:
        """One patch: image (C, *patch_size) float32, label (*patch_size) uint8, lesion-centred flag."""
        on_lesion = bool(self._with_lesions) and rng.random() < self.lesion_fraction
        on_organ = not on_lesion and bool(self._organ_voxels) and rng.random() < self.organ_fraction
        on_hot = not (on_lesion or on_organ) and bool(self._with_hot) and rng.random() < self.hot_fraction
        if on_organ:
            classes = sorted(self._organ_voxels)
            holders = self._organ_voxels[classes[int(rng.integers(len(classes)))]]
            case, voxels = holders[int(rng.integers(len(holders)))]
            centre = np.unravel_index(int(voxels[rng.integers(voxels.size)]), self.cases[case][1].shape)
        elif on_lesion or on_hot:
            cases, voxel_lists = ((self._with_lesions, self._lesion_voxels) if on_lesion
                                  else (self._with_hot, self._hot_voxels))
            case = cases[int(rng.integers(len(cases)))]
            voxels = voxel_lists[case]
            centre = np.unravel_index(int(voxels[rng.integers(voxels.size)]), self.cases[case][1].shape)
        else:
            case = int(rng.integers(len(self.cases)))
            centre = tuple(int(rng.integers(n)) for n in self.cases[case][1].shape)
        channels, label = self.cases[case]
        image, lab = extract_patch(channels, label, centre, self.patch_size, self.augmentation, rng)
        return image, lab, on_lesion

    def batch(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` patches stacked: images (n, C, ...), labels (n, 1, ...) as float32, lesion flags (n,)."""
        drawn = [self.sample(rng) for _ in range(n)]
        images = np.stack([d[0] for d in drawn])
        labels = np.stack([d[1] for d in drawn])[:, None].astype(np.float32)
        return images, labels, np.array([d[2] for d in drawn])
