"""Tests of the synthetic cohort generator (tiny cohorts; about 20 s on 2 cores)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy import ndimage
from sksurv.metrics import concordance_index_censored

from biomarkers.simulate import simulate_cohort
from biomarkers.simulate import outcome
from biomarkers.simulate.cohort import IMAGE_KINDS, SUBJECT_COLUMNS, subject_rngs
from biomarkers.simulate.phantom import build_phantom

SEED = 7
N_SUBJECTS = 5


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cohort")
    simulate_cohort(out, n_subjects=N_SUBJECTS, n_centers=3, seed=SEED, threads=1)
    return out


@pytest.fixture(scope="module")
def subjects(cohort: Path) -> pd.DataFrame:
    return pd.read_csv(cohort / "subjects.tsv", sep="\t")


@pytest.fixture(scope="module")
def truth(cohort: Path) -> pd.DataFrame:
    return pd.read_csv(cohort / "truth.tsv", sep="\t").set_index("subject_id")


def test_same_seed_identical_files_whatever_threads(cohort: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    simulate_cohort(again, n_subjects=N_SUBJECTS, n_centers=3, seed=SEED, threads=2)
    reference = _digests(cohort)
    assert len(reference) == 3 + 4 * N_SUBJECTS  # no temporary files left behind
    assert _digests(again) == reference


def test_different_seed_differs(cohort: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    simulate_cohort(other, n_subjects=2, n_centers=3, seed=SEED + 1)
    a, b = _digests(cohort), _digests(other)
    for name in ("images/sub-0001_pet.nii.gz", "images/sub-0001_mask.nii.gz", "truth.tsv"):
        assert a[name] != b[name]


def test_subjects_table(cohort: Path, subjects: pd.DataFrame) -> None:
    assert tuple(subjects.columns) == SUBJECT_COLUMNS
    assert list(subjects["subject_id"]) == [f"sub-{i:04d}" for i in range(1, N_SUBJECTS + 1)]
    assert set(subjects["event"]) <= {0, 1} and (subjects["time"] > 0).all()
    assert subjects["ecog"].isin([0, 1, 2]).all() and subjects["sex"].isin(["F", "M"]).all()
    assert subjects["age"].between(30, 90).all()
    counts = subjects["center"].value_counts()
    assert counts.max() - counts.min() <= 1
    expected = np.where(subjects["center"] == "C3", "validation", "train")
    assert list(subjects["cohort"]) == list(expected)
    for kind in IMAGE_KINDS:
        assert all(not Path(p).is_absolute() and (cohort / p).is_file() for p in subjects[kind])


def test_geometry_and_spacing(cohort: Path, subjects: pd.DataFrame) -> None:
    centers = pd.read_csv(cohort / "centers.tsv", sep="\t").set_index("center")
    assert centers.loc["C1", "spacing_mm"] == "4.0x4.0x4.0"
    dtypes = {"pet": sitk.sitkFloat32, "ct": sitk.sitkInt16, "mask": sitk.sitkUInt16,
              "organs": sitk.sitkUInt8}
    for _, row in subjects.iterrows():
        images = {k: sitk.ReadImage(str(cohort / row[k])) for k in IMAGE_KINDS}
        geometry = {(im.GetSize(), im.GetOrigin(), im.GetSpacing(), im.GetDirection())
                    for im in images.values()}
        assert len(geometry) == 1
        declared = tuple(float(v) for v in centers.loc[row["center"], "spacing_mm"].split("x"))
        assert images["pet"].GetSpacing() == pytest.approx(declared, abs=1e-5)
        assert {k: im.GetPixelID() for k, im in images.items()} == dtypes


def test_mask_matches_truth(cohort: Path, subjects: pd.DataFrame, truth: pd.DataFrame) -> None:
    for _, row in subjects.iterrows():
        image = sitk.ReadImage(str(cohort / row["mask"]))
        mask = sitk.GetArrayFromImage(image)
        n = int(truth.loc[row["subject_id"], "true_lesion_count"])
        assert list(np.unique(mask)) == list(range(n + 1))
        volume_ml = np.count_nonzero(mask) * np.prod(image.GetSpacing()) / 1000.0
        assert volume_ml == pytest.approx(truth.loc[row["subject_id"], "true_mtv_ml"], rel=0.25)
        organs = sitk.GetArrayFromImage(sitk.ReadImage(str(cohort / row["organs"])))
        assert set(np.unique(organs)) == {0, 1, 2, 3, 4, 5}
        assert not np.any((mask > 0) & (organs > 0))


def test_liver_suv_and_ct(cohort: Path, subjects: pd.DataFrame) -> None:
    for index, row in subjects.iterrows():
        liver_suv = build_phantom(subject_rngs(SEED, int(index))[0], row["sex"]).liver_suv
        assert 2.0 <= liver_suv <= 2.6
        pet = sitk.GetArrayFromImage(sitk.ReadImage(str(cohort / row["pet"])))
        ct = sitk.GetArrayFromImage(sitk.ReadImage(str(cohort / row["ct"])))
        organs = sitk.GetArrayFromImage(sitk.ReadImage(str(cohort / row["organs"])))
        liver = ndimage.binary_erosion(organs == 2, iterations=2)
        assert pet[liver].mean() == pytest.approx(liver_suv, rel=0.05)
        assert 30 <= np.median(ct[liver]) <= 80
        assert pet[organs == 1].mean() > 4.5  # brain is hot (true SUV 6-9)
        assert ct[0, 0, 0] < -900 and pet.min() >= 0.0


def test_truth_components_reproduce_lp(truth: pd.DataFrame, subjects: pd.DataFrame) -> None:
    s = subjects.set_index("subject_id")
    lp = outcome.linear_predictor(truth["true_mtv_ml"], truth["true_heterogeneity"],
                                  truth["true_dissemination_mm"], s["age"], s["ecog"])
    np.testing.assert_allclose(lp, truth["true_lp"], atol=1e-4)
    assert (truth["true_mtv_ml"] >= 1.0).all() and truth["true_lesion_count"].between(1, 8).all()


def test_oracle_concordance_and_direction() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    covariates = outcome.draw_covariates(n, rng)
    mtv = np.exp(rng.normal(*outcome.POP_LOG_MTV, n))
    heterogeneity = rng.uniform(0.0, 0.5, n)
    dmax = np.where(rng.random(n) < 0.3, 0.0, rng.uniform(50.0, 450.0, n))
    lp = outcome.linear_predictor(mtv, heterogeneity, dmax, covariates.age_years, covariates.ecog)
    time_days, event = outcome.draw_survival(lp, rng)
    c_index = concordance_index_censored(event.astype(bool), time_days, lp)[0]
    assert c_index > 0.65
    assert 0.5 <= event.mean() <= 0.75
    assert time_days.max() <= outcome.ADMIN_CENSOR_DAYS
    high, low = lp > np.quantile(lp, 0.75), lp < np.quantile(lp, 0.25)
    assert time_days[high].mean() < 0.7 * time_days[low].mean()
    assert event[high].mean() > event[low].mean()


@pytest.mark.parametrize("kwargs", [{"n_subjects": 0}, {"n_centers": 0},
                                    {"validation_centers": 3}, {"threads": 0}, {"seed": -1}])
def test_bad_arguments(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        simulate_cohort(tmp_path, **kwargs)
    assert not (tmp_path / "subjects.tsv").exists()
