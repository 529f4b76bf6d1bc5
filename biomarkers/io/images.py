"""Image reading and writing with geometry checks (SimpleITK)."""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from biomarkers.errors import GeometryError, InputError
from biomarkers.io.atomic import atomic_path

#: Largest difference (in mm, or in direction cosines) tolerated between two grids.
GEOMETRY_TOLERANCE = 1e-3


#: Largest SUV a PET may hold: higher values are taken for activity concentrations (Bq/mL) or
#: a wrong unit, not for SUV (physiological bladder uptake of FDG stays well below it).
MAX_PLAUSIBLE_SUV = 100.0
#: Most negative SUV a PET may hold (reconstruction noise around 0 is fine, an offset is not).
MIN_PLAUSIBLE_SUV = -1.0
#: What :func:`read_image` checks for each kind of image.
IMAGE_KINDS = ("image", "pet", "ct", "mask")


def read_image(path: str | Path, subject_id: str | None = None, kind: str = "image") -> sitk.Image:
    """Read a NIfTI/NRRD image, raising :class:`InputError` naming subject and file.

    Every image must be a complete file (a truncated ``.gz`` stream is refused, not read with
    zero-filled voxels) holding a 3D volume of scalar voxels, all finite. By ``kind``:

    - ``"pet"``: SUV, with a positive voxel, none below :data:`MIN_PLAUSIBLE_SUV` and none above
      :data:`MAX_PLAUSIBLE_SUV`;
    - ``"mask"``: labels, non-negative whole numbers;
    - ``"ct"``, ``"image"``: nothing more.

    Parameters
    ----------
    path : str or Path
        Image file readable by SimpleITK.
    subject_id : str, optional
        Used in error messages.
    kind : {"image", "pet", "ct", "mask"}
        What the image holds.
    """
    if kind not in IMAGE_KINDS:
        raise ValueError(f"kind must be one of {', '.join(IMAGE_KINDS)}, got {kind!r}")
    path = Path(path)
    if not path.is_file():
        raise InputError("image file does not exist", subject_id, path)
    raw = _read_complete(path, subject_id)
    if path.name.endswith((".nii", ".nii.gz")):
        bad = _nifti_non_finite(raw)
        if bad:  # SimpleITK reads NaN and infinity in NIfTI as 0
            raise InputError(f"{bad} voxel(s) are NaN or infinite", subject_id, path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
        raise InputError(f"cannot read image ({first})", subject_id, path) from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        size = "x".join(str(n) for n in image.GetSize())
        what = f"{image.GetDimension()}D" if image.GetNumberOfComponentsPerPixel() == 1 else "a vector image"
        raise InputError(f"image is {what} ({size}); a 3D volume of scalar voxels is needed", subject_id, path)
    check_values(to_array(image), kind, subject_id, path)
    return image


def check_values(array: np.ndarray, kind: str, subject_id: str | None, path: str | Path) -> None:
    """The voxel checks of :func:`read_image` for ``kind``; :class:`InputError` naming the file."""
    if np.issubdtype(array.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            raise InputError(f"{bad} voxel(s) are NaN or infinite", subject_id, path)
    if kind == "pet":
        high, low = float(array.max()), float(array.min())
        if high <= 0:
            raise InputError("PET has no positive voxel (all zero or negative): not an SUV image", subject_id, path)
        if high > MAX_PLAUSIBLE_SUV:
            raise InputError(f"PET has SUV up to {high:.4g} (more than {MAX_PLAUSIBLE_SUV:g}): activity "
                             "concentration rather than SUV? convert it with `biomarkers suv`", subject_id, path)
        if low < MIN_PLAUSIBLE_SUV:
            raise InputError(f"PET has SUV down to {low:.4g} (less than {MIN_PLAUSIBLE_SUV:g}): not an SUV image",
                             subject_id, path)
    elif kind == "mask":
        if array.size and float(array.min()) < 0:
            raise InputError(f"mask has negative label {float(array.min()):g}; labels are 0 (background) "
                             "and positive whole numbers", subject_id, path)
        if np.issubdtype(array.dtype, np.floating) and not np.array_equal(array, np.round(array)):
            raise InputError("mask has non-integer labels (an interpolated or probability image?); labels are "
                             "whole numbers", subject_id, path)


def _read_complete(path: Path, subject_id: str | None) -> bytes | None:
    """The decompressed bytes of a ``.gz`` file (refused when its stream is truncated or corrupt:
    SimpleITK would read zero-filled voxels), the bytes of a ``.nii``; None for other files."""
    if path.name.endswith(".gz"):
        try:
            with gzip.open(path, "rb") as stream:
                return stream.read()
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"truncated or corrupt gzip file ({exc})", subject_id, path) from None
    return path.read_bytes() if path.name.endswith(".nii") else None


#: NIfTI-1 data types with floating-point voxels: code -> numpy type.
_NIFTI_FLOATS = {16: "f4", 64: "f8"}


def _nifti_non_finite(raw: bytes | None) -> int:
    """Number of NaN or infinite voxels of a NIfTI-1 file's bytes (0 for other data types)."""
    if raw is None or len(raw) < 348:
        return 0
    for order in "<>":
        if np.frombuffer(raw, f"{order}i4", 1, 0)[0] == 348:
            break
    else:
        return 0  # not NIfTI-1: SimpleITK decides
    dims = np.frombuffer(raw, f"{order}i2", 8, 40)
    code = int(np.frombuffer(raw, f"{order}i2", 1, 70)[0])
    if code not in _NIFTI_FLOATS:
        return 0
    offset = int(np.frombuffer(raw, f"{order}f4", 1, 108)[0])
    count = int(np.prod(dims[1:1 + max(int(dims[0]), 1)].astype(np.int64)))
    values = np.frombuffer(raw, f"{order}{_NIFTI_FLOATS[code]}", min(count, (len(raw) - offset) // int(
        _NIFTI_FLOATS[code][1])), offset)
    return int(np.count_nonzero(~np.isfinite(values)))


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


def read_image_pair(image_path: str | Path, mask_path: str | Path, subject_id: str | None = None,
                    image_kind: str = "pet") -> tuple[sitk.Image, sitk.Image]:
    """Read an image (a PET in SUV by default; see :func:`read_image`) and a label mask that must
    share the image's voxel grid."""
    image = read_image(image_path, subject_id, image_kind)
    mask = read_image(mask_path, subject_id, "mask")
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
