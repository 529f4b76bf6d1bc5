"""IBSI compliance on the IBSI digital phantom: our PET metrics, our IVH and pyradiomics.

Reference values, tolerances and the expected status of every pyradiomics feature are in
ibsi_phantom.py; docs/ibsi.md shows the same comparison as a table (bench/ibsi_table.py).
"""
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import stats

from biomarkers.features.ivh import IVH_COLUMNS, ivh_metrics
from biomarkers.features.lesions import lesion_features
from biomarkers.features.pet import PET_COLUMNS, pet_metrics
from ibsi_phantom import (MASK, OURS, PHANTOM, PYRADIOMICS, PYRADIOMICS_TRANSFORMS, REFERENCE,
                          SPACING_MM, write_phantom)

PARAMS = Path(__file__).with_name("ibsi_phantom_params.yaml")
ROI_VALUES = PHANTOM[MASK == 1].astype(np.float64)
PET_TAGS = [tag for tag, (column, *_) in OURS.items() if column in PET_COLUMNS]
IVH_TAGS = [tag for tag, (column, *_) in OURS.items() if column in IVH_COLUMNS]


def assert_status(tag: str, value: float, status: str) -> None:
    reference, tolerance = REFERENCE[tag]
    if status == "agrees":
        assert abs(value - reference) <= tolerance, f"{tag}: {value} not within {reference} +- {tolerance}"
    else:
        assert abs(value - reference) > tolerance, f"{tag}: {value} now agrees with {reference}; update the table"


def test_phantom_reproduces_published_intensity_statistics():
    # Plain numpy on the transcribed phantom, before it is trusted for anything else.
    assert ROI_VALUES.size * np.prod(SPACING_MM) == 592.0
    assert set(np.unique(ROI_VALUES)) == {1.0, 3.0, 4.0, 6.0}  # levels 2 and 5 absent
    for tag, value in (("stat_mean", ROI_VALUES.mean()), ("stat_var", ROI_VALUES.var()),
                       ("stat_skew", stats.skew(ROI_VALUES)), ("stat_kurt", stats.kurtosis(ROI_VALUES)),
                       ("stat_median", np.median(ROI_VALUES)), ("stat_energy", np.sum(ROI_VALUES**2))):
        assert_status(tag, value, "agrees")


def test_written_phantom_keeps_values_axes_and_spacing(tmp_path):
    image_path, mask_path = write_phantom(tmp_path)
    image, mask = sitk.ReadImage(str(image_path)), sitk.ReadImage(str(mask_path))
    assert image.GetSize() == (5, 4, 4)  # (x, y, z) as the manual describes the phantom
    assert image.GetSpacing() == mask.GetSpacing() == SPACING_MM
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), PHANTOM)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask), MASK)


@pytest.fixture(scope="module")
def our_pet_metrics():
    table = pet_metrics(PHANTOM.astype(np.float64), MASK.astype(np.int64), SPACING_MM)
    assert len(table) == 1
    return table.iloc[0]


@pytest.mark.parametrize("tag", PET_TAGS)
def test_pet_metrics_on_phantom(our_pet_metrics, tag):
    column, factor, status, _ = OURS[tag]
    assert_status(tag, our_pet_metrics[column] * factor, status)


def test_tlg_differs_from_integrated_intensity_only_by_the_volume(our_pet_metrics):
    # TLG uses the voxel-counting volume; IBSI's integrated intensity the mesh volume.
    assert our_pet_metrics["tlg"] == pytest.approx(our_pet_metrics["suv_mean"] * our_pet_metrics["mtv_ml"])
    mesh_volume_mm3 = REFERENCE["morph_volume"][0]
    assert_status("morph_integ_int", our_pet_metrics["suv_mean"] * mesh_volume_mm3, "agrees")


@pytest.mark.parametrize("tag", IVH_TAGS)
def test_ivh_on_phantom(tag):
    column, factor, status, _ = OURS[tag]
    assert_status(tag, ivh_metrics(ROI_VALUES)[column] * factor, status)


def test_ivh_ignores_voxel_order_and_shape():
    rng = np.random.default_rng(3)
    assert ivh_metrics(rng.permutation(ROI_VALUES).reshape(2, 37)) == ivh_metrics(ROI_VALUES)


def test_ivh_continuous_intensities_use_bin_centres():
    # SUV-like values: phantom level L -> 2 + 0.5 (L - 1) plus up to 0.2 of jitter, one voxel
    # exactly at the minimum. With 0.5-wide bins every voxel stays in its level's bin, so the
    # volume fractions are the phantom's and intensities are bin centres 2.25 + 0.5 (L - 1).
    rng = np.random.default_rng(7)
    suv = 2.0 + 0.5 * (ROI_VALUES - 1) + rng.uniform(0.0, 0.2, ROI_VALUES.size)
    suv[np.argmin(suv)] = 2.0
    discrete, continuous = ivh_metrics(ROI_VALUES), ivh_metrics(suv, bin_width=0.5)
    for name in ("ivh_v10", "ivh_v90", "ivh_v10_v90", "ivh_auc"):
        assert continuous[name] == pytest.approx(discrete[name])
    assert continuous["ivh_i10"] == pytest.approx(2.25 + 0.5 * (discrete["ivh_i10"] - 1))
    assert continuous["ivh_i90"] == pytest.approx(2.25 + 0.5 * (discrete["ivh_i90"] - 1))
    assert continuous["ivh_i10_i90"] == pytest.approx(0.5 * discrete["ivh_i10_i90"])


def test_ivh_intensity_above_the_top_level_when_it_holds_too_much_volume():
    values = np.array([1, 1, 2, 3, 3])  # 40 % of the volume at the highest level
    result = ivh_metrics(values)
    assert result["ivh_i10"] == 4.0  # no level of G holds at most 10 %: one step above
    assert result["ivh_i90"] == 2.0  # nu(2) = 0.6
    assert result["ivh_v10"] == pytest.approx(0.6)  # gamma(2) = 0.5 >= 0.1
    assert result["ivh_v90"] == pytest.approx(0.4)
    assert result["ivh_auc"] == pytest.approx(0.5 * ((1 + 0.6) / 2 + (0.6 + 0.4) / 2))


def test_ivh_single_level_has_zero_area_and_no_volume_fractions():
    result = ivh_metrics(np.full(8, 2.5), bin_width=0.1)
    assert result["ivh_auc"] == 0.0
    assert np.isnan(result["ivh_v10"]) and np.isnan(result["ivh_v10_v90"])
    assert result["ivh_i90"] == pytest.approx(2.55 + 0.1)


@pytest.mark.parametrize("values, bin_width, message", [
    (np.array([]), None, "at least one"),
    (np.array([1.0, np.nan]), None, "finite"),
    (np.array([1.0, 2.5]), None, "pass bin_width"),
    (np.array([1.0, 2.5]), 0.0, "positive"),
])
def test_ivh_rejects_bad_input(values, bin_width, message):
    with pytest.raises(ValueError, match=message):
        ivh_metrics(values, bin_width)


@pytest.fixture(scope="module")
def pyradiomics_row(tmp_path_factory):
    image_path, mask_path = write_phantom(tmp_path_factory.mktemp("ibsi"))
    table, meta = lesion_features(image_path, mask_path, "ibsi-phantom", PARAMS)
    assert list(table["lesion_id"]) == [1]
    assert meta["radiomics"]["settings"]["binWidth"] == 1
    return table.iloc[0]


@pytest.mark.parametrize("tag", sorted(PYRADIOMICS))
def test_pyradiomics_on_phantom(pyradiomics_row, tag):
    column, status, _ = PYRADIOMICS[tag]
    value = pyradiomics_row[column]
    assert_status(tag, value, status)
    if tag in PYRADIOMICS_TRANSFORMS:
        assert_status(tag, PYRADIOMICS_TRANSFORMS[tag](value), "agrees")


def test_pyradiomics_keeps_the_six_grey_levels(pyradiomics_row):
    # Uniformity of the binned histogram equals that of the raw levels only if no two levels
    # share a bin: sum of squared level frequencies.
    _, counts = np.unique(ROI_VALUES, return_counts=True)
    assert pyradiomics_row["original_firstorder_Uniformity"] == pytest.approx(np.sum((counts / counts.sum()) ** 2))
