"""Write a simulated SUV volume as a PET DICOM series (one file per slice).

The series looks like a scanner's: PET Image Storage, int16 pixels with a per-slice
RescaleSlope (so that each slice's largest magnitude fills int16, as GE scanners do),
PatientWeight/PatientSize/PatientSex, the Radiopharmaceutical Information Sequence
(F-18 FDG by default), SeriesDate/SeriesTime and per-bed AcquisitionDate/AcquisitionTime.
Pixel values are chosen so that a correct SUV conversion gives back ``suv``:
with Units BQML the activity concentration (Bq/ml) is ``SUV x dose / weight_g``, the dose
decayed as DecayCorrection says (DICOM PS3.3 C.8.9.1, PET Series and PET Isotope modules).

The header options (:class:`PetHeader`) let tests vary Units, DecayCorrection, the Philips private SUV factor,
midnight crossing, time-zone offsets and missing or altered tags. The same arguments
(and seed) give byte-identical files: UIDs are derived from the seed and subject ID.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, PositronEmissionTomographyImageStorage, generate_uid
from pydicom.valuerep import format_number_as_ds

from biomarkers.io.atomic import atomic_folder

#: F-18 half-life in seconds (109.77 min; NNDC/DDEP recommended data).
F18_HALF_LIFE_S = 6586.2
#: Activity per kg of body weight used to draw a realistic injected dose (EANM 2015, about 3.7 MBq/kg).
DOSE_PER_KG_BQ = 3.7e6
#: Private creator of the Philips PET private group (7053,00xx).
PHILIPS_CREATOR = "Philips PET Private Group"
#: Arbitrary counts-per-(Bq/ml) calibration of simulated CNTS images.
COUNTS_PER_BQML = 0.25
#: Keywords that live in the Radiopharmaceutical Information Sequence item.
ISOTOPE_KEYWORDS = frozenset({"Radiopharmaceutical", "RadiopharmaceuticalStartTime",
                              "RadiopharmaceuticalStartDateTime", "RadionuclideTotalDose",
                              "RadionuclideHalfLife", "RadionuclidePositronFraction",
                              "RadionuclideCodeSequence"})


def _ds(value: float) -> str:
    """A float as a valid DICOM Decimal String (at most 16 characters)."""
    return format_number_as_ds(float(value))


def _tm(moment: datetime) -> str:
    """DICOM TM (HHMMSS[.FFFFFF]) of ``moment``."""
    return moment.strftime("%H%M%S") + (f".{moment.microsecond:06d}" if moment.microsecond else "")


def _dt(moment: datetime, utc_offset: str | None) -> str:
    """DICOM DT of ``moment``, with an ``&ZZXX`` suffix when ``utc_offset`` is given."""
    return moment.strftime("%Y%m%d") + _tm(moment) + (utc_offset or "")


def _offset(text: str) -> timezone:
    """``+HHMM``/``-HHMM`` as a :class:`datetime.timezone`."""
    sign = -1 if text[0] == "-" else 1
    return timezone(sign * timedelta(hours=int(text[1:3]), minutes=int(text[3:5])))


def _uid(key: str, name: str) -> str:
    """A UID derived from ``key`` and ``name`` (SHA-512 under pydicom's root), the same every run.

    ``generate_uid(prefix=None, ...)`` would ignore the entropy sources and return a random
    UUID-based UID, so pydicom's default prefix is used.
    """
    return generate_uid(entropy_srcs=[f"{key}|{name}"])


def _header_values(rng: np.random.Generator, sex: str | None, weight_kg: float | None,
                   height_m: float | None, dose_bq: float | None) -> tuple[str, float, float, float]:
    """Sex, weight (0.1 kg), height (cm precision, in m) and dose (0.1 MBq), drawn where not given."""
    sex = sex if sex is not None else str(rng.choice(["F", "M"]))
    male = sex == "M"
    if weight_kg is None:
        weight_kg = float(np.clip(rng.normal(82.0 if male else 68.0, 12.0), 45.0, 130.0))
    if height_m is None:
        height_m = float(np.clip(rng.normal(1.76 if male else 1.63, 0.07), 1.45, 2.0))
    weight_kg, height_m = round(weight_kg, 1), round(height_m, 2)
    if dose_bq is None:
        dose_bq = round(DOSE_PER_KG_BQ * weight_kg * rng.uniform(0.9, 1.1), -5)
    return sex, weight_kg, height_m, float(dose_bq)


def _base_dataset(subject_id: str, uids: Mapping[str, str], sex: str, weight_kg: float,
                  height_m: float, units: str, decay_correction: str, n_slices: int,
                  description: str) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = PositronEmissionTomographyImageStorage
    ds.Modality = "PT"
    ds.Manufacturer = "Philips Medical Systems" if units == "CNTS" else "biomarkers simulator"
    ds.PatientName = subject_id
    ds.PatientID = subject_id
    ds.PatientBirthDate = ""
    ds.PatientSex = sex
    ds.PatientSize = _ds(height_m)
    ds.PatientWeight = _ds(weight_kg)
    ds.StudyInstanceUID = uids["study"]
    ds.SeriesInstanceUID = uids["series"]
    ds.FrameOfReferenceUID = uids["frame"]
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.SeriesDescription = description
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.PositionReferenceIndicator = ""
    ds.Units = units
    ds.DecayCorrection = decay_correction
    ds.CorrectedImage = (["DECY"] if decay_correction != "NONE" else []) + [
        "ATTN", "SCAT", "DTIM", "RAN", "NORM"]
    ds.SeriesType = ["WHOLE BODY", "IMAGE"]
    ds.CountsSource = "EMISSION"
    ds.NumberOfSlices = n_slices
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = "0"
    ds.RescaleType = units
    return ds


def _isotope_item(dose_bq: float, half_life_s: float, injection: datetime,
                  injection_datetime_tag: bool, injection_utc_offset: str | None) -> Dataset:
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "C-111A1", "SRT", "^18^Fluorine"
    item = Dataset()
    item.Radiopharmaceutical = "Fluorodeoxyglucose"
    item.RadiopharmaceuticalStartTime = _tm(injection)
    if injection_datetime_tag:
        item.RadiopharmaceuticalStartDateTime = _dt(injection, injection_utc_offset)
    item.RadionuclideTotalDose = _ds(dose_bq)
    item.RadionuclideHalfLife = _ds(half_life_s)
    item.RadionuclidePositronFraction = "0.9673"
    item.RadionuclideCodeSequence = DicomSequence([code])
    return item


def _apply(ds: Dataset, item: Dataset, omit: Sequence[str], overrides: Mapping[str, Any]) -> None:
    """Delete ``omit`` and set ``overrides`` (main dataset or isotope item, by keyword)."""
    for keyword in omit:
        target = item if keyword in ISOTOPE_KEYWORDS else ds
        if keyword in target:
            delattr(target, keyword)
    for keyword, value in overrides.items():
        setattr(item if keyword in ISOTOPE_KEYWORDS else ds, keyword, value)


@dataclass(frozen=True)
class PetHeader:
    """The header of a simulated PET series (:func:`write_pet_dicom`): what a scanner and a site
    would write, with the options tests vary.

    Attributes
    ----------
    units : {"BQML", "GML", "CNTS"}
        Units (0054,1001). CNTS writes the Philips SUV scale factor (7053,1000) unless
        ``philips_suv_factor`` is False.
    decay_correction : {"START", "ADMIN", "NONE"}
        DecayCorrection (0054,1102); with NONE each bed's activity is decayed to its own
        acquisition start.
    sex, weight_kg, height_m, dose_bq : optional
        Patient and dose values; drawn from the writer's seed when None.
    half_life_s, uptake_s : float
        RadionuclideHalfLife and the time from injection to SeriesTime.
    series_datetime : datetime
        SeriesDate/SeriesTime (local, naive); bed ``k`` starts ``k * frame_duration_s`` later.
    injection_datetime_tag : bool
        Write RadiopharmaceuticalStartDateTime (0018,1078) besides RadiopharmaceuticalStartTime.
    utc_offset : str, optional
        TimezoneOffsetFromUTC (0008,0201), e.g. ``"+0100"``: the zone of all DA/TM values.
    injection_utc_offset : str, optional
        Write RadiopharmaceuticalStartDateTime in this zone, with an ``&ZZXX`` suffix.
    slices_per_bed, frame_duration_s : int, float
        Bed positions: slices sharing an AcquisitionTime, and the time per bed.
    series_description : str
        SeriesDescription (0008,103E).
    omit : sequence of str
        Keywords to leave out (main dataset or isotope sequence item).
    overrides : mapping, optional
        Keyword -> value written instead of the computed header value; pixels are unchanged.

    Raises
    ------
    ValueError
        Units or a decay correction that is not simulated.
    """

    units: str = "BQML"
    decay_correction: str = "START"
    philips_suv_factor: bool = True
    sex: str | None = None
    weight_kg: float | None = None
    height_m: float | None = None
    dose_bq: float | None = None
    half_life_s: float = F18_HALF_LIFE_S
    uptake_s: float = 3600.0
    series_datetime: datetime = datetime(2024, 3, 5, 10, 30, 0)
    injection_datetime_tag: bool = True
    utc_offset: str | None = None
    injection_utc_offset: str | None = None
    slices_per_bed: int = 40
    frame_duration_s: float = 120.0
    series_description: str = "PET WB"
    omit: Sequence[str] = ()
    overrides: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.units not in ("BQML", "GML", "CNTS") or self.decay_correction not in ("START", "ADMIN", "NONE"):
            raise ValueError(f"units {self.units!r} / decay_correction {self.decay_correction!r} not simulated; "
                             "write other values with overrides")


def write_pet_dicom(suv: np.ndarray, spacing_mm: Sequence[float], origin_mm: Sequence[float],
                    out_dir: Path, subject_id: str,
                    seed: int | np.random.SeedSequence | np.random.Generator = 0,
                    header: PetHeader = PetHeader(), *, direction: Sequence[float] | None = None) -> Path:
    """Write ``suv`` as a PET DICOM series, one file per slice, atomically.

    Parameters
    ----------
    suv : numpy.ndarray
        SUVbw volume in (z, y, x) order.
    spacing_mm, origin_mm : sequence of float
        Voxel spacing and centre of voxel (0, 0, 0), both (x, y, z) in mm (SimpleITK order, LPS).
    out_dir : Path
        Folder to write (replaced if it exists).
    subject_id : str
        Pseudonymous ID, written as PatientName and PatientID; enters the UIDs.
    seed : int, numpy.random.SeedSequence or numpy.random.Generator
        Source of the drawn header values (sex, weight, height, dose) and of the UIDs.
    header : PetHeader
        Units, decay correction, patient, dose and timing values, and tags to omit or override.
    direction : sequence of float, optional
        Nine direction cosines in SimpleITK order (columns: x, y and slice axes); identity if None.

    Returns
    -------
    Path
        ``out_dir``.
    """
    suv = np.asarray(suv, dtype=np.float64)
    if suv.ndim != 3:
        raise ValueError(f"suv must be a (z, y, x) volume, got shape {suv.shape}")
    h = header
    units, decay_correction, uptake_s, half_life_s = h.units, h.decay_correction, h.uptake_s, h.half_life_s
    series_datetime, utc_offset, injection_utc_offset = h.series_datetime, h.utc_offset, h.injection_utc_offset
    rng = np.random.default_rng(seed)
    sex, weight_kg, height_m, dose_bq = _header_values(rng, h.sex, h.weight_kg, h.height_m, h.dose_bq)
    key = f"{subject_id}|{int(rng.integers(2**62))}"
    uids = {name: _uid(key, name) for name in ("study", "series", "frame")}
    matrix = np.eye(3) if direction is None else np.asarray(direction, float).reshape(3, 3)
    origin, spacing = np.asarray(origin_mm, float), np.asarray(spacing_mm, float)
    zone = _offset(utc_offset) if utc_offset else None
    injection = series_datetime - timedelta(seconds=uptake_s)
    injection_local = injection
    if injection_utc_offset:
        injection_local = (injection.replace(tzinfo=zone or _offset(injection_utc_offset))
                           .astimezone(_offset(injection_utc_offset)).replace(tzinfo=None))

    ds = _base_dataset(subject_id, uids, sex, weight_kg, height_m, units, decay_correction,
                       suv.shape[0], h.series_description)
    for date_kw, time_kw in (("StudyDate", "StudyTime"), ("SeriesDate", "SeriesTime")):
        setattr(ds, date_kw, series_datetime.strftime("%Y%m%d"))
        setattr(ds, time_kw, _tm(series_datetime))
    if utc_offset:
        ds.TimezoneOffsetFromUTC = utc_offset
    item = _isotope_item(dose_bq, half_life_s, injection_local, h.injection_datetime_tag,
                         injection_utc_offset)
    ds.RadiopharmaceuticalInformationSequence = DicomSequence([item])
    ds.Rows, ds.Columns = suv.shape[1], suv.shape[2]
    ds.PixelSpacing = [_ds(spacing[1]), _ds(spacing[0])]
    ds.SliceThickness = _ds(spacing[2])
    ds.ImageOrientationPatient = [_ds(v) for v in (*matrix[:, 0], *matrix[:, 1])]

    decay_rate = np.log(2.0) / half_life_s
    out_dir = Path(out_dir)
    with atomic_folder(out_dir) as tmp_dir:
        for k in range(suv.shape[0]):
            bed_offset_s = (k // h.slices_per_bed) * h.frame_duration_s
            acquired = series_datetime + timedelta(seconds=bed_offset_s)
            elapsed_s = {"START": uptake_s, "ADMIN": 0.0, "NONE": uptake_s + bed_offset_s}
            decayed_bq = dose_bq * np.exp(-decay_rate * elapsed_s.get(decay_correction, uptake_s))
            bqml = suv[k] * decayed_bq / (weight_kg * 1000.0)
            values = {"GML": suv[k], "CNTS": bqml * COUNTS_PER_BQML}.get(units, bqml)
            peak = float(np.max(np.abs(values)))
            slope = float(_ds(peak / 32767.0)) if peak > 0 else 1.0
            stored = np.clip(np.rint(values / slope), -32768, 32767).astype("<i2")
            sl = Dataset()
            sl.update(ds)  # a new element dict: per-slice values never touch ``ds``
            sl.SOPInstanceUID = _uid(key, f"slice|{k}")
            sl.InstanceNumber = k + 1
            sl.ImageIndex = k + 1
            position = origin + k * spacing[2] * matrix[:, 2]
            sl.ImagePositionPatient = [_ds(v) for v in position]
            sl.SliceLocation = _ds(position[2])
            sl.AcquisitionDate = acquired.strftime("%Y%m%d")
            sl.AcquisitionTime = _tm(acquired)
            sl.ContentDate, sl.ContentTime = sl.AcquisitionDate, sl.AcquisitionTime
            sl.ActualFrameDuration = int(round(h.frame_duration_s * 1000))
            sl.FrameReferenceTime = _ds(bed_offset_s * 1000.0)
            sl.RescaleSlope = _ds(slope)
            if units == "CNTS" and h.philips_suv_factor:
                block = sl.private_block(0x7053, PHILIPS_CREATOR, create=True)
                block.add_new(0x00, "DS", _ds(weight_kg * 1000.0 / (
                    dose_bq * np.exp(-decay_rate * uptake_s) * COUNTS_PER_BQML)))
            sl.PixelData = stored.tobytes()
            _apply(sl, item, h.omit, h.overrides or {})
            _save_slice(sl, tmp_dir / f"PT{k + 1:04d}.dcm")
    return out_dir


def _save_slice(sl: Dataset, path: Path) -> None:
    """Write one slice with its file meta information (explicit VR little endian)."""
    sl.file_meta = FileMetaDataset()
    sl.file_meta.MediaStorageSOPClassUID = sl.SOPClassUID
    sl.file_meta.MediaStorageSOPInstanceUID = sl.SOPInstanceUID
    sl.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    pydicom.dcmwrite(path, sl, enforce_file_format=True)


def write_ct_dicom(hu: np.ndarray, spacing_mm: Sequence[float], origin_mm: Sequence[float], out_dir: Path,
                   subject_id: str, seed: int = 0, series_description: str = "CT WB") -> Path:
    """Write ``hu`` (z, y, x; Hounsfield units) as a CT DICOM series, one file per slice, atomically:
    CT Image Storage, int16 pixels with RescaleSlope 1 and RescaleIntercept -1024, axial slices on
    the grid of ``spacing_mm`` and ``origin_mm`` ((x, y, z), mm, LPS). UIDs derive from ``seed`` and
    ``subject_id``, so the same arguments give byte-identical files."""
    from pydicom.uid import CTImageStorage

    key = f"{seed}|{subject_id}|ct"
    spacing, origin = [float(v) for v in spacing_mm], [float(v) for v in origin_mm]
    stored = np.clip(np.rint(np.asarray(hu, np.float64) + 1024.0), -32768, 32767).astype("<i2")
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.StudyInstanceUID, ds.SeriesInstanceUID = _uid(key, "study"), _uid(key, "series")
    ds.FrameOfReferenceUID = _uid(key, "frame")
    ds.PatientName = ds.PatientID = subject_id
    ds.PatientBirthDate, ds.PatientSex = "", "O"
    ds.StudyDate, ds.StudyTime, ds.SeriesDate, ds.SeriesTime = "20240305", "102000", "20240305", "102000"
    ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyID = "", "", "1"
    ds.Modality, ds.SeriesNumber, ds.SeriesDescription = "CT", 2, series_description
    ds.Manufacturer, ds.PositionReferenceIndicator, ds.KVP = "biomarkers simulate", "", 120
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = [_ds(spacing[1]), _ds(spacing[0])]
    ds.SliceThickness = _ds(spacing[2])
    ds.Rows, ds.Columns = stored.shape[1], stored.shape[2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
    out_dir = Path(out_dir)
    with atomic_folder(out_dir) as tmp_dir:
        for k in range(stored.shape[0]):
            sl = Dataset()
            sl.update(ds)
            sl.SOPInstanceUID = _uid(key, f"slice|{k}")
            sl.InstanceNumber = k + 1
            position = [origin[0], origin[1], origin[2] + k * spacing[2]]
            sl.ImagePositionPatient = [_ds(v) for v in position]
            sl.SliceLocation = _ds(position[2])
            sl.PixelData = stored[k].tobytes()
            _save_slice(sl, tmp_dir / f"CT{k + 1:04d}.dcm")
    return out_dir
