"""Read one DICOM image series from a folder: files, slice order, geometry, pixels, dates.

Geometry follows the DICOM Image Plane module (PS3.3 C.7.6.2) in the patient's LPS
coordinates, as SimpleITK/ITK build it: the direction matrix's columns are the row
cosine, the column cosine and their cross product (the slice normal); slices are ordered
by ImagePositionPatient projected on that normal, ascending; the origin is the first
slice's position and the slice spacing comes from the positions, never from
SliceThickness. Pixel values are rescaled per slice (``stored * RescaleSlope +
RescaleIntercept``) in float64, since PET scanners vary the slope between slices.

Folders are scanned once: pixel data are not read then (pydicom ``defer_size``), only for
the files of the chosen series. Date and time values (DA, TM, DT; PS3.5 table 6.2-1) are
parsed here too, with their UTC offsets.
"""
from __future__ import annotations

import re
import struct
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
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


# --- DA, TM and DT values (DICOM PS3.5 table 6.2-1) -------------------------------------------

_TM = re.compile(r"^(\d{2})(?::?(\d{2})(?::?(\d{2})(?:\.(\d{1,6}))?)?)?$")
_DT = re.compile(r"^(\d{8})(\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)([+-]\d{4})?$")


def _bad(keyword: str, text: str, form: str, path: Path) -> DicomTagError:
    return DicomTagError(f"{tag_label(keyword)} is {text!r}, not a valid {form}; correct the "
                         "header", path=path)


def parse_da(text: str, keyword: str, path: Path) -> date:
    """A DA value (``YYYYMMDD``; the old ``YYYY.MM.DD`` form is accepted)."""
    try:
        if re.fullmatch(r"\d{4}(\.?)\d{2}\1\d{2}", text) is None:
            raise ValueError(text)
        return datetime.strptime(text.replace(".", ""), "%Y%m%d").date()
    except ValueError:
        raise _bad(keyword, text, "date (DA, YYYYMMDD)", path) from None


def parse_tm(text: str, keyword: str, path: Path) -> timedelta:
    """A TM value (``HH[MM[SS[.FFFFFF]]]``, old colon form accepted) as time since midnight."""
    match = _TM.match(text)
    if match is None or int(match[1]) > 23 or int(match[2] or 0) > 59 or int(match[3] or 0) > 60:
        raise _bad(keyword, text, "time (TM, HHMMSS.FFFFFF)", path)
    fraction = float(f"0.{match[4]}") if match[4] else 0.0
    return timedelta(hours=int(match[1]), minutes=int(match[2] or 0),
                     seconds=int(match[3] or 0) + fraction)


def parse_utc_offset(text: str, keyword: str, path: Path) -> timezone:
    """A ``+HHMM``/``-HHMM`` offset (TimezoneOffsetFromUTC, or a DT suffix)."""
    if re.fullmatch(r"[+-]\d{4}", text) is None or int(text[3:5]) > 59:
        raise _bad(keyword, text, "UTC offset (+HHMM or -HHMM)", path)
    sign = -1 if text[0] == "-" else 1
    return timezone(sign * timedelta(hours=int(text[1:3]), minutes=int(text[3:5])))


def parse_dt(text: str, keyword: str, path: Path) -> tuple[datetime, timezone | None]:
    """A DT value down to at least the hour: the naive date-time and its own UTC offset, if any."""
    match = _DT.match(text)
    if match is None:
        raise _bad(keyword, text, "date-time (DT, YYYYMMDDHHMMSS.FFFFFF&ZZXX)", path)
    day = parse_da(match[1], keyword, path)
    moment = datetime.combine(day, datetime.min.time()) + parse_tm(match[2], keyword, path)
    return moment, None if match[3] is None else parse_utc_offset(match[3], keyword, path)


def with_zone(moment: datetime, zone: timezone | None) -> datetime:
    """``moment`` with UTC offset ``zone`` attached (unchanged when ``zone`` is None)."""
    return moment if zone is None else moment.replace(tzinfo=zone)


def seconds_between(later: datetime, earlier: datetime, later_name: str, earlier_name: str,
                    path: Path) -> float:
    """``later - earlier`` in seconds; an error when only one of them has a UTC offset."""
    if (later.tzinfo is None) != (earlier.tzinfo is None):
        with_offset, without = ((later_name, earlier_name) if later.tzinfo is not None
                                else (earlier_name, later_name))
        raise DicomTagError(f"{with_offset} carries a UTC offset but {without} has none and "
                            f"{tag_label('TimezoneOffsetFromUTC')} is absent: the time between "
                            "them is unknown; add TimezoneOffsetFromUTC", path=path)
    return (later - earlier).total_seconds()


def _combine(ds: Dataset, date_kw: str, time_kw: str, path: Path,
             zone: timezone | None) -> datetime | None:
    day, time = text_value(ds, date_kw), text_value(ds, time_kw)
    if day is None or time is None:
        return None
    moment = datetime.combine(parse_da(day, date_kw, path), datetime.min.time())
    return with_zone(moment + parse_tm(time, time_kw, path), zone)


def acquisition_datetime(ds: Dataset, path: Path, zone: timezone | None) -> datetime | None:
    """A slice's AcquisitionDateTime, else AcquisitionDate + AcquisitionTime; None if incomplete.

    ``zone`` (TimezoneOffsetFromUTC) applies unless the DT value carries its own offset.
    """
    text = text_value(ds, "AcquisitionDateTime")
    if text is None:
        return _combine(ds, "AcquisitionDate", "AcquisitionTime", path, zone)
    moment, own = parse_dt(text, "AcquisitionDateTime", path)
    return with_zone(moment, own or zone)


class SeriesTags:
    """Series-wide tag values of a :class:`DicomSeries`, checked to agree between its slices.

    Identical raw bytes are compared without conversion (fast); the labels of the tags
    found are collected in :attr:`used`. ``isotope=True`` reads from the (single) item of
    the RadiopharmaceuticalInformationSequence (0054,0016).
    """

    def __init__(self, series: DicomSeries) -> None:
        self.series = series
        self.path = series.files[0]
        self.used: set[str] = set()
        self._cache: dict[tuple[str, bool], str | None] = {}

    def _item(self, ds: Dataset, path: Path) -> Dataset | None:
        items = ds.get("RadiopharmaceuticalInformationSequence")
        if items is not None and len(items) > 1:
            raise DicomTagError(f"{tag_label('RadiopharmaceuticalInformationSequence')} holds "
                                f"{len(items)} items; one radiopharmaceutical is supported", path=path)
        return items[0] if items else None

    def text(self, keyword: str, isotope: bool = False) -> str | None:
        """The common text value of ``keyword`` (None if absent everywhere)."""
        if (keyword, isotope) not in self._cache:
            tag, distinct = tag_for_keyword(keyword), {}
            for path, ds in zip(self.series.files, self.series.headers):
                source = self._item(ds, path) if isotope else ds
                element = None if source is None else source.get_item(tag)
                value = None if element is None else element.value
                distinct.setdefault(value if value is None or isinstance(value, bytes)
                                    else object(), (path, source))
            seen: dict[str | None, Path] = {}
            for path, source in distinct.values():
                seen.setdefault(None if source is None else text_value(source, keyword), path)
            if len(seen) > 1:
                (a, path_a), (b, path_b) = list(seen.items())[:2]
                raise DicomTagError(f"{tag_label(keyword)} differs between slices ({path_a.name}: "
                                    f"{a!r}, {path_b.name}: {b!r}); one series has one value",
                                    path=path_a.parent)
            self._cache[keyword, isotope] = next(iter(seen))
        value = self._cache[keyword, isotope]
        if value is not None:
            self.used.add(tag_label(keyword))
        return value

    def number(self, keyword: str, why: str, isotope: bool = False) -> float:
        """The common value of ``keyword`` as a positive number; ``why`` explains errors."""
        text = self.text(keyword, isotope)
        where = f" in {tag_label('RadiopharmaceuticalInformationSequence')}" if isotope else ""
        if text is None:
            raise DicomTagError(f"{tag_label(keyword)}{where} is missing; {why}: add it to the "
                                "DICOM header", path=self.path)
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not value > 0:
            raise DicomTagError(f"{tag_label(keyword)}{where} is {text}, it must be a positive "
                                f"number; {why}", path=self.path)
        return value

    def zone(self) -> timezone | None:
        """TimezoneOffsetFromUTC (0008,0201), the offset of every DA/TM value, if given."""
        text = self.text("TimezoneOffsetFromUTC")
        return None if text is None else parse_utc_offset(text, "TimezoneOffsetFromUTC", self.path)

    def datetime(self, date_kw: str, time_kw: str, why: str) -> datetime:
        """The common date and time of two DA/TM tags, with :meth:`zone`; both required."""
        for keyword in (date_kw, time_kw):
            if self.text(keyword) is None:
                raise DicomTagError(f"{tag_label(keyword)} is missing; {why}: add it to the DICOM "
                                    "header", path=self.path)
        return _combine(self.series.headers[0], date_kw, time_kw, self.path, self.zone())
