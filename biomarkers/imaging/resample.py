"""Resampling one image onto another's voxel grid (CT onto PET, PET onto CT, masks).

Only the grid of the reference is used (size, spacing, origin, direction); the two
images must lie in the same patient coordinate system (DICOM LPS, as SimpleITK reads
both DICOM and NIfTI). No registration is done: the identity transform maps a point
of the reference onto the same point of the moved image.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import SimpleITK as sitk

from biomarkers.io.images import GEOMETRY_TOLERANCE, grid_differences

Interpolation = Literal["linear", "nearest", "bspline"]

#: SimpleITK interpolator of each ``interpolation`` name. ``bspline`` is cubic.
INTERPOLATORS: dict[str, int] = {
    "linear": sitk.sitkLinear,
    "nearest": sitk.sitkNearestNeighbor,
    "bspline": sitk.sitkBSpline,
}

#: Value given to CT voxels outside the CT field of view (air, in HU).
CT_OUTSIDE_HU = -1024.0

#: Value given to PET voxels outside the PET field of view (no activity).
PET_OUTSIDE_SUV = 0.0


def same_grid(a: sitk.Image, b: sitk.Image, tolerance_mm: float = GEOMETRY_TOLERANCE) -> bool:
    """Whether two images share size, spacing, origin and direction within a tolerance.

    Parameters
    ----------
    a, b : SimpleITK.Image
        The two images.
    tolerance_mm : float
        Largest difference tolerated in spacing and origin (mm) and in the
        direction cosines; :data:`biomarkers.io.images.GEOMETRY_TOLERANCE` by default.

    Returns
    -------
    bool
        True when a voxel index means the same point in both images.
    """
    return not grid_differences(a, b, tolerance_mm)


def resample_to(image: sitk.Image, reference: sitk.Image,
                interpolation: Interpolation = "linear",
                default_value: float = 0.0) -> sitk.Image:
    """Resample ``image`` onto the voxel grid of ``reference``.

    Parameters
    ----------
    image : SimpleITK.Image
        The image to move (a CT in HU, a PET in SUV, a label image).
    reference : SimpleITK.Image
        The image whose grid the result takes; its voxel values are not used.
    interpolation : {"linear", "nearest", "bspline"}
        ``nearest`` for label images (labels are kept, none is invented);
        ``linear`` for intensities; ``bspline`` (cubic) for smooth intensities
        (it may overshoot at edges).
    default_value : float
        Value of reference voxels whose centre lies outside ``image``: use
        :data:`CT_OUTSIDE_HU` (-1024 HU) for CT and :data:`PET_OUTSIDE_SUV` (0) for PET.

    Returns
    -------
    SimpleITK.Image
        On the grid of ``reference``. ``nearest`` keeps the pixel type of ``image``;
        the other interpolations give float32 (float64 when ``image`` is float64).

    Raises
    ------
    ValueError
        For an unknown ``interpolation`` or images of different dimension.
    """
    if interpolation not in INTERPOLATORS:
        raise ValueError(f"interpolation must be one of {sorted(INTERPOLATORS)}, "
                         f"not {interpolation!r}")
    if image.GetDimension() != reference.GetDimension():
        raise ValueError(f"cannot resample a {image.GetDimension()}D image onto a "
                         f"{reference.GetDimension()}D grid")
    if interpolation == "nearest" or image.GetPixelID() == sitk.sitkFloat64:
        pixel_type = image.GetPixelID()
    else:
        pixel_type = sitk.sitkFloat32
    if not grids_overlap(image, reference):
        raise ValueError("the image and the reference grid do not overlap in space (another patient "
                         "position or coordinate frame?); the result would be all outside value")
    if same_grid(image, reference):
        same = sitk.Cast(image, pixel_type)
        same.CopyInformation(reference)
        return same
    return sitk.Resample(image, reference, sitk.Transform(), INTERPOLATORS[interpolation],
                         float(default_value), pixel_type)


def _extent(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper physical corner (mm) of the voxel centres' bounding box."""
    size = np.array(image.GetSize()) - 1
    corners = [image.TransformContinuousIndexToPhysicalPoint([float(c) for c in corner])
               for corner in np.array(np.meshgrid(*[[0, n] for n in size])).reshape(len(size), -1).T]
    corners = np.array(corners)
    half = np.abs(np.array(image.GetDirection()).reshape(len(size), -1) @ np.array(image.GetSpacing())) / 2
    return corners.min(axis=0) - half, corners.max(axis=0) + half


def grids_overlap(image: sitk.Image, reference: sitk.Image) -> bool:
    """Whether the two images' fields of view share any volume."""
    lo_a, hi_a = _extent(image)
    lo_b, hi_b = _extent(reference)
    return bool(np.all(np.minimum(hi_a, hi_b) > np.maximum(lo_a, lo_b)))


def resample_ct_to_pet(ct: sitk.Image, pet: sitk.Image) -> sitk.Image:
    """CT (HU) onto the PET grid, linearly, -1024 HU outside the CT field of view."""
    return resample_to(ct, pet, "linear", CT_OUTSIDE_HU)


def resample_pet_to_ct(pet: sitk.Image, ct: sitk.Image) -> sitk.Image:
    """PET (SUV) onto the CT grid, linearly, 0 outside the PET field of view."""
    return resample_to(pet, ct, "linear", PET_OUTSIDE_SUV)
