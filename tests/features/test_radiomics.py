"""Our per-lesion wrapper gives exactly pyradiomics' own numbers."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from radiomics import featureextractor

from biomarkers.errors import InputError
from biomarkers.features.lesions import lesion_features
from biomarkers.features.radiomics import SHIPPED_PARAMS, make_extractor

PARAMS = SHIPPED_PARAMS["pet"]


@pytest.fixture
def lesion_case(tmp_path):
    rng = np.random.default_rng(11)
    suv = rng.gamma(4.0, 0.25, size=(30, 32, 34)).astype(np.float32)
    labels = np.zeros(suv.shape, np.uint16)
    labels[5:12, 6:14, 8:15] = 1
    labels[18:26, 15:25, 20:30] = 2
    suv[labels == 1] += rng.uniform(3, 9, size=(labels == 1).sum())
    suv[labels == 2] += rng.uniform(2, 5, size=(labels == 2).sum())
    paths = []
    for name, arr in (("pet", suv), ("mask", labels)):
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing((3.0, 3.0, 4.0))
        img.SetOrigin((-40.0, 12.5, 300.0))
        path = tmp_path / f"{name}.nii.gz"
        sitk.WriteImage(img, str(path))
        paths.append(path)
    return paths


def test_wrapper_equals_plain_pyradiomics(lesion_case):
    pet, mask = lesion_case
    table, meta = lesion_features(pet, mask, "sub-x", "pet")
    assert list(table["lesion_id"]) == [1, 2]
    extractor = featureextractor.RadiomicsFeatureExtractor(str(PARAMS))
    for _, row in table.iterrows():
        plain = extractor.execute(str(pet), str(mask), label=int(row["lesion_id"]))
        values = {k: float(v) for k, v in plain.items() if not k.startswith("diagnostics_")}
        assert len(values) > 1000  # shape, then 7 classes on original, 2 LoG and 8 wavelet images
        for key, value in values.items():
            assert row[key] == value, key  # exactly, not approximately
    assert meta["radiomics"]["settings"]["binWidth"] == 0.25
    assert (table["subject_id"] == "sub-x").all()


def test_mask_on_another_grid_is_an_error(lesion_case, tmp_path):
    pet, mask = lesion_case
    img = sitk.ReadImage(str(mask))
    img.SetSpacing((2.0, 3.0, 4.0))
    moved = tmp_path / "moved.nii.gz"
    sitk.WriteImage(img, str(moved))
    with pytest.raises(InputError, match=r"subject sub-x, file .*moved.nii.gz: geometry differs"):
        lesion_features(pet, moved, "sub-x", PARAMS)


def test_shipped_parameter_files_are_valid_and_recorded(tmp_path):
    # pyradiomics validates each file against its schema when it loads it.
    pet = make_extractor("pet")
    assert set(pet.enabledImagetypes) == {"Original", "LoG", "Wavelet"}
    assert pet.settings["binWidth"] == 0.25 and list(pet.settings["resampledPixelSpacing"]) == [4, 4, 4]
    ct = make_extractor("ct")
    assert ct.settings["binWidth"] == 25 and list(ct.settings["resampledPixelSpacing"]) == [2, 2, 2]
    assert set(ct.enabledFeatures) == set(pet.enabledFeatures) == {"shape", "firstorder", "glcm", "glrlm", "glszm",
                                                                   "gldm", "ngtdm"}


def test_ct_parameter_file_on_a_ct_lesion(tmp_path):
    rng = np.random.default_rng(2)
    hu = rng.normal(40, 12, size=(24, 40, 40)).astype(np.int16)  # soft tissue
    labels = np.zeros(hu.shape, np.uint8)
    labels[8:16, 12:26, 14:28] = 1
    hu[labels == 1] = rng.normal(90, 30, size=int(labels.sum())).astype(np.int16)  # enhancing lesion
    paths = []
    for name, arr in (("ct", hu), ("mask", labels)):
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing((0.98, 0.98, 3.0))
        paths.append(tmp_path / f"{name}.nii.gz")
        sitk.WriteImage(img, str(paths[-1]))
    table, meta = lesion_features(*paths, "sub-ct", "ct", image_kind="ct")
    row = table.iloc[0]
    assert row["original_firstorder_Mean"] == pytest.approx(hu[labels == 1].mean(), abs=3)  # after 2 mm resampling
    assert row["original_shape_VoxelVolume"] == pytest.approx(labels.sum() * 0.98 * 0.98 * 3.0, rel=0.1)
    assert meta["radiomics"]["params_file"]["name"] == "ct.yaml"


def test_lesion_lost_in_resampling_keeps_its_pet_metrics_or_is_skipped():
    # Two 1.5 mm voxels vanish when pyradiomics resamples the mask to 4 mm: by default the lesion
    # keeps its PET metrics with its texture missing (the reason recorded), or (perturbed images)
    # it is listed as unusable and left out, or (asked for) a one-line error naming the label.
    from biomarkers.features.lesions import image_lesion_features

    suv = 1.0 + np.random.default_rng(0).random((20, 20, 20)).astype(np.float32)
    labels = np.zeros(suv.shape, np.uint8)
    labels[10, 10, 10:12] = 1
    labels[4:8, 4:8, 4:8] = 2
    image = sitk.GetImageFromArray(suv)
    image.SetSpacing((1.5, 1.5, 1.5))
    mask = sitk.GetImageFromArray(labels)
    mask.CopyInformation(image)
    with pytest.raises(InputError, match="subject s, file m.nii.gz: pyradiomics cannot use lesion label 1 "
                                         r"\(no voxel left after resampling"):
        image_lesion_features(image, mask, "s", "pet", "m.nii.gz", unusable="raise")
    table, settings = image_lesion_features(image, mask, "s", "pet", unusable="drop")
    assert list(table["lesion_id"]) == [2] and settings["unusable_lesions"] == [1]
    table, settings = image_lesion_features(image, mask, "s", "pet")
    assert list(table["lesion_id"]) == [1, 2]
    assert list(settings["texture_missing"]) == ["1"] and "no voxel left" in settings["texture_missing"]["1"]
    small, big = table.iloc[0], table.iloc[1]
    assert small["mtv_ml"] == pytest.approx(2 * 1.5**3 / 1000) and small["suv_max"] == suv[10, 10, 10:12].max()
    texture = [c for c in table.columns if c.startswith("original_")]
    assert len(texture) > 90 and small[texture].isna().all() and big[texture].notna().all()


def test_features_cli_keeps_a_lesion_too_thin_for_texture(tmp_path):
    # A real case's shape: a 13-voxel lesion (0.52 mL, above min_volume_ml 0.5) on a centre with
    # 3.5 x 3.5 x 3.27 mm voxels is a line once pyradiomics resamples it to 4 mm. The study used to
    # stop there; now the lesion keeps its PET metrics, its texture is missing, and one warning
    # line names the subject, the file and the label.
    from typer.testing import CliRunner

    from biomarkers.cli import app

    suv = (1.0 + np.random.default_rng(0).random((30, 30, 30))).astype(np.float32)
    labels = np.zeros(suv.shape, np.uint8)
    labels[15, 15, 9:22], suv[15, 15, 9:22] = 1, 6.0
    labels[5:12, 5:12, 5:12] = 2
    suv[5:12, 5:12, 5:12] += 4.0
    for array, name in ((suv, "pet"), (labels, "mask")):
        img = sitk.GetImageFromArray(array)
        img.SetSpacing((3.5, 3.5, 3.27))
        sitk.WriteImage(img, str(tmp_path / f"{name}.nii.gz"))
    out = tmp_path / "lesions.parquet"
    result = CliRunner().invoke(app, ["features", "--image", str(tmp_path / "pet.nii.gz"), "--mask",
                                      str(tmp_path / "mask.nii.gz"), "--params", "pet", "--subject-id", "sub-7",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    warning = result.stderr.strip()
    assert warning.count("\n") == 0 and "subject sub-7" in warning and "mask.nii.gz" in warning
    assert "lesion label(s) 1 (mask has too few dimensions" in warning
    table = pd.read_parquet(out)
    assert list(table["lesion_id"]) == [1, 2]
    assert table.loc[0, "mtv_ml"] == pytest.approx(13 * 3.5 * 3.5 * 3.27 / 1000) and table.loc[0, "suv_max"] == 6.0
    assert np.isnan(table.loc[0, "original_glcm_Contrast"]) and np.isfinite(table.loc[1, "original_glcm_Contrast"])
