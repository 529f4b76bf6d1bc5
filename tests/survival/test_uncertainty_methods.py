"""Per-patient uncertainty methods on scikit-survival's GBSG2 (real data) with planted outliers."""
import json

import numpy as np
import pandas as pd
import pytest

from biomarkers.errors import FeatureTableError, InputError
from biomarkers.survival.bundle import CHOICE_MEASURES, Abstention, ModelSpec, fit_bundle, score_table
from biomarkers.survival.conformal import coverage
from biomarkers.survival.uncertainty_methods import (UncertaintySettings, uncertainty_choice_to_files,
                                                     uncertainty_scores, uncertainty_scores_to_files)
from biomarkers.validation.selective import auroc

from gbsg2 import FEATURES, LOGS


@pytest.fixture(scope="module")
def scored(gbsg2):
    train, test = gbsg2
    outliers = test.iloc[:20].copy()  # 20 patients measured with a scale error: tumour size and nodes x 6
    outliers["tsize"] *= 6
    outliers["pnodes"] *= 6
    outliers["subject_id"] = [f"{s}-out" for s in outliers["subject_id"]]
    entry = ModelSpec("coxph", FEATURES, LOGS, {"penalizer": 0.1})
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


def test_abstention_uses_the_best_frozen_method_on_training_cross_validation(scored):
    (scores, choice), settings, _ = scored
    areas = choice["training_area"]
    assert choice["eligible"] == ["distance", "conformal"]  # an ensemble needs its other members
    assert choice["chosen"] == max(choice["eligible"], key=areas.get)
    column = choice["methods"][choice["chosen"]]
    np.testing.assert_array_equal(scores["abstain"], scores[column] > choice["threshold"])
    held = scores[scores["cohort"] == "outliers"]
    if choice["chosen"] == "distance":  # every planted outlier lies beyond the 0.9 training quantile
        assert held["abstain"].mean() > 0.9


def test_a_bundle_fitted_with_the_choice_abstains_where_the_scores_do(gbsg2, scored):
    (scores, choice), settings, train = scored
    _, test = gbsg2
    bundle, _ = fit_bundle(train, ModelSpec("coxph", FEATURES, LOGS, {"penalizer": 0.1}),
                           abstention=Abstention(settings.abstain_quantile, choice=choice))
    abstention = bundle.info["abstention"]
    assert abstention["measure"] == CHOICE_MEASURES[choice["chosen"]]
    assert abstention["threshold"] == pytest.approx(choice["threshold"], rel=1e-12)
    frozen, theirs = score_table(bundle, test), scores[scores["cohort"] == "test"]
    np.testing.assert_array_equal(frozen["abstain"], theirs["abstain"])
    np.testing.assert_allclose(frozen["lower_bound"], theirs["lower_bound"], rtol=1e-12)
    # above the training 0.9 quantile: at most 10 % of the training cohort (fewer where values tie at the quantile)
    assert 0.05 < score_table(bundle, train)["abstain"].mean() <= 0.1 + 1 / len(train)
    with pytest.raises(FeatureTableError, match="not of 'coxnet'"):
        fit_bundle(train, ModelSpec("coxnet", FEATURES, LOGS), abstention=Abstention(choice=choice))
    with pytest.raises(FeatureTableError, match="not one a single frozen model applies"):
        fit_bundle(train, ModelSpec("coxph", FEATURES, LOGS),
                   abstention=Abstention(choice={**choice, "chosen": "ensemble"}))


def test_the_scores_use_the_calibration_of_the_same_training_table(gbsg2, tmp_path):
    train, test = gbsg2
    entry = ModelSpec("coxph", FEATURES, LOGS, {"penalizer": 0.1})
    settings = UncertaintySettings(members=2, folds=3, c0_days=1500)
    train.to_parquet(tmp_path / "train.parquet")
    test.to_parquet(tmp_path / "test.parquet")
    choice = uncertainty_choice_to_files(tmp_path / "train.parquet", entry, settings, tmp_path / "cal.parquet",
                                         tmp_path / "choice.json")
    assert json.loads((tmp_path / "choice.json").read_text()) == choice
    with pytest.raises(InputError, match="another training table"):
        uncertainty_scores_to_files(tmp_path / "test.parquet", {"x": tmp_path / "train.parquet"}, tmp_path / "cal.parquet",
                                    tmp_path / "scores.parquet")
    assert not (tmp_path / "scores.parquet").exists()
    oof = pd.read_parquet(tmp_path / "cal.parquet")
    with pytest.raises(ValueError, match="other settings"):
        uncertainty_scores(entry, train, {"test": test}, UncertaintySettings(members=3, folds=3, c0_days=1500),
                           calibration=(oof, choice))
    # the entry and settings come from the calibration's choice: the same scores as in memory
    uncertainty_scores_to_files(tmp_path / "train.parquet", {"test": tmp_path / "test.parquet"}, tmp_path / "cal.parquet",
                                tmp_path / "scores.parquet")
    expected, _ = uncertainty_scores(entry, train, {"test": test}, settings, calibration=(oof, choice))
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "scores.parquet"), expected)


def test_scores_are_reproducible(gbsg2, scored):
    (scores, _), settings, train = scored
    _, test = gbsg2
    again, _ = uncertainty_scores(ModelSpec("coxph", FEATURES, LOGS, {"penalizer": 0.1}), train,
                                  {"test": test}, settings)
    np.testing.assert_array_equal(again.loc[again["cohort"] == "test", "u_ensemble"],
                                  scores.loc[scores["cohort"] == "test", "u_ensemble"])


@pytest.mark.slow
def test_a_network_gets_mc_dropout_and_a_seed_ensemble(gbsg2):
    train, test = gbsg2
    entry = ModelSpec("deepsurv", FEATURES, LOGS, {"max_epochs": 20, "mc_samples": 20})
    scores, choice = uncertainty_scores(entry, train, {"test": test},
                                        UncertaintySettings(members=2, folds=2, c0_days=1500))
    assert set(choice["methods"]) == {"mc_dropout", "ensemble", "distance", "conformal"}
    assert (scores["u_mc_dropout"] > 0).all() and (scores["u_ensemble"] > 0).all()


def test_uncertainty_defaults_have_one_source():
    """The workflow schema's defaults and the verbs' are UncertaintySettings' (and Abstention's)."""
    import inspect
    from pathlib import Path

    import yaml

    from biomarkers.cli.survival import fit
    from biomarkers.cli.uncertainty import uncertainty_choice

    schema = yaml.safe_load((Path(__file__).parents[2] / "workflow" / "schemas" / "config.schema.yaml").read_text())
    props = schema["properties"]
    block, model = props["uncertainty"]["properties"], props["model"]["properties"]
    settings = UncertaintySettings()
    assert (block["members"]["default"], block["alpha"]["default"], block["c0_days"]["default"]) == \
        (settings.members, settings.alpha, settings.c0_days)
    assert (model["cv_folds"]["default"], model["abstain_quantile"]["default"]) == \
        (settings.folds, settings.abstain_quantile)
    assert props["evaluation"]["properties"]["seed"]["default"] == settings.seed
    verb = inspect.signature(uncertainty_choice).parameters
    for key in ("members", "folds", "alpha", "c0_days", "abstain_quantile", "seed"):
        assert verb[key].default.default == getattr(settings, key), key
    assert inspect.signature(fit).parameters["abstain_quantile"].default.default == Abstention().quantile \
        == settings.abstain_quantile
