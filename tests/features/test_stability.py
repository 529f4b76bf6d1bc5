"""Feature stability: ICC against published values and pingouin, perturbations, and the two verbs."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from biomarkers.cli import app
from biomarkers.errors import InputError
from biomarkers.features.icc import ICC_COLUMNS, ICC_KINDS, icc, icc_table, stability_band
from biomarkers.features.stability import (dilate_labels, erode_labels, extra_blur_sigma_mm, parse_perturbation,
                                           perturb, perturbed_lesion_features)
from biomarkers.io.atomic import read_parquet_metadata
from biomarkers.simulate.scanner import NOISE_SIGMA_VOXELS, REFERENCE_SUV

PARAMS = Path(__file__).with_name("pet_original_params.yaml")  # original image only: fast

# Shrout & Fleiss (1979, Psychol Bull 86:420), Table 2: 6 targets (rows) rated by 4 judges.
SHROUT_FLEISS = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8],
                          [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], dtype=float)


def image_pair(suv: np.ndarray, labels: np.ndarray, spacing=(4.0, 4.0, 4.0)) -> tuple[sitk.Image, sitk.Image]:
    image = sitk.GetImageFromArray(suv.astype(np.float32))
    image.SetSpacing(spacing)
    image.SetOrigin((-10.0, 5.0, 20.0))
    mask = sitk.GetImageFromArray(labels.astype(np.uint16))
    mask.CopyInformation(image)
    return image, mask


def blob_case(shape=(16, 18, 20)) -> tuple[np.ndarray, np.ndarray]:
    """Two cubic lesions (5 and 4 voxels wide) and a single-voxel one, on a background of SUV 1."""
    rng = np.random.default_rng(3)
    suv = 1.0 + 0.1 * rng.standard_normal(shape)
    labels = np.zeros(shape, np.uint16)
    labels[3:8, 3:8, 3:8] = 1
    labels[9:13, 10:14, 12:16] = 2
    labels[13, 3, 17] = 3
    suv[labels == 1] = 6.0 + rng.standard_normal(125)
    suv[labels == 2] = 4.0 + rng.standard_normal(64)
    suv[labels == 3] = 8.0
    return suv, labels


# --- ICC -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, published", [("ICC(1,1)", 0.17), ("ICC(2,1)", 0.29), ("ICC(3,1)", 0.71)])
def test_shrout_fleiss_table_2(kind, published):
    result = icc(SHROUT_FLEISS, kind)
    assert round(float(result.icc[0]), 2) == published
    assert result.ci_low[0] < result.icc[0] < result.ci_high[0]


def test_agrees_with_pingouin_including_confidence_intervals(monkeypatch):
    pg = pytest.importorskip("pingouin", minversion="0.7")  # 0.7 names the forms ICC(1,1), ICC(A,1), ICC(C,1)
    monkeypatch.setitem(pg.options, "round.column.CI95", None)  # pingouin rounds intervals to 2 decimals
    rng = np.random.default_rng(11)
    n, k = 14, 4
    between = np.array([0.2, 1.0, 3.0, 0.0, 1.5])
    values = (rng.normal(size=(n, 1, 5)) * between + rng.normal(size=(1, k, 5)) * 0.7
              + rng.normal(size=(n, k, 5)))
    names = {"ICC(1,1)": "ICC(1,1)", "ICC(2,1)": "ICC(A,1)", "ICC(3,1)": "ICC(C,1)"}
    ours = {kind: icc(values, kind) for kind in ICC_KINDS}
    for f in range(values.shape[2]):
        long = pd.DataFrame({"target": np.repeat(np.arange(n), k), "rater": np.tile(np.arange(k), n),
                             "score": values[:, :, f].ravel()})
        ref = pg.intraclass_corr(long, targets="target", raters="rater", ratings="score").set_index("Type")
        for kind, name in names.items():
            assert ours[kind].icc[f] == pytest.approx(ref.loc[name, "ICC"], abs=1e-10)
            low, high = ref.loc[name, "CI95"]
            assert ours[kind].ci_low[f] == pytest.approx(low, abs=1e-9)
            assert ours[kind].ci_high[f] == pytest.approx(high, abs=1e-9)


@pytest.mark.parametrize("kind", ICC_KINDS)
def test_identical_conditions_noise_and_constant_features(kind):
    rng = np.random.default_rng(5)
    truth = rng.normal(size=(30, 1, 3))
    values = np.concatenate([np.repeat(truth, 4, axis=1),            # every condition identical
                             rng.normal(size=(30, 4, 1)),           # pure noise
                             np.full((30, 4, 1), 2.5)], axis=2)     # no variance at all
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = icc(values, kind)
    np.testing.assert_array_equal(result.icc[:3], 1.0)
    np.testing.assert_array_equal(result.ci_low[:3], 1.0)
    assert abs(result.icc[3]) < 0.15 and result.ci_low[3] < 0 < result.ci_high[3]
    assert np.isnan(result.icc[4]) and np.isnan(result.ci_low[4]) and np.isnan(result.ci_high[4])


def test_pure_noise_gives_icc_near_zero_on_average():
    values = np.random.default_rng(8).normal(size=(60, 3, 200))
    result = icc(values)
    assert abs(np.mean(result.icc)) < 0.02
    coverage = np.mean((result.ci_low <= 0) & (0 <= result.ci_high))
    assert 0.9 <= coverage <= 1.0


def test_icc_argument_errors():
    with pytest.raises(ValueError, match="ICC kind"):
        icc(SHROUT_FLEISS, "ICC(1,k)")
    with pytest.raises(ValueError, match="at least 2"):
        icc(SHROUT_FLEISS[:1])


def test_koo_li_bands():
    bands = stability_band([0.2, 0.5, 0.74, 0.75, 0.89, 0.9, 1.0, np.nan])
    assert list(bands) == ["poor", "moderate", "moderate", "good", "good", "excellent", "excellent", "undefined"]


def test_icc_table_complete_cases_and_bookkeeping():
    rng = np.random.default_rng(2)
    rows = []
    for subject in ("s1", "s2"):
        for lesion in (1, 2, 3, 4):
            size = rng.uniform(1, 10)
            for condition in ("none", "erode", "noise:0.1"):
                if subject == "s2" and lesion == 4 and condition == "erode":
                    continue  # the lesion vanished under erosion
                rows.append({"subject_id": subject, "lesion_id": lesion, "perturbation": condition,
                             "zeta": size + rng.normal(0, 0.1), "centroid_x_mm": rng.normal(),
                             "label": "x", "alpha": rng.normal(), "constant": 1.0})
    long = pd.DataFrame(rows)
    long.loc[0, "alpha"] = np.nan  # s1 lesion 1 lacks one value of one feature
    table = icc_table(long)
    assert tuple(table.columns) == ICC_COLUMNS
    assert list(table["feature"]) == ["zeta", "alpha", "constant"]
    assert list(table["n_lesions"]) == [7, 6, 7] and set(table["n_conditions"]) == {3}
    assert table.attrs == {"n_targets": 8, "n_complete": 7}
    zeta = table.set_index("feature").loc["zeta"]
    assert zeta["icc"] > 0.99 and zeta["stability"] == "excellent" and zeta["ci_low"] < zeta["icc"]
    assert np.isnan(table.set_index("feature").loc["constant", "icc"])
    complete = long[~((long["subject_id"] == "s2") & (long["lesion_id"] == 4))]
    values = complete.pivot_table(index=["subject_id", "lesion_id"], columns="perturbation", values="zeta")
    assert zeta["icc"] == pytest.approx(icc(values.to_numpy()).icc[0], rel=1e-12)
    with pytest.raises(InputError, match="duplicate.*subject_id=s1 lesion_id=1 perturbation=none"):
        icc_table(pd.concat([long, long]))


# --- perturbations ---------------------------------------------------------------------------

def test_erosion_of_a_cube_and_single_voxel():
    labels = np.zeros((9, 9, 9), np.uint16)
    labels[2:7, 2:7, 2:7] = 4
    labels[0, 0, 8] = 7
    eroded = erode_labels(labels)
    expected = np.zeros_like(labels)
    expected[3:6, 3:6, 3:6] = 4
    np.testing.assert_array_equal(eroded, expected)  # 5x5x5 -> 3x3x3, the single voxel is gone
    assert eroded.dtype == labels.dtype


def test_dilation_never_overwrites_and_lower_label_wins():
    labels = np.zeros((7, 7, 11), np.uint16)
    labels[2:5, 2:5, 2:5] = 3   # x 2..4
    labels[2:5, 2:5, 6:9] = 2   # x 6..8: x = 5 is one background voxel between them
    dilated = dilate_labels(labels)
    assert np.all(dilated[labels > 0] == labels[labels > 0])
    assert np.all(dilated[2:5, 2:5, 5] == 2)  # reached by both, taken by the lower label
    assert np.count_nonzero(dilated == 3) == 27 + 5 * 9  # grows on 5 faces, not into the shared gap
    touching = np.zeros((5, 5, 6), np.uint8)
    touching[1:4, 1:4, 1:3], touching[1:4, 1:4, 3:5] = 5, 1  # face to face
    dilated = dilate_labels(touching)
    assert np.all(dilated[touching > 0] == touching[touching > 0])
    single = np.zeros((5, 5, 5), np.uint8)
    single[2, 2, 2] = 1
    assert np.count_nonzero(dilate_labels(single)) == 7  # the 6-connected cross


def test_parse_perturbation():
    assert parse_perturbation(" erode ").spec == "erode"
    assert parse_perturbation("noise:.12").spec == "noise:0.12"
    p = parse_perturbation("resolution:8:5x5.0x4")
    assert (p.fwhm_mm, p.spacing_mm, p.spec) == (8.0, (5.0, 5.0, 4.0), "resolution:8:5x5x4")
    for bad in ("blur", "noise", "noise:-1", "noise:0", "noise:abc", "resolution:8:5x5", "none",
                "resolution:8:0x5x4"):
        with pytest.raises(ValueError, match=f"bad perturbation '{bad}'"):
            parse_perturbation(bad)


def test_noise_is_reproducible_and_has_the_model_cv():
    shape = (40, 40, 40)
    image, mask = image_pair(np.full(shape, REFERENCE_SUV), np.zeros(shape))
    noisy = sitk.GetArrayFromImage(perturb(image, mask, "noise:0.12", seed=4, subject_id="sub-1")[0])
    again = sitk.GetArrayFromImage(perturb(image, mask, "noise:0.12", seed=4, subject_id="sub-1")[0])
    other = sitk.GetArrayFromImage(perturb(image, mask, "noise:0.12", seed=4, subject_id="sub-2")[0])
    np.testing.assert_array_equal(noisy, again)
    assert not np.array_equal(noisy, other)
    interior = noisy[4:-4, 4:-4, 4:-4]  # away from the reflected edge, the model's noise has unit variance
    assert interior.mean() == pytest.approx(REFERENCE_SUV, rel=0.005)
    assert interior.std() / interior.mean() == pytest.approx(0.12, rel=0.04)
    # spatially correlated: neighbours correlate as two Gaussians of NOISE_SIGMA_VOXELS overlap
    d = interior - interior.mean()
    rho = np.mean(d[:, :, 1:] * d[:, :, :-1]) / d.var()
    assert rho == pytest.approx(np.exp(-1.0 / (4.0 * NOISE_SIGMA_VOXELS ** 2)), abs=0.05)


def test_resolution_change_keeps_field_of_view_and_activity():
    suv = np.zeros((20, 22, 24))
    suv[8:12, 9:13, 10:14] = 10.0
    image, mask = image_pair(suv, suv > 5, spacing=(3.0, 3.0, 3.0))
    new_image, new_mask = perturb(image, mask, "resolution:8:5x5x4", source_fwhm_mm=6.0)
    assert new_image.GetSpacing() == pytest.approx((5.0, 5.0, 4.0))
    assert new_mask.GetSpacing() == new_image.GetSpacing() and new_mask.GetOrigin() == new_image.GetOrigin()
    assert new_mask.GetPixelID() == mask.GetPixelID()
    old_extent = np.array(image.GetSize()) * 3.0
    new_extent = np.array(new_image.GetSize()) * np.array(new_image.GetSpacing())
    assert np.all(np.abs(new_extent - old_extent) <= np.array(new_image.GetSpacing()) / 2 + 1e-9)

    def centre(img):
        return np.array(img.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in img.GetSize()]))
    np.testing.assert_allclose(centre(new_image), centre(image), atol=1e-9)
    old_total = suv.sum() * 27.0
    new_total = sitk.GetArrayFromImage(new_image).sum() * 100.0
    assert new_total == pytest.approx(old_total, rel=0.03)
    assert sitk.GetArrayFromImage(new_mask).sum() * 100.0 == pytest.approx(64 * 27.0, rel=0.35)
    assert extra_blur_sigma_mm(10.0, 6.0) == pytest.approx(8.0 / 2.3548, rel=1e-4)
    assert extra_blur_sigma_mm(5.0, 6.0) == 0.0  # a sharper target: resampled only
    with pytest.raises(ValueError, match="FWHM"):
        perturb(image, mask, "resolution:8:5x5x4")


def test_vanished_lesion_is_dropped_from_the_icc(tmp_path):
    suv, labels = blob_case()
    image, mask = image_pair(suv, labels)
    sitk.WriteImage(image, str(tmp_path / "pet.nii.gz"))
    sitk.WriteImage(mask, str(tmp_path / "mask.nii.gz"))
    long, meta = perturbed_lesion_features(tmp_path / "pet.nii.gz", tmp_path / "mask.nii.gz", "sub-1", None,
                                           ["erode", "dilate", "noise:0.1"], seed=1)
    assert list(long.columns[:3]) == ["subject_id", "lesion_id", "perturbation"]
    by_condition = long.groupby("perturbation", sort=False)["lesion_id"].apply(list).to_dict()
    assert by_condition == {"none": [1, 2, 3], "erode": [1, 2], "dilate": [1, 2, 3], "noise:0.1": [1, 2, 3]}
    eroded = long[(long["perturbation"] == "erode") & (long["lesion_id"] == 1)]
    assert eroded["mtv_ml"].item() == pytest.approx(27 * 0.064)
    assert meta["perturbations"] == ["erode", "dilate", "noise:0.1"] and meta["seed"] == 1
    table = icc_table(long).set_index("feature")
    assert "lesion_id" not in table.index and "centroid_x_mm" not in table.index
    assert set(table["n_lesions"]) == {2} and set(table["n_conditions"]) == {4}
    assert table.attrs == {"n_targets": 3, "n_complete": 2}


# --- command line ----------------------------------------------------------------------------

@pytest.fixture
def subject(tmp_path):
    suv, labels = blob_case()
    labels[labels == 3] = 0
    image, mask = image_pair(suv, labels)
    sitk.WriteImage(image, str(tmp_path / "sub-1_pet.nii.gz"))
    sitk.WriteImage(mask, str(tmp_path / "sub-1_mask.nii.gz"))
    return tmp_path, tmp_path / "sub-1_pet.nii.gz", tmp_path / "sub-1_mask.nii.gz"


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stderr.strip()


def test_stability_and_icc_verbs(subject):
    folder, pet, mask = subject
    out = folder / "sub-1_stability.parquet"
    code, err = invoke("stability", "--image", pet, "--mask", mask, "--params", PARAMS, "--subject-id", "sub-1",
                       "--perturb", "erode", "--perturb", "dilate", "--perturb", "noise:0.12",
                       "--perturb", "resolution:8:5x5x4", "--source-fwhm", 6, "--seed", 1, "--out", out)
    assert code == 0, err
    long = pd.read_parquet(out)
    assert set(long["perturbation"]) == {"none", "erode", "dilate", "noise:0.12", "resolution:8:5x5x4"}
    assert "original_glcm_Contrast" in long.columns and "suv_peak" in long.columns
    meta = read_parquet_metadata(out)
    assert meta["seed"] == 1 and meta["perturbations"][-1] == "resolution:8:5x5x4"
    assert meta["image"]["name"] == pet.name and meta["mask"]["name"] == mask.name
    json.dumps(meta)
    # a second subject: the same lesions imaged with a different background
    second = folder / "sub-2_stability.parquet"
    long.assign(subject_id="sub-2", suv_max=long["suv_max"] * 1.3).to_parquet(second)
    table_path = folder / "icc.tsv"
    code, err = invoke("icc", "--out", table_path, "--kind", "ICC(2,1)", out, second)
    assert code == 0, err
    table = pd.read_csv(table_path, sep="\t")
    assert tuple(table.columns) == ICC_COLUMNS
    assert set(table["n_lesions"]) == {4} and set(table["n_conditions"]) == {5}
    assert list(table["feature"][:6]) == ["suv_max", "suv_mean", "suv_peak", "suv_peak_global", "mtv_ml", "tlg"]
    finite = table.dropna(subset=["icc"])
    assert len(finite) > 50 and finite["icc"].between(-1, 1).all()
    positive = finite[finite["icc"] >= 0]  # McGraw & Wong's ICC(A,1) interval may miss a negative estimate
    assert (positive["ci_low"] <= positive["icc"]).all() and (positive["icc"] <= positive["ci_high"]).all()
    assert set(table["stability"].fillna("undefined")) <= {"poor", "moderate", "good", "excellent", "undefined"}


def test_bad_spec_is_a_one_line_error_and_writes_nothing(subject):
    folder, pet, mask = subject
    out = folder / "s.parquet"
    code, err = invoke("stability", "--image", pet, "--mask", mask, "--subject-id", "sub-1",
                       "--perturb", "erode", "--perturb", "blur:3", "--out", out)
    assert code == 1 and len(err.splitlines()) == 1
    assert "blur:3" in err and "erode, dilate, noise:CV" in err
    assert not out.exists() and not list(folder.glob(".s.parquet*"))


def test_missing_mask_and_other_grid_name_subject_and_file(subject):
    folder, pet, mask = subject
    out = folder / "s.parquet"
    code, err = invoke("stability", "--image", pet, "--mask", folder / "gone.nii.gz", "--subject-id", "sub-1",
                       "--perturb", "erode", "--out", out)
    assert code == 1 and len(err.splitlines()) == 1
    assert "subject sub-1" in err and "gone.nii.gz" in err and "does not exist" in err
    other = sitk.ReadImage(str(mask))
    other.SetSpacing((4.0, 4.0, 3.0))
    sitk.WriteImage(other, str(folder / "moved.nii.gz"))
    code, err = invoke("stability", "--image", pet, "--mask", folder / "moved.nii.gz", "--subject-id", "sub-1",
                       "--perturb", "erode", "--out", out)
    assert code == 1 and "subject sub-1" in err and "moved.nii.gz" in err and "geometry differs" in err
    code, err = invoke("icc", "--out", folder / "icc.tsv", folder / "nothing.parquet")
    assert code == 1 and "nothing.parquet" in err and "does not exist" in err
    assert not out.exists() and not (folder / "icc.tsv").exists()
