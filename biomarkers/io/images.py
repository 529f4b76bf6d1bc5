"""Image reading and writing with geometry checks (SimpleITK)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from biomarkers.errors import GeometryError, InputError
from biomarkers.io.atomic import atomic_path

#: Largest difference (in mm, or in direction cosines) tolerated between two grids.
GEOMETRY_TOLERANCE = 1e-3


def read_image(path: str | Path, subject_id: str | None = None) -> sitk.Image:
    """Read a NIfTI/NRRD image, raising :class:`InputError` naming subject and file.

    Parameters
    ----------
    path : str or Path
        Image file readable by SimpleITK.
    subject_id : str, optional
        Used in error messages.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("image file does not exist", subject_id, path)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
        raise InputError(f"cannot read image ({first})", subject_id, path) from None


def grid_differences(a: sitk.Image, b: sitk.Image,
                     tolerance_mm: float = GEOMETRY_TOLERANCE) -> list[str]:
    """Describe how the voxel grid of ``b`` differs from that of ``a``.

    Parameters
    ----------
    a, b : SimpleITK.Image
        The two images.
    tolerance_mm : float
        Largest difference tolerated in spacing and origin (mm) and in the
        direction cosines.

    Returns
    -------
    list of str
        One phrase per differing property (size, spacing, origin, direction);
        empty when the grids are the same.
    """
    problems = []
    if a.GetDimension() != b.GetDimension():
        return [f"dimension {b.GetDimension()} != {a.GetDimension()}"]
    if a.GetSize() != b.GetSize():
        problems.append(f"size {b.GetSize()} != {a.GetSize()}")
    for name, value_a, value_b in (("spacing", a.GetSpacing(), b.GetSpacing()),
                                   ("origin", a.GetOrigin(), b.GetOrigin())):
        if not np.allclose(value_a, value_b, atol=tolerance_mm, rtol=0):
            rounded_a = tuple(round(v, 4) for v in value_a)
            rounded_b = tuple(round(v, 4) for v in value_b)
            problems.append(f"{name} {rounded_b} != {rounded_a} mm")
    if not np.allclose(a.GetDirection(), b.GetDirection(), atol=tolerance_mm, rtol=0):
        problems.append("direction differs")
    return problems


def check_same_geometry(reference: sitk.Image, other: sitk.Image, reference_path: str | Path,
                        other_path: str | Path, subject_id: str | None = None,
                        tolerance: float = GEOMETRY_TOLERANCE) -> None:
    """Raise :class:`GeometryError` unless two images share size, spacing, origin and direction."""
    problems = grid_differences(reference, other, tolerance)
    if problems:
        raise GeometryError(
            f"geometry differs from {reference_path} ({'; '.join(problems)}); "
            "resample it onto the image grid first", subject_id, other_path)


def read_image_pair(image_path: str | Path, mask_path: str | Path,
                    subject_id: str | None = None) -> tuple[sitk.Image, sitk.Image]:
    """Read an image and a label mask that must share the image's voxel grid."""
    image = read_image(image_path, subject_id)
    mask = read_image(mask_path, subject_id)
    check_same_geometry(image, mask, image_path, mask_path, subject_id)
    return image, mask


def to_array(image: sitk.Image) -> np.ndarray:
    """Voxel array in (z, y, x) order, as SimpleITK gives it."""
    return sitk.GetArrayFromImage(image)


def spacing_zyx_mm(image: sitk.Image) -> tuple[float, float, float]:
    """Voxel spacing in mm, in the (z, y, x) order of :func:`to_array`."""
    sx, sy, sz = image.GetSpacing()
    return (sz, sy, sx)


def like(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """Wrap ``array`` (z, y, x) as an image with the geometry of ``reference``."""
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


def write_image(image: sitk.Image, path: str | Path, compress: bool = True) -> None:
    """Write an image atomically (temporary name, then rename)."""
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), compress)
