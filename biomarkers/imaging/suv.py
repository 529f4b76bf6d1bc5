"""DICOM PET series -> standardised uptake value (SUV) image, with a sidecar of the tags used.

SUV = activity concentration (Bq/ml) x body quantity / injected dose decayed to the time the
pixel values refer to (Bq). The rules, per Units (0054,1001):

* ``BQML``: the dose is decayed as DecayCorrection (0054,1102) says (DICOM PS3.3 C.8.9.1):
  ``START``: to the decay reference time chosen as in the QIBA FDG-PET/CT Profile v1.13,
  appendix G (vendor-neutral SUV pseudo-code, Kinahan et al.): SeriesDate/SeriesTime, unless
  that is after the earliest AcquisitionDate/AcquisitionTime of the series (a post-processed
  series), then that earliest acquisition; ``ADMIN``: images refer to the injection, no decay;
  ``NONE``: not decay corrected, so each slice's dose is decayed to its own acquisition
  start (no correction for decay during the frame).
* ``GML``: already SUVbw (unless SUVType (0054,1006) says otherwise, which is refused).
* ``CNTS``: only with the Philips private SUV Scale Factor (7053,1000), which turns the
  rescaled pixel values into SUVbw (QIBA appendix G); refused without it.

GML and CNTS values are SUVbw; another normalisation multiplies them by quantity / weight.
CorrectedImage (0028,0051), when given, must list ATTN (SUVs of images without attenuation
correction mean nothing) and, for BQML, list DECY exactly when DecayCorrection is not NONE.
The injection date-time is RadiopharmaceuticalStartDateTime (0018,1078); failing that,
RadiopharmaceuticalStartTime (0018,1072) on SeriesDate, or on the day before when its time
of day is after SeriesTime (a scan crossing midnight). UTC offsets (a DT's own ``&ZZXX``,
else TimezoneOffsetFromUTC (0008,0201)) are applied before taking differences.
James's lean body mass falls again above a BMI of about 43 (men) or 36 (women) and turns
negative for the very obese (refused); ``lbm-janma`` has no such turning point.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

import biomarkers
from biomarkers.io.atomic import write_json
from biomarkers.io.dicom import (DicomSeries, DicomTagError, read_pixels, read_series, tag_label,
                                 text_value, to_image)
from biomarkers.io.dicom_time import (SeriesTags, acquisition_datetime, parse_dt, parse_tm,
                                      seconds_between, with_zone)
from biomarkers.io.images import write_image

#: Private creator of the Philips PET group holding the SUV Scale Factor (7053,xx00).
PHILIPS_CREATOR = "Philips PET Private Group"
PHILIPS_LABEL = f"SUV Scale Factor (7053,1000; private creator '{PHILIPS_CREATOR}')"
#: Longest half-life for which an injection date may be inferred from times of day alone:
#: longer-lived tracers (Cu-64, Zr-89, I-124) are often imaged days after injection.
MAX_HALF_LIFE_DATE_INFERENCE_S = 6 * 3600.0
#: Uptake times beyond this many half-lives are taken as contradictory time tags.
MAX_HALF_LIVES = 10.0
_NO_REFERENCE = "without it the decay reference time is unknown"


@dataclass(frozen=True)
class Normalisation:
    """A body-size quantity the activity is normalised by."""

    name: str
    formula: str
    reference: str
    unit: str
    needs: tuple[str, ...]


NORMALISATIONS = {n.name: n for n in (
    Normalisation("bw", "body weight: W[g] = 1000 * W[kg]", "Kinahan & Fletcher, Semin Ultrasound "
                  "CT MR 2010;31:496", "g", ("PatientWeight",)),
    Normalisation("lbm", "lean body mass, James: M 1.10 W - 128 (W/H[cm])^2, F 1.07 W - 148 "
                  "(W/H[cm])^2 kg, x 1000 g", "James WPT, Research on obesity, HMSO 1976",
                  "g", ("PatientWeight", "PatientSize", "PatientSex")),
    Normalisation("lbm-janma", "lean body mass, Janmahasatian: M 9270 W / (6680 + 216 BMI), "
                  "F 9270 W / (8780 + 244 BMI) kg, BMI = W / H[m]^2, x 1000 g",
                  "Janmahasatian et al., Clin Pharmacokinet 2005;44:1051", "g",
                  ("PatientWeight", "PatientSize", "PatientSex")),
    Normalisation("bsa", "body surface area, Du Bois: 0.007184 W^0.425 H[cm]^0.725 m2, x 1e4 cm2 "
                  "(SUVbsa in cm2/ml)", "Du Bois & Du Bois, Arch Intern Med 1916;17:863", "cm2",
                  ("PatientWeight", "PatientSize")),
    Normalisation("ibw", "ideal body weight, Devine: M 50 + 2.3 (H[in] - 60), F 45.5 + 2.3 "
                  "(H[in] - 60) kg, H[in] = H[cm] / 2.54, x 1000 g",
                  "Devine BJ, Drug Intell Clin Pharm 1974;8:650", "g", ("PatientSize", "PatientSex")),
)}


#: Injected activities accepted (Bq): clinical FDG doses are 100-750 MBq (EANM 2015 guideline:
#: about 2-4 MBq/kg); a value outside 1 MBq-2 GBq is a unit error (MBq or mCi written as Bq).
PLAUSIBLE_DOSE_BQ = (1e6, 2e9)


def body_quantity(norm: str, weight_kg: float | None, height_m: float | None,
                  sex: str | None) -> float:
    """The normalising quantity of :data:`NORMALISATIONS` ``norm``: grams, or cm2 for ``bsa``."""
    w, h_cm = weight_kg or 0.0, (height_m or 0.0) * 100.0
    male = sex == "M"
    if norm == "bw":
        return 1000.0 * w
    if norm == "lbm":  # James 1976
        return 1000.0 * ((1.10 * w - 128.0 * (w / h_cm) ** 2) if male
                         else (1.07 * w - 148.0 * (w / h_cm) ** 2))
    if norm == "lbm-janma":  # Janmahasatian 2005
        bmi = w / (h_cm / 100.0) ** 2
        return 1000.0 * 9270.0 * w / ((6680.0 + 216.0 * bmi) if male else (8780.0 + 244.0 * bmi))
    if norm == "bsa":  # Du Bois 1916, m2 -> cm2
        return 1.0e4 * 0.007184 * w ** 0.425 * h_cm ** 0.725
    if norm == "ibw":  # Devine 1974
        return 1000.0 * ((50.0 if male else 45.5) + 2.3 * (h_cm / 2.54 - 60.0))
    raise ValueError(f"unknown normalisation {norm!r}; choose one of {', '.join(NORMALISATIONS)}")


def _injection(header: SeriesTags, half_life_s: float, record: dict[str, Any]) -> datetime:
    """Injection date-time from RadiopharmaceuticalStartDateTime, else StartTime + SeriesDate."""
    start_dt = tag_label("RadiopharmaceuticalStartDateTime")
    text = header.text("RadiopharmaceuticalStartDateTime", isotope=True)
    if text is not None:
        moment, own = parse_dt(text, "RadiopharmaceuticalStartDateTime", header.path)
        record["injection_datetime_source"] = start_dt + ("" if own or header.zone() is None
                                                          else " + TimezoneOffsetFromUTC")
        return with_zone(moment, own or header.zone())
    time = header.text("RadiopharmaceuticalStartTime", isotope=True)
    if time is None:
        raise DicomTagError(f"{start_dt} and {tag_label('RadiopharmaceuticalStartTime')} are both "
                            "missing; the injection time is needed to decay the dose",
                            path=header.path)
    if half_life_s > MAX_HALF_LIFE_DATE_INFERENCE_S:
        raise DicomTagError(f"only {tag_label('RadiopharmaceuticalStartTime')} is given, and with a "
                            f"half-life of {half_life_s / 3600:.1f} h the scan may be days after "
                            f"injection: {start_dt} is needed", path=header.path)
    series = header.datetime("SeriesDate", "SeriesTime", _NO_REFERENCE)
    of_day = parse_tm(time, "RadiopharmaceuticalStartTime", header.path)
    day = series.date()
    rule = f"{tag_label('RadiopharmaceuticalStartTime')} on {tag_label('SeriesDate')}"
    if of_day > timedelta(hours=series.hour, minutes=series.minute, seconds=series.second,
                          microseconds=series.microsecond):
        day -= timedelta(days=1)
        rule += (" minus one day: the injection time of day is after SeriesTime, so the scan "
                 "crossed midnight")
    record["injection_datetime_source"] = rule
    return datetime.combine(day, datetime.min.time(), tzinfo=series.tzinfo) + of_day


def _references(header: SeriesTags, correction: str, record: dict[str, Any]) -> list[datetime]:
    """The time(s) the pixel values refer to: one for START, one per slice for NONE."""
    series, zone = header.series, header.zone()
    acquired = [acquisition_datetime(ds, path, zone)
                for path, ds in zip(series.files, series.headers)]
    names = (f"{tag_label('AcquisitionDateTime')} or {tag_label('AcquisitionDate')}/"
             f"{tag_label('AcquisitionTime')}")
    if any(a is not None for a in acquired):
        header.used.update(tag_label(k) for k in ("AcquisitionDateTime", "AcquisitionDate",
                                                  "AcquisitionTime")
                           if text_value(series.headers[0], k) is not None)
    if correction == "NONE":
        for path, moment in zip(series.files, acquired):
            if moment is None:
                raise DicomTagError(f"DecayCorrection is NONE and {names} is missing; each slice "
                                    "is decayed to its own acquisition time", path=path)
        record["decay_reference"] = "each slice's acquisition date-time (NONE)"
        return acquired
    start = header.datetime("SeriesDate", "SeriesTime", _NO_REFERENCE)
    known = [a for a in acquired if a is not None]
    if not known:
        record["decay_reference"] = "SeriesDate/SeriesTime (no acquisition date-times to compare)"
    elif seconds_between(start, min(known), "SeriesTime", names, header.path) > 0:
        record["decay_reference"] = ("earliest acquisition date-time: SeriesTime is after it "
                                     "(post-processed series; QIBA appendix G)")
        return [min(known)]
    else:
        record["decay_reference"] = "SeriesDate/SeriesTime (not after the earliest acquisition)"
    return [start]


def _decay_factors(header: SeriesTags, record: dict[str, Any]) -> np.ndarray:
    """Fraction of the injected dose left at each slice's reference time (BQML images)."""
    correction = record["decay_correction"] = header.text("DecayCorrection")
    if correction == "ADMIN":
        record["decay_reference"] = "administration (ADMIN): images refer to the injection"
        return np.ones(header.series.n_slices)
    if correction not in ("START", "NONE"):
        raise DicomTagError(f"{tag_label('DecayCorrection')} is {correction or 'missing'}; "
                            "expected START, ADMIN or NONE", path=header.path)
    half_life_s = record["radionuclide_half_life_s"] = header.number(
        "RadionuclideHalfLife", "without it the dose cannot be decayed", isotope=True)
    injection = _injection(header, half_life_s, record)
    references = _references(header, correction, record)
    elapsed_s = np.array([seconds_between(ref, injection, "the decay reference time",
                                          "the injection date-time", header.path)
                          for ref in references])
    if elapsed_s.min() < 0 or elapsed_s.max() > MAX_HALF_LIVES * half_life_s:
        worst = int(np.argmin(elapsed_s) if elapsed_s.min() < 0 else np.argmax(elapsed_s))
        raise DicomTagError(f"injection at {injection.isoformat()} and decay reference at "
                            f"{references[worst].isoformat()} give an uptake time of "
                            f"{elapsed_s[worst] / 60:.1f} min; check the date and time tags",
                            path=header.path)
    record["injection_datetime"] = injection.isoformat()
    record["decay_reference_datetime"] = _summary(references, datetime.isoformat)
    record["uptake_time_s"] = _summary(elapsed_s.tolist())
    factors = np.exp(-math.log(2.0) * elapsed_s / half_life_s)  # A(t) = A0 2^(-t / T1/2)
    return np.broadcast_to(factors, (header.series.n_slices,)).copy()


def _check_corrections(header: SeriesTags, record: dict[str, Any]) -> None:
    """CorrectedImage (0028,0051), when given, must hold ATTN and agree with DecayCorrection."""
    text = header.text("CorrectedImage")
    if text is None:
        record["corrected_image"] = None
        return
    corrections = [c.strip().upper() for c in text.split("\\")]
    record["corrected_image"] = corrections
    label = tag_label("CorrectedImage")
    if "ATTN" not in corrections:
        raise DicomTagError(f"{label} is {text} without ATTN: the images are not attenuation "
                            "corrected and SUVs from them are not quantitative", path=header.path)
    if record["units"] != "BQML":
        return
    correction = header.text("DecayCorrection")
    if ("DECY" in corrections) != (correction != "NONE"):
        raise DicomTagError(f"{label} is {text} but {tag_label('DecayCorrection')} is "
                            f"{correction}: they contradict each other", path=header.path)


def _summary(values: list[Any] | np.ndarray, convert: Any = float) -> Any:
    """One value when all are equal, else ``{"min": ..., "max": ...}``."""
    lo, hi = min(values), max(values)
    return convert(lo) if lo == hi else {"min": convert(lo), "max": convert(hi)}


def _body_quantity(header: SeriesTags, norm: str, record: dict[str, Any]) -> float:
    """The normalising quantity (g or cm2) from PatientWeight/PatientSize/PatientSex."""
    spec = NORMALISATIONS[norm]
    why = f"SUV{norm} ({spec.formula.split(':')[0]}) needs it"
    weight_kg = height_m = sex = None
    if "PatientWeight" in spec.needs:
        weight_kg = record["patient_weight_kg"] = header.number("PatientWeight", why + " in kg")
    if "PatientSize" in spec.needs:
        height_m = header.number("PatientSize", why + " in metres")
        if height_m > 3.0:
            raise DicomTagError(f"{tag_label('PatientSize')} is {height_m:g}, not a height in "
                                "metres (centimetres?); DICOM stores metres, e.g. 1.75",
                                path=header.path)
        record["patient_size_m"] = height_m
    if "PatientSex" in spec.needs:
        sex = header.text("PatientSex")
        if sex not in ("M", "F"):
            raise DicomTagError(f"{tag_label('PatientSex')} is {sex or 'missing'}; {why} as M or F "
                                "(the formula differs by sex)", path=header.path)
        record["patient_sex"] = sex
    quantity = body_quantity(norm, weight_kg, height_m, sex)
    if not quantity > 0:
        raise DicomTagError(f"the {norm} formula gives {quantity:g} {spec.unit} for this weight "
                            "and height, outside its range; choose another normalisation",
                            path=header.path)
    record["normalisation"]["value"] = quantity
    return quantity


def _philips_factors(series: DicomSeries) -> np.ndarray:
    """The Philips SUV Scale Factor of every slice (rescaled pixel value -> SUVbw)."""
    factors = []
    for path, ds in zip(series.files, series.headers):
        try:
            block = ds.private_block(0x7053, PHILIPS_CREATOR)
            value = block[0x00].value if 0x00 in block else None
        except KeyError:
            value = None
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace").strip("\0 ")
        try:
            factor = float(value) if value not in (None, "") else None
        except (TypeError, ValueError):
            factor = float("nan")
        if factor is None:
            raise DicomTagError(f"{tag_label('Units')} is CNTS and the Philips {PHILIPS_LABEL} is "
                                "missing: counts cannot be turned into SUV; export the series in "
                                "BQML", path=path)
        if not factor > 0:
            raise DicomTagError(f"the Philips {PHILIPS_LABEL} is {value!r}, not a positive number",
                                path=path)
        factors.append(factor)
    return np.array(factors)


def compute_suv(series: DicomSeries, norm: str = "bw") -> tuple[np.ndarray, dict[str, Any]]:
    """SUV of every voxel (float64, (z, y, x)) and the record of the tags and rules used.

    Parameters
    ----------
    series : DicomSeries
        A PET series from :func:`biomarkers.io.dicom.read_series`.
    norm : str
        One of :data:`NORMALISATIONS`: ``bw``, ``lbm`` (James), ``lbm-janma``
        (Janmahasatian), ``bsa`` (Du Bois; SUV in cm2/ml) or ``ibw`` (Devine).

    Raises
    ------
    DicomTagError
        A tag needed for this series and normalisation is missing, malformed or contradictory.
    """
    if norm not in NORMALISATIONS:
        raise DicomTagError(f"unknown SUV normalisation {norm!r}; choose one of "
                            f"{', '.join(NORMALISATIONS)}")
    spec, header = NORMALISATIONS[norm], SeriesTags(series)
    record: dict[str, Any] = {
        "software": {"name": "biomarkers", "version": biomarkers.__version__},
        "series_instance_uid": series.series_uid, "n_slices": series.n_slices,
        "normalisation": {"name": norm, "formula": spec.formula, "reference": spec.reference,
                          "unit": spec.unit},
        "suv_unit": f"{spec.unit}/ml"}
    units = record["units"] = (header.text("Units") or "").upper()
    _check_corrections(header, record)
    if units == "BQML":
        quantity = _body_quantity(header, norm, record)
        dose_bq = header.number("RadionuclideTotalDose", "SUV needs the injected activity (Bq)",
                                isotope=True)
        if not PLAUSIBLE_DOSE_BQ[0] <= dose_bq <= PLAUSIBLE_DOSE_BQ[1]:
            raise DicomTagError(f"{tag_label('RadionuclideTotalDose')} is {dose_bq:g} Bq, not an injected activity "
                                f"between {PLAUSIBLE_DOSE_BQ[0] / 1e6:g} MBq and {PLAUSIBLE_DOSE_BQ[1] / 1e9:g} GBq "
                                "(written in MBq or mCi instead of Bq?)", path=header.path)
        record["radionuclide_total_dose_bq"] = dose_bq
        factors = _decay_factors(header, record)
        record["decay_factor"] = _summary(factors.tolist())
        scale = quantity / (dose_bq * factors)
    elif units in ("GML", "CNTS"):
        if units == "GML":
            suv_type = header.text("SUVType")
            if suv_type not in (None, "BW"):
                raise DicomTagError(f"{tag_label('SUVType')} is {suv_type}: the values are "
                                    "SUVs of a normalisation other than body weight, whose "
                                    "formula is unknown; export the series in BQML", path=header.path)
            record["suvbw_source"] = "Units GML: pixel values are SUVbw" + (
                " (SUVType absent; QIBA appendix G convention)" if suv_type is None else "")
            scale = np.ones(series.n_slices)
        else:
            scale = _philips_factors(series)
            header.used.add(PHILIPS_LABEL)
            record["philips_suv_scale_factor"] = _summary(scale.tolist())
            record["suvbw_source"] = "Units CNTS: rescaled pixel values x Philips SUV Scale Factor"
        if norm != "bw":
            quantity = _body_quantity(header, norm, record)
            weight_kg = record["patient_weight_kg"] = header.number(
                "PatientWeight", f"converting SUVbw to SUV{norm} needs the weight in kg")
            scale = scale * quantity / (1000.0 * weight_kg)
    else:
        raise DicomTagError(f"{tag_label('Units')} is {units or 'missing'}; expected BQML, GML "
                            "or CNTS (Philips, with its SUV Scale Factor)", path=header.path)
    suv = read_pixels(series)
    suv *= scale[:, None, None]
    header.used.update(tag_label(k) for k in ("RescaleSlope", "RescaleIntercept"))
    record["tags_used"] = sorted(header.used)
    return suv, record


def read_suv(dicom_dir: Path, norm: str = "bw") -> tuple[sitk.Image, dict[str, Any]]:
    """Read the PET series in ``dicom_dir`` as a float32 SUV image and its sidecar record."""
    series = read_series(Path(dicom_dir), "PT")
    suv, record = compute_suv(series, norm)
    return to_image(suv.astype(np.float32), series), record


def sidecar_path(out: Path) -> Path:
    """``out`` with its image suffix (``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``) replaced by ``.json``."""
    out = Path(out)
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha"):
        if out.name.endswith(suffix):
            return out.with_name(out.name[: -len(suffix)] + ".json")
    return out.with_name(out.name + ".json")


def convert_dicom_to_suv(dicom_dir: Path, out: Path, norm: str = "bw") -> dict:
    """Convert a DICOM PET series to an SUV image and write its JSON sidecar.

    Parameters
    ----------
    dicom_dir : Path
        Folder holding exactly one PET series (searched recursively; non-DICOM files skipped).
    out : Path
        Image to write (NIfTI ``.nii.gz``), float32 SUV in the DICOM geometry (LPS).
    norm : str
        Normalisation: ``bw``, ``lbm`` (James), ``lbm-janma`` (Janmahasatian), ``bsa`` or ``ibw``.

    Returns
    -------
    dict
        The sidecar written to :func:`sidecar_path` ``(out)``: units, decay correction and
        reference, half-life, dose, injection and reference date-times, body measures,
        normalisation and formula, decay factor(s), series UID, slice count and software
        version; never a patient identifier.
    """
    image, record = read_suv(dicom_dir, norm)
    write_image(image, out)
    write_json(record, sidecar_path(out))
    return record
