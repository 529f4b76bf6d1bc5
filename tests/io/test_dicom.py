"""DICOM series reading: file discovery, series grouping, slice order, geometry, DA/TM/DT values."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from biomarkers.errors import InputError
from biomarkers.io.dicom import DicomTagError, read_pixels, read_series, tag_label, to_image
from biomarkers.io.dicom_time import parse_da, parse_dt, parse_tm, parse_utc_offset
from biomarkers.simulate.dicom import PetHeader, write_pet_dicom

SPACING_MM = (2.5, 3.0, 4.0)
ORIGIN_MM = (-20.0, 15.5, -7.25)


def _oblique_direction() -> tuple[float, ...]:
    """A proper rotation (30 degrees about z, then 20 about x), SimpleITK order."""
    a, b = np.deg2rad(30.0), np.deg2rad(20.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return tuple((rx @ rz).ravel())


def _series(folder: Path, seed: int = 0, n_slices: int = 7, **options) -> tuple[Path, np.ndarray]:
    suv = np.random.default_rng(seed).gamma(2.0, 1.5, (n_slices, 6, 5))
    direction = options.pop("direction", None)
    return write_pet_dicom(suv, SPACING_MM, ORIGIN_MM, folder, "sub-0001", seed, PetHeader(**options),
                           direction=direction), suv


def test_geometry_and_values_match_simpleitk(tmp_path: Path) -> None:
    folder, _ = _series(tmp_path / "pet", direction=_oblique_direction(), slices_per_bed=3)
    series = read_series(folder)
    ours = to_image(read_pixels(series), series)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    plain = reader.Execute()
    np.testing.assert_allclose(ours.GetOrigin(), plain.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(ours.GetSpacing(), plain.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(ours.GetDirection(), plain.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(ours.GetOrigin(), ORIGIN_MM, atol=1e-9)
    np.testing.assert_allclose(ours.GetSpacing(), SPACING_MM, atol=1e-9)
    np.testing.assert_allclose(sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(plain),
                               rtol=1e-12, atol=0)


def test_reversed_and_shuffled_files_same_volume(tmp_path: Path) -> None:
    flip = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, -1.0)  # rows down, slices head to feet
    folder, suv = _series(tmp_path / "pet", direction=flip)
    reference = read_pixels(read_series(folder))
    rng = np.random.default_rng(3)
    mixed = tmp_path / "mixed"
    (mixed / "deep" / "er").mkdir(parents=True)
    for k, path in enumerate(rng.permutation(sorted(folder.iterdir()))):
        target = mixed / ("deep/er" if k % 3 == 0 else "") / f"{rng.integers(1e9):x}"
        path.rename(target)
    (mixed / "README.txt").write_text("not DICOM")
    (mixed / "deep" / "junk.dcm").write_bytes(b"\0" * 300)
    series = read_series(mixed)
    np.testing.assert_array_equal(read_pixels(series), reference)
    positions = [float(ds.ImagePositionPatient[2]) for ds in series.headers]
    assert positions == sorted(positions, reverse=True)  # ascending along the normal (-z)
    assert series.direction == flip and series.spacing_mm == pytest.approx(SPACING_MM)
    assert series.origin_mm == pytest.approx(ORIGIN_MM)
    ratio = reference / suv  # Bq/ml per SUV: one constant under DecayCorrection START
    np.testing.assert_allclose(ratio, ratio.mean(), rtol=1e-3)


def test_two_series_listed(tmp_path: Path) -> None:
    _series(tmp_path / "both" / "a", seed=1, series_description="PET AC")
    _series(tmp_path / "both" / "b", seed=2, n_slices=4, series_description="PET NAC")
    with pytest.raises(InputError) as info:
        read_series(tmp_path / "both")
    message = str(info.value)
    uids = {pydicom.dcmread(next((tmp_path / "both" / s).iterdir())).SeriesInstanceUID for s in "ab"}
    assert all(uid in message for uid in uids)
    assert "'PET AC' (7 files)" in message and "'PET NAC' (4 files)" in message
    assert "\n" not in message


def test_no_pet_series(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="no PT DICOM series.*none"):
        read_series(tmp_path / "empty")
    with pytest.raises(InputError, match="does not exist"):
        read_series(tmp_path / "nowhere")


def test_missing_slice_and_uneven_gap(tmp_path: Path) -> None:
    folder, _ = _series(tmp_path / "pet")
    (folder / "PT0004.dcm").unlink()
    with pytest.raises(InputError, match=r"about 1 missing slice\(s\) between PT0003.dcm"):
        read_series(folder)
    folder, _ = _series(tmp_path / "uneven", overrides={})
    ds = pydicom.dcmread(folder / "PT0005.dcm")
    ds.ImagePositionPatient = [ORIGIN_MM[0], ORIGIN_MM[1], ORIGIN_MM[2] + 4 * 4.0 + 0.5]
    ds.save_as(folder / "PT0005.dcm")
    with pytest.raises(InputError, match="uneven slice gap"):
        read_series(folder)


def test_duplicate_position_and_missing_geometry_tags(tmp_path: Path) -> None:
    folder, _ = _series(tmp_path / "pet")
    ds = pydicom.dcmread(folder / "PT0002.dcm")
    ds.SOPInstanceUID = pydicom.uid.generate_uid(prefix=None, entropy_srcs=["dup"])
    ds.save_as(tmp_path / "pet" / "dup.dcm")
    with pytest.raises(InputError, match="same position"):
        read_series(folder)
    folder, _ = _series(tmp_path / "nopos", omit=("ImageOrientationPatient",))
    with pytest.raises(DicomTagError, match=r"ImageOrientationPatient \(0020,0037\) is missing"):
        read_series(folder)


def test_missing_rescale_slope(tmp_path: Path) -> None:
    folder, _ = _series(tmp_path / "pet")
    ds = pydicom.dcmread(folder / "PT0003.dcm")
    del ds.RescaleSlope
    ds.save_as(folder / "PT0003.dcm")
    with pytest.raises(DicomTagError, match=r"RescaleSlope \(0028,1053\) is missing") as info:
        read_pixels(read_series(folder))
    assert "PT0003.dcm" in str(info.value)


def test_date_time_values() -> None:
    path = Path("x.dcm")
    assert parse_da("20240305", "SeriesDate", path) == date(2024, 3, 5)
    assert parse_da("2024.03.05", "SeriesDate", path) == date(2024, 3, 5)
    assert parse_tm("1030", "SeriesTime", path) == timedelta(hours=10, minutes=30)
    assert parse_tm("103000.25", "SeriesTime", path) == timedelta(hours=10, minutes=30, seconds=0.25)
    assert parse_tm("10:30:05.5", "SeriesTime", path) == timedelta(hours=10, minutes=30, seconds=5.5)
    assert parse_tm("07", "SeriesTime", path) == timedelta(hours=7)
    moment, zone = parse_dt("20240305233000.123456-0530", "AcquisitionDateTime", path)
    assert moment == datetime(2024, 3, 5, 23, 30, 0, 123456)
    assert zone == timezone(-timedelta(hours=5, minutes=30))
    assert parse_dt("202403052330", "AcquisitionDateTime", path) == (datetime(2024, 3, 5, 23, 30), None)
    assert parse_utc_offset("+0100", "TimezoneOffsetFromUTC", path) == timezone(timedelta(hours=1))
    for parser, text, keyword in ((parse_tm, "2530", "SeriesTime"), (parse_da, "2024035", "SeriesDate"),
                                  (parse_dt, "20240305", "RadiopharmaceuticalStartDateTime"),
                                  (parse_utc_offset, "0100", "TimezoneOffsetFromUTC")):
        with pytest.raises(DicomTagError, match=rf"{keyword} \(....,....\) is '{text}'"):
            parser(text, keyword, path)
    assert tag_label("PatientWeight") == "PatientWeight (0010,1030)"
