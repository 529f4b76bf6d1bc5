"""SUV from DICOM PET: every result is checked against a value computed by hand, in the test,
from the numbers in the written headers (never from the library's own helpers)."""
from __future__ import annotations

import json
import math
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk

from biomarkers.errors import InputError
from biomarkers.imaging.suv import convert_dicom_to_suv, sidecar_path
from biomarkers.simulate import simulate_cohort
from biomarkers.simulate.dicom import PetHeader, write_pet_dicom

SPACING_MM = (3.0, 3.0, 2.0)
ORIGIN_MM = (-7.5, -6.0, 100.0)
SUBJECT = "SECRET-Doe-4711"


# --- by hand ---------------------------------------------------------------------------------

def _headers(folder: Path) -> list[pydicom.Dataset]:
    """The slices, ordered by z (the tests' series have identity orientation)."""
    slices = [pydicom.dcmread(p) for p in folder.rglob("*") if p.is_file()]
    return sorted(slices, key=lambda ds: float(ds.ImagePositionPatient[2]))


def _rescaled(ds: pydicom.Dataset) -> np.ndarray:
    return ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def _seconds(da: str, tm: str, offset: str = "") -> float:
    """Seconds since 0001-01-01 (UTC when ``offset`` is given) of a DA and a TM text."""
    clock = int(tm[:2]) * 3600 + int(tm[2:4]) * 60 + float(tm[4:])
    shift = 0.0
    if offset:
        shift = (1 if offset[0] == "+" else -1) * (int(offset[1:3]) * 3600 + int(offset[3:]) * 60)
    return date(int(da[:4]), int(da[4:6]), int(da[6:8])).toordinal() * 86400.0 + clock - shift


def _dt_seconds(dt: str) -> float:
    """Seconds of a DT text ``YYYYMMDDHHMMSS[.F][+HHMM]``."""
    offset = dt[-5:] if dt[-5] in "+-" else ""
    return _seconds(dt[:8], dt[8:len(dt) - len(offset)], offset)


def _isotope(ds: pydicom.Dataset) -> pydicom.Dataset:
    return ds.RadiopharmaceuticalInformationSequence[0]


def _decayed_dose(ds: pydicom.Dataset, t_s: float, injection_s: float) -> float:
    item = _isotope(ds)
    half_life_s = float(item.RadionuclideHalfLife)
    return float(item.RadionuclideTotalDose) * 2.0 ** (-(t_s - injection_s) / half_life_s)


def _suvbw_start(headers: list[pydicom.Dataset]) -> np.ndarray:
    ds = headers[0]
    dose = _decayed_dose(ds, _seconds(ds.SeriesDate, ds.SeriesTime),
                         _dt_seconds(_isotope(ds).RadiopharmaceuticalStartDateTime))
    return np.stack([_rescaled(h) for h in headers]) * float(ds.PatientWeight) * 1000.0 / dose


def _convert(folder: Path, tmp_path: Path, norm: str = "bw") -> tuple[np.ndarray, dict, sitk.Image]:
    out = tmp_path / f"suv_{norm}.nii.gz"
    sidecar = convert_dicom_to_suv(folder, out, norm)
    image = sitk.ReadImage(str(out))
    assert json.loads(sidecar_path(out).read_text()) == sidecar
    return sitk.GetArrayFromImage(image).astype(np.float64), sidecar, image


def _close(ours: np.ndarray, hand: np.ndarray) -> None:
    assert np.max(np.abs(ours - hand)) / np.max(np.abs(hand)) < 1e-6


def _series(tmp_path: Path, name: str = "pet", n_slices: int = 6, seed: int = 0, **options) -> Path:
    suv = np.random.default_rng(seed).gamma(2.0, 1.5, (n_slices, 5, 4))
    options = {"sex": "M", "weight_kg": 81.3, "height_m": 1.78, "dose_bq": 3.02e8} | options
    return write_pet_dicom(suv, SPACING_MM, ORIGIN_MM, tmp_path / name, SUBJECT, seed, PetHeader(**options))


# --- units and decay correction --------------------------------------------------------------

def test_bqml_start(tmp_path: Path) -> None:
    folder = _series(tmp_path, series_datetime=datetime(2024, 3, 5, 10, 30, 0, 500000),
                     uptake_s=3725.25)
    headers = _headers(folder)
    ours, sidecar, _ = _convert(folder, tmp_path)
    _close(ours, _suvbw_start(headers))
    assert sidecar["injection_datetime"] == "2024-03-05T09:27:55.250000"
    assert sidecar["decay_reference_datetime"] == "2024-03-05T10:30:00.500000"
    assert sidecar["uptake_time_s"] == pytest.approx(3725.25)
    assert sidecar["decay_factor"] == pytest.approx(2.0 ** (-3725.25 / 6586.2), rel=1e-12)
    assert sidecar["radionuclide_total_dose_bq"] == 3.02e8 and sidecar["patient_weight_kg"] == 81.3
    assert (sidecar["units"], sidecar["decay_correction"], sidecar["n_slices"]) == ("BQML", "START", 6)
    assert sidecar["series_instance_uid"] == headers[0].SeriesInstanceUID


def test_start_uses_earliest_acquisition_when_series_time_is_later(tmp_path: Path) -> None:
    folder = _series(tmp_path, overrides={"SeriesTime": "113000"})  # post-processed series
    headers = _headers(folder)
    ours, sidecar, _ = _convert(folder, tmp_path)
    ds = headers[0]
    earliest = min(_seconds(h.AcquisitionDate, h.AcquisitionTime) for h in headers)
    dose = _decayed_dose(ds, earliest, _dt_seconds(_isotope(ds).RadiopharmaceuticalStartDateTime))
    _close(ours, np.stack([_rescaled(h) for h in headers]) * float(ds.PatientWeight) * 1000.0 / dose)
    assert sidecar["decay_reference"].startswith("earliest acquisition")
    assert sidecar["decay_reference_datetime"] == "2024-03-05T10:30:00"


def test_start_without_acquisition_dates_uses_series_time(tmp_path: Path) -> None:
    folder = _series(tmp_path, omit=("AcquisitionDate",))
    ours, sidecar, _ = _convert(folder, tmp_path)
    _close(ours, _suvbw_start(_headers(folder)))
    assert sidecar["decay_reference"] == "SeriesDate/SeriesTime (no acquisition date-times to compare)"
    with pytest.raises(InputError, match=r"NONE and AcquisitionDateTime \(0008,002A\) or Acq"):
        convert_dicom_to_suv(_series(tmp_path, "none", decay_correction="NONE",
                                     omit=("AcquisitionTime",)), tmp_path / "x.nii.gz")


def test_gml_of_another_normalisation_is_refused(tmp_path: Path) -> None:
    folder = _series(tmp_path, units="GML", overrides={"SUVType": "LBM"})
    with pytest.raises(InputError, match=r"SUVType \(0054,1006\) is LBM"):
        convert_dicom_to_suv(folder, tmp_path / "x.nii.gz")


def test_bqml_admin(tmp_path: Path) -> None:
    folder = _series(tmp_path, decay_correction="ADMIN")
    headers = _headers(folder)
    ours, sidecar, _ = _convert(folder, tmp_path)
    hand = np.stack([_rescaled(h) for h in headers]) * float(headers[0].PatientWeight) * 1000.0 / float(
        _isotope(headers[0]).RadionuclideTotalDose)
    _close(ours, hand)
    assert sidecar["decay_factor"] == 1.0 and "injection_datetime" not in sidecar


def test_bqml_none_decays_each_slice_to_its_acquisition(tmp_path: Path) -> None:
    folder = _series(tmp_path, decay_correction="NONE", slices_per_bed=2, frame_duration_s=150.0)
    headers = _headers(folder)
    ours, sidecar, _ = _convert(folder, tmp_path)
    injection = _dt_seconds(_isotope(headers[0]).RadiopharmaceuticalStartDateTime)
    hand = np.stack([_rescaled(h) * float(h.PatientWeight) * 1000.0
                     / _decayed_dose(h, _seconds(h.AcquisitionDate, h.AcquisitionTime), injection)
                     for h in headers])
    _close(ours, hand)
    assert sidecar["decay_factor"]["min"] == pytest.approx(2.0 ** (-(3600 + 300) / 6586.2))
    assert sidecar["decay_factor"]["max"] == pytest.approx(2.0 ** (-3600 / 6586.2))
    assert sidecar["uptake_time_s"] == {"min": 3600.0, "max": 3900.0}


def test_gml_is_suvbw(tmp_path: Path) -> None:
    folder = _series(tmp_path, units="GML")
    headers = _headers(folder)
    ours, sidecar, _ = _convert(folder, tmp_path)
    _close(ours, np.stack([_rescaled(h) for h in headers]))
    assert "decay_factor" not in sidecar and sidecar["units"] == "GML"


def test_cnts_with_philips_factor(tmp_path: Path) -> None:
    folder = _series(tmp_path, units="CNTS")
    headers = _headers(folder)
    ours, sidecar, _ = _convert(folder, tmp_path)
    factors = [float(h[0x7053, 0x1000].value) for h in headers]
    assert headers[0][0x7053, 0x0010].value == "Philips PET Private Group"
    _close(ours, np.stack([_rescaled(h) * f for h, f in zip(headers, factors)]))
    assert sidecar["philips_suv_scale_factor"] == pytest.approx(factors[0])
    # the factor makes SUVbw: the same as the BQML series of the same activity
    bqml, _, _ = _convert(_series(tmp_path, "bqml"), tmp_path)
    np.testing.assert_allclose(ours, bqml, rtol=1e-3, atol=1e-3 * bqml.max())


def test_cnts_without_philips_factor_is_an_error(tmp_path: Path) -> None:
    folder = _series(tmp_path, units="CNTS", philips_suv_factor=False)
    with pytest.raises(InputError, match=r"CNTS.*7053,1000") as info:
        convert_dicom_to_suv(folder, tmp_path / "x.nii.gz")
    assert not (tmp_path / "x.nii.gz").exists() and "\n" not in str(info.value)


@pytest.mark.parametrize("keyword, value, pattern", [
    ("Units", "PROPCNTS", r"Units \(0054,1001\) is PROPCNTS"),
    ("DecayCorrection", "FRAME", r"DecayCorrection \(0054,1102\) is FRAME"),
    ("PatientWeight", "0", r"PatientWeight \(0010,1030\) is 0, it must be a positive number"),
    ("SeriesTime", "091500", r"uptake time of -15.0 min"),
    ("RadionuclideTotalDose", "-5", r"RadionuclideTotalDose \(0018,1074\).* must be a positive number"),
    ("RadionuclideTotalDose", "370", r"RadionuclideTotalDose \(0018,1074\) is 370 Bq, not an injected activity"),
    ("RadionuclideTotalDose", "3.7e10", r"is 3.7e\+10 Bq, not an injected activity between 1 MBq and 2 GBq"),
    ("CorrectedImage", ["DECY", "NORM"], r"CorrectedImage \(0028,0051\) is DECY\\NORM without ATTN"),
    ("CorrectedImage", ["ATTN", "NORM"], r"CorrectedImage .* but DecayCorrection .* is START"),
])
def test_bad_values(tmp_path: Path, keyword: str, value: str, pattern: str) -> None:
    folder = _series(tmp_path, overrides={keyword: value})
    with pytest.raises(InputError, match=pattern):
        convert_dicom_to_suv(folder, tmp_path / "x.nii.gz")


# --- injection date and time zones -----------------------------------------------------------

def test_midnight_crossing_with_start_time_only(tmp_path: Path) -> None:
    folder = _series(tmp_path, series_datetime=datetime(2024, 3, 6, 0, 20), uptake_s=3600.0,
                     injection_datetime_tag=False)
    headers = _headers(folder)
    ds = headers[0]
    assert "RadiopharmaceuticalStartDateTime" not in _isotope(ds)
    assert _isotope(ds).RadiopharmaceuticalStartTime == "232000" and ds.SeriesDate == "20240306"
    ours, sidecar, _ = _convert(folder, tmp_path)
    injection = _seconds(ds.SeriesDate, _isotope(ds).RadiopharmaceuticalStartTime) - 86400.0
    dose = _decayed_dose(ds, _seconds(ds.SeriesDate, ds.SeriesTime), injection)
    _close(ours, np.stack([_rescaled(h) for h in headers]) * float(ds.PatientWeight) * 1000.0 / dose)
    assert sidecar["injection_datetime"] == "2024-03-05T23:20:00"
    assert "minus one day" in sidecar["injection_datetime_source"]
    assert sidecar["uptake_time_s"] == 3600.0


def test_start_time_only_same_day_and_long_half_life(tmp_path: Path) -> None:
    folder = _series(tmp_path, injection_datetime_tag=False)
    ours, sidecar, _ = _convert(folder, tmp_path)
    _close(ours, _suvbw_start(_headers(_series(tmp_path, "ref"))))
    assert sidecar["injection_datetime_source"].endswith("on SeriesDate (0008,0021)")
    zr89 = _series(tmp_path, "zr", injection_datetime_tag=False, half_life_s=282276.0)
    with pytest.raises(InputError, match=r"RadiopharmaceuticalStartDateTime \(0018,1078\) is needed"):
        convert_dicom_to_suv(zr89, tmp_path / "x.nii.gz")


@pytest.mark.parametrize("injection_offset", ["+0000", "-0500", "+0530"])
def test_start_datetime_with_utc_offsets(tmp_path: Path, injection_offset: str) -> None:
    folder = _series(tmp_path, utc_offset="+0100", injection_utc_offset=injection_offset,
                     series_datetime=datetime(2024, 3, 5, 0, 45, 10, 250000), uptake_s=4000.5)
    headers = _headers(folder)
    ds = headers[0]
    start = _isotope(ds).RadiopharmaceuticalStartDateTime
    assert start.endswith(injection_offset) and ds.TimezoneOffsetFromUTC == "+0100"
    dose = _decayed_dose(ds, _seconds(ds.SeriesDate, ds.SeriesTime, ds.TimezoneOffsetFromUTC),
                         _dt_seconds(start))
    ours, sidecar, _ = _convert(folder, tmp_path)
    _close(ours, np.stack([_rescaled(h) for h in headers]) * float(ds.PatientWeight) * 1000.0 / dose)
    assert sidecar["uptake_time_s"] == pytest.approx(4000.5)
    assert sidecar["decay_reference_datetime"] == "2024-03-05T00:45:10.250000+01:00"


def test_offset_on_one_side_only_is_an_error(tmp_path: Path) -> None:
    folder = _series(tmp_path, injection_utc_offset="+0000")
    with pytest.raises(InputError, match=r"UTC offset.*TimezoneOffsetFromUTC \(0008,0201\)"):
        convert_dicom_to_suv(folder, tmp_path / "x.nii.gz")


# --- normalisations --------------------------------------------------------------------------

def _lbm_james(w: float, h_cm: float, sex: str) -> float:
    return 1.10 * w - 128.0 * (w / h_cm) ** 2 if sex == "M" else 1.07 * w - 148.0 * (w / h_cm) ** 2


def _lbm_janma(w: float, h_cm: float, sex: str) -> float:
    bmi = w / (h_cm / 100.0) ** 2
    return 9270.0 * w / (6680.0 + 216.0 * bmi) if sex == "M" else 9270.0 * w / (8780.0 + 244.0 * bmi)


HAND = {  # grams, or cm2 for bsa; W in kg, H in cm
    "bw": lambda w, h, s: 1000.0 * w,
    "lbm": lambda w, h, s: 1000.0 * _lbm_james(w, h, s),
    "lbm-janma": lambda w, h, s: 1000.0 * _lbm_janma(w, h, s),
    "bsa": lambda w, h, s: 1.0e4 * 0.007184 * w ** 0.425 * h ** 0.725,
    "ibw": lambda w, h, s: 1000.0 * ((50.0 if s == "M" else 45.5) + 2.3 * (h / 2.54 - 60.0)),
}


@pytest.mark.parametrize("sex", ["M", "F"])
@pytest.mark.parametrize("norm", sorted(HAND))
def test_normalisations(tmp_path: Path, norm: str, sex: str) -> None:
    folder = _series(tmp_path, sex=sex, weight_kg=74.6, height_m=1.69)
    headers = _headers(folder)
    ds = headers[0]
    quantity = HAND[norm](float(ds.PatientWeight), float(ds.PatientSize) * 100.0, ds.PatientSex)
    ours, sidecar, _ = _convert(folder, tmp_path, norm)
    _close(ours, _suvbw_start(headers) * quantity / (float(ds.PatientWeight) * 1000.0))
    assert sidecar["normalisation"]["value"] == pytest.approx(quantity, rel=1e-12)
    assert sidecar["suv_unit"] == ("cm2/ml" if norm == "bsa" else "g/ml")
    if norm != "bw":
        assert sidecar["patient_size_m"] == 1.69
    gml, _, _ = _convert(_series(tmp_path, "gml", units="GML", sex=sex, weight_kg=74.6,
                                 height_m=1.69), tmp_path, norm)  # SUVbw rescaled to this norm
    np.testing.assert_allclose(gml, ours, rtol=1e-3, atol=1e-3 * ours.max())


@pytest.mark.parametrize("norm, omit, label", [
    ("bw", "PatientWeight", "PatientWeight (0010,1030)"),
    ("lbm", "PatientSize", "PatientSize (0010,1020)"),
    ("lbm-janma", "PatientSex", "PatientSex (0010,0040)"),
    ("bsa", "PatientWeight", "PatientWeight (0010,1030)"),
    ("ibw", "PatientSize", "PatientSize (0010,1020)"),
    ("bw", "RadionuclideTotalDose", "RadionuclideTotalDose (0018,1074)"),
    ("bw", "RadionuclideHalfLife", "RadionuclideHalfLife (0018,1075)"),
    ("bw", "Units", "Units (0054,1001)"),
])
def test_missing_tag_is_named(tmp_path: Path, norm: str, omit: str, label: str) -> None:
    folder = _series(tmp_path, omit=(omit,))
    with pytest.raises(InputError) as info:
        convert_dicom_to_suv(folder, tmp_path / "x.nii.gz", norm)
    message = str(info.value)
    assert label in message and "missing" in message and str(folder) in message
    assert "\n" not in message and not (tmp_path / "x.nii.gz").exists()


def test_contradictory_body_tags(tmp_path: Path) -> None:
    for name, overrides, norm, pattern in (
            ("cm", {"PatientSize": "175"}, "lbm", r"not a height in metres"),
            ("other", {"PatientSex": "O"}, "ibw", r"PatientSex \(0010,0040\) is O"),
            ("heavy", {"PatientWeight": "300"}, "lbm", r"outside its range")):  # James < 0
        folder = _series(tmp_path, name, overrides=overrides)
        with pytest.raises(InputError, match=pattern):
            convert_dicom_to_suv(folder, tmp_path / "x.nii.gz", norm)
    with pytest.raises(InputError, match="unknown SUV normalisation 'sul'"):
        convert_dicom_to_suv(_series(tmp_path), tmp_path / "x.nii.gz", "sul")


# --- files, geometry, sidecar ----------------------------------------------------------------

def test_shuffled_files_geometry_and_sidecar_without_identifiers(tmp_path: Path) -> None:
    folder = _series(tmp_path, n_slices=9, slices_per_bed=4)
    reference, _, _ = _convert(folder, tmp_path)
    rng = np.random.default_rng(5)
    for path in rng.permutation(sorted(folder.iterdir())):
        path.rename(folder / f"z{rng.integers(1e9)}")
    ours, sidecar, image = _convert(folder, tmp_path)
    np.testing.assert_array_equal(ours, reference)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    plain = reader.Execute()
    for ours_value, plain_value in ((image.GetOrigin(), plain.GetOrigin()),
                                    (image.GetSpacing(), plain.GetSpacing()),
                                    (image.GetDirection(), plain.GetDirection())):
        np.testing.assert_allclose(ours_value, plain_value, atol=1e-5)
    assert image.GetPixelID() == sitk.sitkFloat32
    text = (tmp_path / "suv_bw.json").read_text()
    assert SUBJECT not in text and "Patient" + "Name" not in text and "BirthDate" not in text
    assert not {"PatientID (0010,0020)", "PatientName (0010,0010)"} & set(sidecar["tags_used"])
    assert sidecar["software"]["name"] == "biomarkers" and sidecar["software"]["version"]


def test_same_inputs_byte_identical_series(tmp_path: Path) -> None:
    a, b = _series(tmp_path, "a", seed=4), _series(tmp_path, "b", seed=4)
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    assert all((a / p.name).read_bytes() == (b / p.name).read_bytes() for p in a.iterdir())
    assert (a / "PT0001.dcm").read_bytes() != (_series(tmp_path, "c", seed=5) / "PT0001.dcm").read_bytes()


def test_simulated_cohort_dicom_round_trip(tmp_path: Path) -> None:
    sheet = simulate_cohort(tmp_path / "cohort", n_subjects=2, n_centers=2, seed=3,
                            validation_centers=1, dicom=True)
    subjects = pd.read_csv(sheet, sep="\t")
    assert list(subjects.columns)[-1] == "pet_dicom"
    for _, row in subjects.iterrows():
        nifti = sitk.ReadImage(str(sheet.parent / row["pet"]))
        out = tmp_path / f"{row['subject_id']}.nii.gz"
        sidecar = convert_dicom_to_suv(sheet.parent / row["pet_dicom"], out, "bw")
        ours = sitk.ReadImage(str(out))
        assert sidecar["n_slices"] == nifti.GetSize()[2] and row["pet_dicom"].startswith("images/")
        assert ours.GetSize() == nifti.GetSize()
        for a, b in ((ours.GetOrigin(), nifti.GetOrigin()), (ours.GetSpacing(), nifti.GetSpacing()),
                     (ours.GetDirection(), nifti.GetDirection())):
            np.testing.assert_allclose(a, b, atol=1e-6)
        truth, back = sitk.GetArrayFromImage(nifti), sitk.GetArrayFromImage(ours)
        slice_max = np.abs(truth).reshape(truth.shape[0], -1).max(axis=1)
        error = np.abs(back - truth).reshape(truth.shape[0], -1).max(axis=1)
        assert np.all(error <= 1e-3 * np.maximum(slice_max, 1e-12))
        assert math.isclose(sidecar["uptake_time_s"], 3600.0)
