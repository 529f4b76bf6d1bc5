"""Shifted subjects: appended without changing the regular ones, with their kind in the truth table."""
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from biomarkers.simulate import simulate_cohort
from biomarkers.simulate.plan import cohort_plan
from biomarkers.simulate.shift import SHIFT_CALIBRATION, SHIFT_SPACING_MM


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    plain = tmp_path_factory.mktemp("plain")
    shifted = tmp_path_factory.mktemp("shifted")
    simulate_cohort(plain, n_subjects=2, n_centers=2, seed=11)
    simulate_cohort(shifted, n_subjects=2, n_centers=2, seed=11, shifted=3, threads=2)
    return plain, shifted


def test_regular_subjects_are_unchanged_by_shifted_ones(cohorts):
    plain, shifted = cohorts
    for path in (plain / "images").iterdir():
        assert path.read_bytes() == (shifted / "images" / path.name).read_bytes(), path.name
    a = pd.read_csv(plain / "subjects.tsv", sep="\t")
    b = pd.read_csv(shifted / "subjects.tsv", sep="\t")
    pd.testing.assert_frame_equal(a, b.iloc[:2])
    ta, tb = (pd.read_csv(p / "truth.tsv", sep="\t") for p in cohorts)
    pd.testing.assert_frame_equal(ta, tb.iloc[:2])


def test_shifted_subjects_are_in_the_validation_centre_with_their_kind(cohorts):
    _, shifted = cohorts
    sheet = pd.read_csv(shifted / "subjects.tsv", sep="\t")
    truth = pd.read_csv(shifted / "truth.tsv", sep="\t")
    assert list(zip(sheet["subject_id"], sheet["cohort"])) == cohort_plan(2, 2, 11, 1, shifted=3)
    extra = sheet.iloc[2:]
    assert (extra["cohort"] == "validation").all() and (extra["center"] == "C2").all()
    assert list(truth["shift"]) == ["none", "none", "scanner", "bulky", "faint"]
    assert list(truth["ood"]) == [0, 0, 1, 1, 0]
    # latent event times agree with the observed outcome: an event is observed at its latent time
    ev = sheet["event"] == 1
    np.testing.assert_allclose(sheet.loc[ev, "time"], np.maximum(truth.loc[ev, "true_event_days"].round(1), 1.0))
    assert (truth.loc[~ev, "true_event_days"] >= sheet.loc[~ev, "time"] - 0.05).all()


def test_each_kind_is_what_its_name_says(cohorts):
    _, shifted = cohorts
    truth = pd.read_csv(shifted / "truth.tsv", sep="\t").set_index("shift")
    scanner = sitk.ReadImage(str(shifted / "images" / "sub-0003_pet.nii.gz"))
    assert scanner.GetSpacing() == pytest.approx(SHIFT_SPACING_MM)
    assert SHIFT_CALIBRATION == 1.3
    assert truth.loc["bulky", "true_lesion_count"] >= 6  # eight aimed at, as many as fit
    assert truth.loc["bulky", "true_mtv_ml"] > 150  # typical subjects: median ~15 mL
    pet = sitk.GetArrayFromImage(sitk.ReadImage(str(shifted / "images" / "sub-0005_pet.nii.gz")))
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(shifted / "images" / "sub-0005_mask.nii.gz")))
    assert np.median(pet[mask > 0]) < 4.0  # faint: lesion uptake near the 2.5 threshold
