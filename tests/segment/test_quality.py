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
    from biomarkers.segment.compare import compare_methods

    _organ_study(tmp_path)  # a lesion, 216 hot "brain" voxels of physiological uptake, a "liver" for PERCIST
    cases = compare_methods(tmp_path / "s.tsv", "validation", ["fixed:2.5", "percist"],
                            without_organs=True).set_index("method")
    assert list(cases.index) == ["fixed:2.5", "percist", "fixed:2.5 -organs"]  # PERCIST needs the liver
    assert cases.loc["fixed:2.5", "dice"] == pytest.approx(1.0)
    assert cases.loc["fixed:2.5 -organs", "fp_volume_ml"] == pytest.approx(216 * 0.064)
    assert cases.loc["fixed:2.5 -organs", "dice"] == pytest.approx(2 * 64 / (64 + 64 + 216))
    # the plausibility check against the sheet's organs flags the organ-less run only
    assert cases.loc["fixed:2.5 -organs", "organ_share"] == pytest.approx(216 / 280)
    assert bool(cases.loc["fixed:2.5 -organs", "flagged"]) and not cases.loc["fixed:2.5", "flagged"]
    assert cases.loc["fixed:2.5", "organs"] == "oracle" and cases.loc["fixed:2.5 -organs", "organs"] == "none"


def _organ_study(tmp_path):
    """One subject: a lesion (SUV 8), a hot 'brain' (SUV 6, label 1) and a 'liver' (label 2), and a
    predicted organ image that finds the brain shifted by one voxel and misses nothing else."""
    import SimpleITK as sitk

    suv = np.ones((12, 12, 24), np.float32)
    ref, organs = np.zeros(suv.shape, np.uint8), np.zeros(suv.shape, np.uint8)
    ref[3:7, 3:7, 3:7] = 1
    organs[3:9, 3:9, 14:20] = 1
    organs[0:2, 0:2, 0:2] = 2
    suv[ref == 1], suv[organs == 1] = 8.0, 6.0
    guess = np.zeros_like(organs)
    guess[3:9, 3:9, 15:21] = 1  # 180 of 216 brain voxels shared
    guess[0:2, 0:2, 0:2] = 2
    for name, arr in (("s1_pet", suv), ("s1_mask", ref), ("s1_organs", organs), ("s1_net", guess)):
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing((4.0, 4.0, 4.0))
        sitk.WriteImage(img, str(tmp_path / f"{name}.nii.gz"))
    pd.DataFrame({"subject_id": ["s1"], "cohort": ["validation"], "center": ["C3"], "pet": ["s1_pet.nii.gz"],
                  "mask": ["s1_mask.nii.gz"], "organs": ["s1_organs.nii.gz"], "time": [100.0],
                  "event": [1]}).to_csv(tmp_path / "s.tsv", sep="\t", index=False)
    return tmp_path / "s.tsv", str(tmp_path / "{subject}_net.nii.gz")


def test_thresholds_with_predicted_organs_and_organ_dice(tmp_path):
    from biomarkers.segment.compare import compare_methods, organ_scores

    sheet, pattern = _organ_study(tmp_path)
    cases = compare_methods(sheet, "validation", ["fixed:2.5", "percist"],
                            predicted_organs={"net": pattern}).set_index("method")
    assert list(cases.index) == ["fixed:2.5", "percist", "fixed:2.5 +net-organs", "percist +net-organs"]
    assert (cases.loc["fixed:2.5 +net-organs", "organs"]) == "predicted"
    # the predicted brain leaves its first slab (36 voxels) hot; that slab touches the predicted organ
    # and is no hotter than it, so it is dropped as spill-over: the lesion alone remains
    assert cases.loc["fixed:2.5 +net-organs", "dice"] == pytest.approx(1.0)
    scores = organ_scores(sheet, "validation", "net", pattern).iloc[0]
    assert scores["brain"] == pytest.approx(2 * 180 / 432) and scores["liver"] == pytest.approx(1.0)
    assert np.isnan(scores["kidneys"])


def test_plausibility_flags_organ_share_and_total_volume():
    from biomarkers.segment.plausibility import check_segmentation

    labels = np.zeros((10, 10, 10), np.uint8)
    labels[:5] = 1  # 500 voxels
    organs = np.zeros_like(labels)
    organs[:2] = 1  # 200 of them in an organ
    ok = check_segmentation(labels, (4.0, 4.0, 4.0), organs, max_organ_share=0.5)
    assert ok.organ_share == pytest.approx(0.4) and not ok.flagged and ok.total_ml == pytest.approx(32.0)
    bad = check_segmentation(labels, (4.0, 4.0, 4.0), organs, max_organ_share=0.25)  # 12.8 mL in organs
    assert bad.flagged and "40 % of the segmented volume" in bad.reasons[0]
    small = check_segmentation(labels, (1.0, 1.0, 1.0), organs, max_organ_share=0.25)  # 0.2 mL: boundary voxels
    assert small.organ_share == pytest.approx(0.4) and not small.flagged
    huge = check_segmentation(labels, (4.0, 4.0, 4.0), None, max_total_ml=20.0)  # 500 x 64 uL = 32 mL
    assert huge.flagged and np.isnan(huge.organ_share) and "32 mL exceeds 20 mL" in huge.reasons[0]


def test_segment_verb_reference_method_and_warning(tmp_path):
    import SimpleITK as sitk
    from typer.testing import CliRunner

    from biomarkers.cli import app

    sheet, _ = _organ_study(tmp_path)
    runner = CliRunner()
    out = tmp_path / "ref_lesions.nii.gz"
    result = runner.invoke(app, ["segment", "--pet", str(tmp_path / "s1_pet.nii.gz"), "--method", "reference",
                                 "--reference", str(tmp_path / "s1_mask.nii.gz"), "--out", str(out),
                                 "--min-volume-ml", "0", "--subject-id", "s1"])
    assert result.exit_code == 0, result.output
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert labels.max() == 1 and (labels == 1).sum() == 64 and "warning" not in result.output
    # a threshold without organ exclusion counts the brain: checked against the organs, it warns
    out = tmp_path / "fixed.nii.gz"
    result = runner.invoke(app, ["segment", "--pet", str(tmp_path / "s1_pet.nii.gz"), "--method", "fixed",
                                 "--threshold", "2.5", "--out", str(out), "--subject-id", "s1",
                                 "--check-organs", str(tmp_path / "s1_organs.nii.gz")])
    assert result.exit_code == 0 and out.is_file()
    assert "warning: subject s1, file" in result.output and "77 % of the segmented volume" in result.output
    result = runner.invoke(app, ["segment", "--pet", str(tmp_path / "s1_pet.nii.gz"), "--method", "reference",
                                 "--out", str(tmp_path / "x.nii.gz")])
    assert result.exit_code == 1 and "needs --reference" in result.output


def test_predicted_organs_without_a_liver_score_percist_as_empty(tmp_path):
    import SimpleITK as sitk

    from biomarkers.segment.compare import compare_methods

    sheet, pattern = _organ_study(tmp_path)
    guess = sitk.GetArrayFromImage(sitk.ReadImage(pattern.replace("{subject}", "s1")))
    guess[guess == 2] = 0  # the network found no liver
    img = sitk.GetImageFromArray(guess)
    img.SetSpacing((4.0, 4.0, 4.0))
    sitk.WriteImage(img, pattern.replace("{subject}", "s1"))
    cases = compare_methods(sheet, "validation", ["percist"], predicted_organs={"net": pattern}).set_index("method")
    assert cases.loc["percist +net-organs", "dice"] == 0.0
    assert cases.loc["percist +net-organs", "fn_volume_ml"] == pytest.approx(64 * 0.064)


def test_percist_liver_at_the_image_edge():
    from biomarkers.segment.threshold import percist_threshold

    suv = np.full((6, 6, 6), 2.0)
    suv[5] = 3.0
    organs = np.full((6, 6, 6), 2, np.uint8)
    organs[0, 0, 0] = 0  # the liver voxel farthest from its edge is the far corner: the sphere is cut there
    value = percist_threshold(suv, organs, (4.0, 4.0, 4.0))
    assert 1.5 * 2.0 < value < 1.5 * 3.0 + 2.0
