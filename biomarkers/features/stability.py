"""Feature stability: lesion features under small image perturbations (ICCs in :mod:`~biomarkers.features.icc`).

A radiomic feature is only a useful biomarker if it barely changes when the image changes in
ways that do not change the patient: a slightly different contour, fresh noise, another
scanner's resolution. Following Zwanenburg et al. (2019, Sci Rep 9:614, "Assessing robustness of
radiomic features by image perturbation"), every lesion is measured once as imaged (condition
``none``) and once per perturbation; the intra-class correlation (ICC) of each feature over the
lesions and conditions says how much of its variance is between lesions rather than between
conditions. Lesions are matched across conditions by their label, which every perturbation keeps.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage

from biomarkers.errors import InputError
from biomarkers.features.icc import BOOKKEEPING_COLUMNS
from biomarkers.features.lesions import image_lesion_features
from biomarkers.imaging.masks import label_array
from biomarkers.io.images import like, read_image_pair, spacing_zyx_mm, to_array
from biomarkers.io.provenance import file_record
from biomarkers.simulate.scanner import FWHM_PER_SIGMA, add_pet_noise

#: The ``perturbation`` value of the image as it is.
UNPERTURBED = "none"


@dataclass(frozen=True)
class Perturbation:
    """One parsed perturbation (see :func:`parse_perturbation`)."""

    kind: str  # erode | dilate | noise | resolution
    noise_cv: float | None = None
    fwhm_mm: float | None = None
    spacing_mm: tuple[float, float, float] | None = None  # x, y, z

    @property
    def spec(self) -> str:
        """Canonical text form, the ``perturbation`` column's value."""
        if self.kind == "noise":
            return f"noise:{self.noise_cv:.12g}"
        if self.kind == "resolution":
            return f"resolution:{self.fwhm_mm:.12g}:" + "x".join(f"{s:.12g}" for s in self.spacing_mm)
        return self.kind


_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_NOISE = re.compile(rf"noise:{_NUMBER}")
_RESOLUTION = re.compile(rf"resolution:{_NUMBER}:{_NUMBER}x{_NUMBER}x{_NUMBER}")


def parse_perturbation(spec: str) -> Perturbation:
    """Parse ``erode``, ``dilate``, ``noise:CV`` or ``resolution:FWHM_MM:SXxSYxSZ``.

    Raises
    ------
    ValueError
        Naming ``spec``, when it is none of these or a number is not positive.
    """
    text = str(spec).strip()
    expected = "expected erode, dilate, noise:CV or resolution:FWHM_MM:SXxSYxSZ (e.g. noise:0.12, resolution:8:5x5x4)"
    if text in ("erode", "dilate"):
        return Perturbation(text)
    if match := _NOISE.fullmatch(text):
        numbers, result = [float(match[1])], Perturbation("noise", noise_cv=float(match[1]))
    elif match := _RESOLUTION.fullmatch(text):
        numbers = [float(g) for g in match.groups()]
        result = Perturbation("resolution", fwhm_mm=numbers[0], spacing_mm=(numbers[1], numbers[2], numbers[3]))
    else:
        hint = "; 'none' (the image as it is) is always included" if text == UNPERTURBED else ""
        raise ValueError(f"bad perturbation {spec!r}: {expected}{hint}")
    if min(numbers) <= 0:
        raise ValueError(f"bad perturbation {spec!r}: every number must be positive")
    return result


def _neighbours(labels: np.ndarray) -> Iterator[np.ndarray]:
    """The six face neighbours' labels of every voxel (0 beyond the image edge)."""
    padded = np.pad(labels, 1)
    for axis in range(3):
        for step in (-1, 1):
            index = [slice(1, -1)] * 3
            index[axis] = slice(1 + step, padded.shape[axis] - 1 + step)
            yield padded[tuple(index)]


def erode_labels(labels: np.ndarray) -> np.ndarray:
    """Erode every label by one voxel (6-connected cross); beyond the image edge is background.

    A voxel keeps its label only if its six face neighbours all carry the same label, so labels
    touching each other both lose their common border; a label may vanish.
    """
    keep = labels != 0
    for neighbour in _neighbours(labels):
        keep &= neighbour == labels
    return np.where(keep, labels, 0).astype(labels.dtype)


def dilate_labels(labels: np.ndarray) -> np.ndarray:
    """Dilate every label by one voxel (6-connected cross) into background voxels only.

    No lesion voxel is overwritten; a background voxel reached by several labels takes the
    lowest of them.
    """
    none = np.iinfo(np.int64).max
    lowest = np.full(labels.shape, none, np.int64)
    for neighbour in _neighbours(labels.astype(np.int64)):
        lowest = np.where(neighbour > 0, np.minimum(lowest, neighbour), lowest)
    grow = (labels == 0) & (lowest != none)
    return np.where(grow, lowest, labels).astype(labels.dtype)


def extra_blur_sigma_mm(target_fwhm_mm: float, source_fwhm_mm: float) -> float:
    """Gaussian sigma (mm) that takes a PSF of ``source_fwhm_mm`` to ``target_fwhm_mm``.

    ``sqrt(target**2 - source**2) / 2.3548``; 0 when the target is as sharp or sharper (blur
    cannot be undone, so the image is then only resampled).
    """
    return float(np.sqrt(max(target_fwhm_mm ** 2 - source_fwhm_mm ** 2, 0.0)) / FWHM_PER_SIGMA)


def resample_field_of_view(image: sitk.Image, labels: sitk.Image,
                           spacing_mm: tuple[float, float, float]) -> tuple[sitk.Image, sitk.Image]:
    """Resample onto voxels of ``spacing_mm`` (x, y, z) covering the same field of view.

    Each axis gets ``round(extent / spacing)`` voxels centred on the old field of view (so the
    field of view agrees to within one new voxel); the image is interpolated linearly (0 outside),
    the labels by nearest neighbour.
    """
    old_spacing, size = np.array(image.GetSpacing()), np.array(image.GetSize())
    new_spacing = np.asarray(spacing_mm, dtype=np.float64)
    extent = old_spacing * size
    new_size = np.maximum(1, np.rint(extent / new_spacing)).astype(int)
    offset = (extent - new_size * new_spacing) / 2.0 + new_spacing / 2.0 - old_spacing / 2.0
    direction = np.array(image.GetDirection()).reshape(3, 3)
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([int(s) for s in new_size])
    resampler.SetOutputSpacing([float(s) for s in new_spacing])
    resampler.SetOutputOrigin([float(o) for o in np.array(image.GetOrigin()) + direction @ offset])
    resampler.SetOutputDirection(image.GetDirection())
    resampler.SetDefaultPixelValue(0.0)
    resampler.SetInterpolator(sitk.sitkLinear)
    resampler.SetOutputPixelType(sitk.sitkFloat32)
    new_image = resampler.Execute(image)
    resampler.SetInterpolator(sitk.sitkNearestNeighbor)
    resampler.SetOutputPixelType(labels.GetPixelID())
    return new_image, resampler.Execute(labels)


def perturbation_rng(seed: int, subject_id: str, spec: str) -> np.random.Generator:
    """Noise source of one perturbation of one subject, from SHA-256 digests of the ID and spec.

    The same seed, subject and perturbation always give the same stream, whatever else is run.
    """
    words = [int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") for text in (subject_id, spec)]
    return np.random.default_rng([int(seed), *words])


def perturb(image: sitk.Image, labels: sitk.Image, perturbation: str | Perturbation, seed: int = 0,
            subject_id: str = "", source_fwhm_mm: float | None = None) -> tuple[sitk.Image, sitk.Image]:
    """Apply one perturbation to an SUV image and its lesion labels (same grid).

    - ``erode`` / ``dilate``: :func:`erode_labels` / :func:`dilate_labels`; the image is unchanged.
    - ``noise:CV``: fresh noise of the simulator's model (:func:`biomarkers.simulate.scanner.add_pet_noise`:
      CV at ``REFERENCE_SUV``, scaling like 1/sqrt(SUV), correlated over ``NOISE_SIGMA_VOXELS``
      voxels) added to the image (negative voxels become 0), drawn from :func:`perturbation_rng`.
    - ``resolution:FWHM:SXxSYxSZ``: Gaussian blur of :func:`extra_blur_sigma_mm` (needs
      ``source_fwhm_mm``), then :func:`resample_field_of_view`.

    Returns
    -------
    image, labels : SimpleITK.Image
        New images; labels keep their values and pixel type.
    """
    p = parse_perturbation(perturbation) if isinstance(perturbation, str) else perturbation
    array = label_array(labels)
    if p.kind in ("erode", "dilate"):
        moved = erode_labels(array) if p.kind == "erode" else dilate_labels(array)
        return sitk.Image(image), like(moved.astype(to_array(labels).dtype), labels)
    suv = to_array(image).astype(np.float32)
    if p.kind == "noise":
        noisy = add_pet_noise(suv, p.noise_cv, perturbation_rng(seed, subject_id, p.spec))
        return like(noisy, image), sitk.Image(labels)
    if source_fwhm_mm is None or not source_fwhm_mm > 0:
        raise ValueError(f"perturbation {p.spec!r} needs the image's PSF FWHM in mm (source_fwhm_mm, --source-fwhm)")
    sigma_mm = extra_blur_sigma_mm(p.fwhm_mm, source_fwhm_mm)
    if sigma_mm > 0:
        suv = ndimage.gaussian_filter(suv, [sigma_mm / s for s in spacing_zyx_mm(image)], mode="nearest", truncate=3.0)
    return resample_field_of_view(like(suv, image), labels, p.spacing_mm)


def perturbed_lesion_features(image_path: str | Path, mask_path: str | Path, subject_id: str,
                              params_path: str | Path | None, perturbations: Sequence[str], seed: int,
                              source_fwhm_mm: float | None = None) -> tuple[pd.DataFrame, dict]:
    """Lesion features of the image as it is and under each perturbation, as one long table.

    Parameters
    ----------
    image_path, mask_path : str or Path
        SUV image and lesion label image on the same grid.
    subject_id : str
        Written to the table, used in error messages and in the noise seed.
    params_path : str or Path or None
        pyradiomics parameter file (or shipped name); PET metrics only without it.
    perturbations : sequence of str
        Specs for :func:`parse_perturbation`, each at most once.
    seed : int
        Non-negative; with the subject ID and spec it seeds the noise (:func:`perturbation_rng`).
    source_fwhm_mm : float, optional
        PSF FWHM of the image, needed by ``resolution`` perturbations.

    Returns
    -------
    table : DataFrame
        ``subject_id``, ``lesion_id``, ``perturbation`` (``none`` or the canonical spec), then the
        columns of :func:`biomarkers.features.lesions.lesion_features`. Under a perturbation a
        lesion that vanished, or that pyradiomics refuses (e.g. one voxel left), has no row.
    metadata : dict
        Inputs, perturbations, seed, pyradiomics settings, and per perturbation the lesions
        pyradiomics refused (``unusable_lesions``).
    """
    parsed = [parse_perturbation(spec) for spec in perturbations]
    specs = [p.spec for p in parsed]
    if not parsed:
        raise ValueError("give at least one perturbation")
    if len(set(specs)) < len(specs):
        raise ValueError(f"perturbations repeated: {', '.join(specs)}")
    if int(seed) < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    if source_fwhm_mm is None and any(p.kind == "resolution" for p in parsed):
        raise ValueError("resolution perturbations need the image's PSF FWHM in mm (--source-fwhm)")
    if source_fwhm_mm is not None and not source_fwhm_mm > 0:
        raise ValueError(f"source PSF FWHM must be positive, got {source_fwhm_mm} mm")
    image, mask = read_image_pair(image_path, mask_path, subject_id)
    table, settings = image_lesion_features(image, mask, subject_id, params_path, mask_path, unusable="drop")
    refused = settings.pop("unusable_lesions", [])
    unusable = {UNPERTURBED: refused} if refused else {}
    frames = [table.assign(perturbation=UNPERTURBED)]
    for p in parsed:
        moved_image, moved_mask = perturb(image, mask, p, seed, subject_id, source_fwhm_mm)
        moved, info = image_lesion_features(moved_image, moved_mask, subject_id, params_path, mask_path,
                                            unusable="drop")
        unusable[p.spec] = info.get("unusable_lesions", [])
        frames.append(moved.assign(perturbation=p.spec))
    frames = [f for f in frames if len(f)] or frames[:1]
    long = pd.concat(frames, ignore_index=True)
    long = long[["subject_id", "lesion_id", "perturbation", *[c for c in long.columns if c not in BOOKKEEPING_COLUMNS]]]
    metadata = {"subject_id": subject_id, "image": file_record(image_path), "mask": file_record(mask_path),
                "perturbations": specs, "seed": int(seed), "source_fwhm_mm": source_fwhm_mm,
                "unusable_lesions": unusable, **settings}
    return long, metadata


def read_stability_tables(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Concatenate the parquet tables of :func:`perturbed_lesion_features` (empty ones are skipped)."""
    frames = []
    for path in paths:
        if not Path(path).is_file():
            raise InputError("stability table does not exist", path=path)
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several error types for a bad file
            first = (str(exc).strip().splitlines() or ["unreadable"])[0]
            raise InputError(f"cannot read parquet table ({first})", path=path) from None
        if "perturbation" not in frame.columns:
            raise InputError("not a stability table (no perturbation column); make it with `biomarkers stability`",
                             path=path)
        if len(frame):
            frames.append(frame)
    if not frames:
        raise InputError("the stability tables hold no lesions")
    return pd.concat(frames, ignore_index=True)
