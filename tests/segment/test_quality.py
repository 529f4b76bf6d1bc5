"""autoPET segmentation metrics on masks with hand-counted answers."""
import numpy as np
import pandas as pd
import pytest

from biomarkers.segment.quality import autopet_metrics, summarise


def test_dice_fp_fn_volumes():
    ref = np.zeros((20, 20, 20), bool)
    pred = np.zeros_like(ref)
    ref[2:6, 2:6, 2:6] = True  # 64 voxels, overlapped by the prediction
    pred[3:7, 2:6, 2:6] = True  # 64 voxels, 48 shared
    ref[10:12, 10:12, 10:12] = True  # 8 voxels, missed: false negative
    pred[15:18, 15:18, 15:18] = True  # 27 voxels, not in the reference: false positive
    m = autopet_metrics(pred, ref, (2.0, 2.0, 2.0))  # 8 uL voxels
    assert m["dice"] == pytest.approx(2 * 48 / (91 + 72))
    assert m["fp_volume_ml"] == pytest.approx(27 * 8e-3)
    assert m["fn_volume_ml"] == pytest.approx(8 * 8e-3)
    assert (m["fp_components"], m["fn_components"], m["pred_components"], m["ref_components"]) == (1, 1, 2, 2)


def test_eighteen_connectivity():
    # Two voxels touching only at a corner are two components under 18-connectivity.
    pred = np.zeros((5, 5, 5), bool)
    pred[1, 1, 1] = pred[2, 2, 2] = True
    ref = np.zeros_like(pred)
    ref[1, 1, 1] = True
    m = autopet_metrics(pred, ref, (1.0, 1.0, 1.0))
    assert m["fp_components"] == 1 and m["fp_volume_ml"] == pytest.approx(1e-3)


def test_empty_cases_and_summary():
    empty = np.zeros((4, 4, 4), bool)
    assert np.isnan(autopet_metrics(empty, empty, (1, 1, 1))["dice"])
    cases = pd.DataFrame({"method": ["a", "a", "b"], "dice": [0.5, 0.7, 0.9], "fp_volume_ml": [1.0, 3.0, 0.0],
                          "fn_volume_ml": [0.0, 2.0, 1.0]})
    s = summarise(cases).set_index("method")
    assert s.loc["a", "dice_mean"] == pytest.approx(0.6) and s.loc["a", "fp_volume_ml_median"] == 2.0
    assert s.loc["b", "cases"] == 1


def test_method_specs():
    from biomarkers.segment.compare import parse_method

    assert parse_method("fixed:4.0") == ("fixed", {"threshold_suv": 4.0})
    assert parse_method("relative-maxima:0.5") == ("relative-maxima", {"fraction": 0.5})
    assert parse_method("percist") == ("percist", {})
    for bad, message in (("otsu", "unknown segmentation method"), ("fixed", "give the threshold"),
                         ("relative:abc", "not a number"), ("percist:2", "no value")):
        with pytest.raises(ValueError, match=message):
            parse_method(bad)


def test_predicted_masks_are_scored_beside_threshold_methods(tmp_path):
    import SimpleITK as sitk

    from biomarkers.errors import InputError
    from biomarkers.segment.compare import compare_methods

    suv = np.ones((12, 12, 12), np.float32)
    ref = np.zeros(suv.shape, np.uint8)
    ref[3:7, 3:7, 3:7] = 1
    suv[ref == 1] = 8.0
    pred = np.zeros_like(ref)
    pred[4:8, 3:7, 3:7] = 1  # 48 of 64 voxels shared
    for name, arr in (("s1_pet", suv), ("s1_mask", ref), ("s1_unet", pred)):
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing((4.0, 4.0, 4.0))
        sitk.WriteImage(img, str(tmp_path / f"{name}.nii.gz"))
    pd.DataFrame({"subject_id": ["s1"], "cohort": ["validation"], "center": ["C3"], "pet": ["s1_pet.nii.gz"],
                  "mask": ["s1_mask.nii.gz"], "time": [100.0], "event": [1]}).to_csv(tmp_path / "s.tsv", sep="\t",
                                                                                         index=False)
    cases = compare_methods(tmp_path / "s.tsv", "validation", ["fixed:2.5"], exclude_organs=False,
                            predicted={"unet": str(tmp_path / "{subject}_unet.nii.gz")}).set_index("method")
    assert cases.loc["fixed:2.5", "dice"] == pytest.approx(1.0)
    assert cases.loc["unet", "dice"] == pytest.approx(2 * 48 / 128)
    with pytest.raises(InputError, match="subject s1, file .*s1_other.nii.gz: no other segmentation"):
        compare_methods(tmp_path / "s.tsv", "validation", [], exclude_organs=False,
                        predicted={"other": str(tmp_path / "{subject}_other.nii.gz")})


def test_thresholds_scored_with_and_without_the_organ_masks(tmp_path):
    import SimpleITK as sitk

    from biomarkers.segment.compare import compare_methods

    suv = np.ones((12, 12, 24), np.float32)
    ref = np.zeros(suv.shape, np.uint8)
    organs = np.zeros(suv.shape, np.uint8)
    ref[3:7, 3:7, 3:7] = 1
    suv[ref == 1] = 8.0
    organs[3:9, 3:9, 14:20] = 1  # "brain": 216 hot voxels of physiological uptake
    organs[0:2, 0:2, 0:2] = 2  # "liver", for PERCIST
    suv[organs == 1] = 6.0
    for name, arr in (("s1_pet", suv), ("s1_mask", ref), ("s1_organs", organs)):
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing((4.0, 4.0, 4.0))
        sitk.WriteImage(img, str(tmp_path / f"{name}.nii.gz"))
    pd.DataFrame({"subject_id": ["s1"], "cohort": ["validation"], "center": ["C3"], "pet": ["s1_pet.nii.gz"],
                  "mask": ["s1_mask.nii.gz"], "organs": ["s1_organs.nii.gz"], "time": [100.0],
                  "event": [1]}).to_csv(tmp_path / "s.tsv", sep="\t", index=False)
    cases = compare_methods(tmp_path / "s.tsv", "validation", ["fixed:2.5", "percist"],
                            without_organs=True).set_index("method")
    assert list(cases.index) == ["fixed:2.5", "percist", "fixed:2.5 -organs"]  # PERCIST needs the liver
    assert cases.loc["fixed:2.5", "dice"] == pytest.approx(1.0)
    assert cases.loc["fixed:2.5 -organs", "fp_volume_ml"] == pytest.approx(216 * 0.064)
    assert cases.loc["fixed:2.5 -organs", "dice"] == pytest.approx(2 * 64 / (64 + 64 + 216))
