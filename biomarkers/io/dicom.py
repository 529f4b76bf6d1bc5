"""Read one DICOM image series from a folder: files, slice order, geometry, pixels, dates.

Geometry follows the DICOM Image Plane module (PS3.3 C.7.6.2) in the patient's LPS
coordinates, as SimpleITK/ITK build it: the direction matrix's columns are the row
cosine, the column cosine and their cross product (the slice normal); slices are ordered
by ImagePositionPatient projected on that normal, ascending; the origin is the first
slice's position and the slice spacing comes from the positions, never from
SliceThickness. Pixel values are rescaled per slice (``stored * RescaleSlope +
RescaleIntercept``) in float64, since PET scanners vary the slope between slices.

Folders are scanned once: pixel data are not read then (pydicom ``defer_size``), only for
the files of the chosen series. Date and time values and series-wide tags are in
:mod:`biomarkers.io.dicom_time`.
"""
from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from biomarkers.errors import InputError

#: Largest relative difference tolerated between slice gaps (and in-plane drift per gap).
SLICE_GAP_TOLERANCE = 0.01
#: Largest difference tolerated in direction cosines (between slices, and from unit length).
ORIENTATION_TOLERANCE = 1e-4
#: Elements larger than this (in bytes: the pixel data) are read only when used.
_DEFER_BYTES = 4096
_ASCII_VRS = frozenset({"DS", "IS", "CS", "DA", "TM", "DT", "UI"})


class DicomTagError(InputError):
    """A DICOM tag needed for the computation is missing, malformed or contradictory."""


def tag_label(keyword: str) -> str:
    """``"PatientWeight (0010,1030)"``: a keyword with its tag, for messages."""
    tag = tag_for_keyword(keyword)
    return keyword if tag is None else f"{keyword} ({tag >> 16:04X},{tag & 0xFFFF:04X})"


def text_value(ds: Dataset, keyword: str) -> str | None:
    """The value of ``keyword`` as stripped text (multi-values joined by ``\\``); None if absent or empty.

    Values of the plain-ASCII VRs (DS, IS, CS, DA, TM, DT, UI) are taken from the raw bytes,
    which is several times faster than pydicom's conversion and gives the same text.
    """
    tag = tag_for_keyword(keyword)
    element = None if tag is None else ds.get_item(tag)
    if element is None:
        return None
    if isinstance(element.value, bytes) and dictionary_VR(tag) in _ASCII_VRS:
        text = element.value.decode("ascii", "replace").strip(" \0")
    else:
        value = ds[tag].value
        if isinstance(value, (list, MultiValue)):
            value = "\\".join(str(v) for v in value)
        text = "" if value is None else str(value).strip()
    return text or None


def number_value(ds: Dataset, keyword: str, path: Path) -> float | None:
    """The numeric value of ``keyword``; None if absent or empty, an error if not a number."""
    text = text_value(ds, keyword)
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise DicomTagError(f"{tag_label(keyword)} is {text!r}, not a number; correct the "
                            "header", path=path) from None


@dataclass(frozen=True)
class DicomSeries:
    """The slices of one series, in order along the slice normal, and their geometry."""

    files: tuple[Path, ...]
    headers: tuple[Dataset, ...]
    origin_mm: tuple[float, float, float]
    spacing_mm: tuple[float, float, float]
    direction: tuple[float, ...]

    @property
    def series_uid(self) -> str:
        return str(self.headers[0].get("SeriesInstanceUID", ""))

    @property
    def n_slices(self) -> int:
        return len(self.files)


def scan_folder(folder: Path) -> list[tuple[Path, Dataset]]:
    """Every DICOM file under ``folder`` (recursively, any name) with its header; others skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("DICOM folder does not exist", path=folder)
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            found.append((path, pydicom.dcmread(path, defer_size=_DEFER_BYTES)))
        except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError,
                struct.error):
            continue
    return found


def read_series(folder: Path, modality: str = "PT") -> DicomSeries:
    """The single ``modality`` series in ``folder``, ordered, with its geometry checked.

    Parameters
    ----------
    folder : Path
        Folder searched recursively; files that are not DICOM are skipped.
    modality : str
        Modality (0008,0060) of the series wanted; other series are ignored.

    Raises
    ------
    InputError
        No such series, several (each listed with UID, SeriesDescription and file count),
        or inconsistent slices (orientation, size, uneven gaps or missing slices).
    """
    files = scan_folder(folder)
    groups: dict[str, list[tuple[Path, Dataset]]] = {}
    for path, ds in files:
        if (text_value(ds, "Modality") or "").upper() == modality:
            groups.setdefault(text_value(ds, "SeriesInstanceUID") or "", []).append((path, ds))
    if not groups:
        seen = Counter(text_value(ds, "Modality") or "no Modality" for _, ds in files)
        listing = ", ".join(f"{m} x {n}" for m, n in sorted(seen.items())) or "none"
        raise InputError(f"no {modality} DICOM series found (searched recursively; DICOM "
                         f"files by Modality (0008,0060): {listing}); give the folder of the "
                         f"{modality} series", path=folder)
    if len(groups) > 1:
        listing = "; ".join(
            f"{uid or '(no SeriesInstanceUID)'} '{text_value(items[0][1], 'SeriesDescription') or ''}'"
            f" ({len(items)} files)" for uid, items in sorted(groups.items()))
        raise InputError(f"the folder holds {len(groups)} {modality} series ({listing}); give "
                         "a folder with exactly one series", path=folder)
    return _ordered_series(next(iter(groups.values())))


def _floats(ds: Dataset, keyword: str, count: int, path: Path) -> np.ndarray:
    text = text_value(ds, keyword)
    if text is None:
        raise DicomTagError(f"{tag_label(keyword)} is missing; the slice cannot be placed in "
                            "space", path=path)
    try:
        values = np.array([float(v) for v in text.split("\\")])
    except ValueError:
        values = np.array([])
    if values.size != count:
        raise DicomTagError(f"{tag_label(keyword)} is {text!r}, expected {count} numbers",
                            path=path)
    return values


def _ordered_series(items: list[tuple[Path, Dataset]]) -> DicomSeries:
    first_path, first = items[0]
    cosines = _floats(first, "ImageOrientationPatient", 6, first_path)
    row, col = cosines[:3], cosines[3:]
    if (abs(np.linalg.norm(row) - 1) > ORIENTATION_TOLERANCE or abs(np.linalg.norm(col) - 1)
            > ORIENTATION_TOLERANCE or abs(row @ col) > ORIENTATION_TOLERANCE):
        raise DicomTagError(f"{tag_label('ImageOrientationPatient')} {cosines.tolist()} is not "
                            "two orthogonal unit vectors", path=first_path)
    normal = np.cross(row, col)
    shape = (first.get("Rows"), first.get("Columns"))
    pixel_mm = _floats(first, "PixelSpacing", 2, first_path)
    positions = np.empty((len(items), 3))
    for k, (path, ds) in enumerate(items):
        if not np.allclose(_floats(ds, "ImageOrientationPatient", 6, path), cosines,
                           atol=ORIENTATION_TOLERANCE):
            raise DicomTagError(f"{tag_label('ImageOrientationPatient')} differs from that of "
                                f"{first_path.name}; slices of one volume share it", path=path)
        if (ds.get("Rows"), ds.get("Columns")) != shape or not np.allclose(
                _floats(ds, "PixelSpacing", 2, path), pixel_mm, rtol=1e-6):
            raise DicomTagError("Rows, Columns or PixelSpacing differ from those of "
                                f"{first_path.name}", path=path)
        if int(ds.get("NumberOfFrames", 1) or 1) != 1:
            raise InputError("multi-frame images are not supported; export the series as one "
                             "file per slice", path=path)
        positions[k] = _floats(ds, "ImagePositionPatient", 3, path)
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    along, positions = along[order], positions[order]
    paths = [items[i][0] for i in order]
    slice_mm = _slice_spacing(along, positions, normal, paths, first)
    direction = tuple(float(v) for v in np.column_stack([row, col, normal]).ravel())
    return DicomSeries(tuple(paths), tuple(items[i][1] for i in order),
                       tuple(float(v) for v in positions[0]),
                       (float(pixel_mm[1]), float(pixel_mm[0]), slice_mm), direction)


def _slice_spacing(along: np.ndarray, positions: np.ndarray, normal: np.ndarray,
                   paths: list[Path], first: Dataset) -> float:
    """Mean gap between slice positions, after checking the gaps are even and on the normal."""
    if len(along) == 1:
        for keyword in ("SpacingBetweenSlices", "SliceThickness"):
            value = number_value(first, keyword, paths[0])
            if value is not None and value > 0:
                return value
        raise DicomTagError("single-slice series without SpacingBetweenSlices (0018,0088) or "
                            "SliceThickness (0018,0050); the slice spacing is unknown", path=paths[0])
    gaps = np.diff(along)
    typical = float(np.median(gaps))
    if gaps.min() <= SLICE_GAP_TOLERANCE * max(typical, 1e-3):
        k = int(np.argmin(gaps))
        raise InputError(f"{paths[k].name} and {paths[k + 1].name} lie at the same position "
                         f"({along[k]:.3f} mm along the normal): a dynamic, gated or duplicated "
                         "series; give one frame per folder", path=paths[k].parent)
    bad = np.flatnonzero(np.abs(gaps - typical) > SLICE_GAP_TOLERANCE * typical)
    if bad.size:
        k = int(bad[0])
        what = (f"about {round(gaps[k] / typical) - 1} missing slice(s)"
                if gaps[k] > 1.5 * typical else "an uneven slice gap")
        raise InputError(f"{what} between {paths[k].name} ({along[k]:.3f} mm) and "
                         f"{paths[k + 1].name} ({along[k + 1]:.3f} mm); the typical gap is "
                         f"{typical:.4f} mm; the series is incomplete or not one volume",
                         path=paths[k].parent)
    steps = np.diff(positions, axis=0)
    drift = np.linalg.norm(steps - np.outer(steps @ normal, normal), axis=1)
    if drift.max() > SLICE_GAP_TOLERANCE * typical:
        raise InputError("slice positions are not along the slice normal (gantry tilt or "
                         "sheared stack); resample the series first", path=paths[0].parent)
    return float((along[-1] - along[0]) / (len(along) - 1))


def _stored_pixels(ds: Dataset, path: Path) -> np.ndarray:
    """The stored values of one slice, (rows, columns), without rescaling."""
    rows, cols = int(ds.Rows), int(ds.Columns)
    syntax = ds.file_meta.TransferSyntaxUID
    bits = int(ds.get("BitsAllocated", 0))
    if (not syntax.is_compressed and bits in (8, 16, 32) and int(ds.get("BitsStored", 0)) == bits
            and int(ds.get("SamplesPerPixel", 1)) == 1):
        kind = "i" if int(ds.get("PixelRepresentation", 0)) == 1 else "u"
        dtype = np.dtype(f"{'<' if syntax.is_little_endian else '>'}{kind}{bits // 8}")
        data = ds.get("PixelData")
        if data is None or len(data) < rows * cols * dtype.itemsize:
            raise DicomTagError("PixelData (7FE0,0010) is missing or shorter than Rows x "
                                "Columns; the file is truncated", path=path)
        return np.frombuffer(data, dtype, count=rows * cols).reshape(rows, cols)
    try:
        return ds.pixel_array
    except Exception as exc:  # pydicom raises many types for undecodable pixel data
        raise InputError(f"cannot decode PixelData (7FE0,0010) ({syntax.name}: {exc}); "
                         "decompress the series first (e.g. gdcmconv --raw)", path=path) from None


def read_pixels(series: DicomSeries) -> np.ndarray:
    """Rescaled pixel values, float64, (z, y, x) in slice order.

    RescaleSlope (0028,1053) and RescaleIntercept (0028,1052) are applied per slice;
    both are required (Type 1 in the PET and CT image modules).
    """
    first = series.headers[0]
    volume = np.empty((series.n_slices, int(first.Rows), int(first.Columns)), np.float64)
    for k, (path, ds) in enumerate(zip(series.files, series.headers)):
        slope = number_value(ds, "RescaleSlope", path)
        intercept = number_value(ds, "RescaleIntercept", path)
        for keyword, value in (("RescaleSlope", slope), ("RescaleIntercept", intercept)):
            if value is None:
                raise DicomTagError(f"{tag_label(keyword)} is missing; stored pixel values "
                                    "cannot be turned into physical values", path=path)
        np.multiply(_stored_pixels(ds, path), slope, out=volume[k])
        if intercept:
            volume[k] += intercept
    return volume


def to_image(array: np.ndarray, series: DicomSeries) -> sitk.Image:
    """Wrap a (z, y, x) array in the series' geometry (origin, spacing, direction)."""
    image = sitk.GetImageFromArray(array)
    image.SetOrigin(series.origin_mm)
    image.SetSpacing(series.spacing_mm)
    image.SetDirection(series.direction)
    return image


def read_dicom_image(folder: str | Path, modality: str = "CT") -> sitk.Image:
    """The single ``modality`` series of ``folder`` as a float32 image of physical values (HU for
    CT: RescaleSlope and RescaleIntercept applied per slice) in the series' geometry."""
    series = read_series(Path(folder), modality)
    return to_image(read_pixels(series).astype(np.float32), series)


# --- DA, TM and DT values (DICOM PS3.5 table 6.2-1) -------------------------------------------
