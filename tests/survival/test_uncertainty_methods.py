"""Per-patient uncertainty methods on scikit-survival's GBSG2 (real data) with planted outliers."""
import numpy as np
import pytest

from biomarkers.survival.conformal import coverage
from biomarkers.survival.uncertainty_methods import ModelEntry, UncertaintySettings, uncertainty_scores
from biomarkers.validation.selective import auroc

from gbsg2 import FEATURES, LOGS


@pytest.fixture(scope="module")
def scored(gbsg2):
    train, test = gbsg2
    outliers = test.iloc[:20].copy()  # 20 patients measured with a scale error: tumour size and nodes x 6
    outliers["tsize"] *= 6
    outliers["pnodes"] *= 6
    outliers["subject_id"] = [f"{s}-out" for s in outliers["subject_id"]]
    entry = ModelEntry("coxph", FEATURES, LOGS, {"penalizer": 0.1})
    settings = UncertaintySettings(members=4, folds=3, alpha=0.1, c0_days=1500, abstain_quantile=0.9, seed=2)
    return uncertainty_scores(entry, train, {"test": test, "outliers": outliers}, settings), settings, train


def test_every_cohort_is_scored_with_each_method_of_a_deterministic_model(scored):
    (scores, choice), _, train = scored
    assert list(scores["cohort"].unique()) == ["train", "test", "outliers"]
    train_rows = scores[scores["cohort"] == "train"]
    assert list(train_rows["subject_id"]) == list(train["subject_id"])  # out-of-fold, in table order
    assert set(choice["methods"]) == {"ensemble", "distance", "conformal"}  # no MC dropout for a Cox model
    assert (scores["u_ensemble"] > 0).all()  # bootstrap refits differ


def test_distance_flags_the_planted_outliers(scored):
    (scores, _), _, _ = scored
    part = scores[scores["cohort"].isin(["test", "outliers"])]
    assert auroc((part["cohort"] == "outliers").to_numpy(float), part["u_distance"].to_numpy()) > 0.95


def test_conformal_bound_covers_the_held_out_patients(scored):
    (scores, choice), settings, _ = scored
    test = scores[scores["cohort"] == "test"]
    cov = coverage(test["time"], test["event"], test["lower_bound"])
    assert 0.85 <= cov["estimate"] <= 0.97  # target 0.90 on 229 patients
    assert (scores["lower_bound"] <= settings.c0_days).all()
    assert choice["conformal"]["n_calibration"] > 100


def test_abstention_uses_the_best_method_on_training_cross_validation(scored):
    (scores, choice), settings, _ = scored
    areas = choice["training_area"]
    assert choice["chosen"] == max(areas, key=areas.get)
    column = choice["methods"][choice["chosen"]]
    train = scores[scores["cohort"] == "train"]
    assert choice["threshold"] == pytest.approx(np.quantile(train[column], settings.abstain_quantile))
    np.testing.assert_array_equal(scores["abstain"], scores[column] > choice["threshold"])


def test_scores_are_reproducible(gbsg2, scored):
    (scores, _), settings, train = scored
    _, test = gbsg2
    again, _ = uncertainty_scores(ModelEntry("coxph", FEATURES, LOGS, {"penalizer": 0.1}), train,
                                  {"test": test}, settings)
    np.testing.assert_array_equal(again.loc[again["cohort"] == "test", "u_ensemble"],
                                  scores.loc[scores["cohort"] == "test", "u_ensemble"])


@pytest.mark.slow
def test_a_network_gets_mc_dropout_and_a_seed_ensemble(gbsg2):
    train, test = gbsg2
    entry = ModelEntry("deepsurv", FEATURES, LOGS, {"max_epochs": 20, "mc_samples": 20})
    scores, choice = uncertainty_scores(entry, train, {"test": test},
                                        UncertaintySettings(members=2, folds=2, c0_days=1500))
    assert set(choice["methods"]) == {"mc_dropout", "ensemble", "distance", "conformal"}
    assert (scores["u_mc_dropout"] > 0).all() and (scores["u_ensemble"] > 0).all()
