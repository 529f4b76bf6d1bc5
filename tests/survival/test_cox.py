"""Our Cox pipeline against scikit-survival on the GBSG2 breast-cancer data."""
import numpy as np
import pytest
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.metrics import concordance_index_censored

from biomarkers.errors import FeatureTableError
from biomarkers.survival.bundle import ModelSpec, fit_bundle, load_bundle, save_bundle, score_table
from biomarkers.validation.metrics import harrell_c
from gbsg2 import FEATURES, LOGS


def test_unpenalised_cox_matches_scikit_survival(gbsg2):
    train, test = gbsg2
    bundle, _ = fit_bundle(train, ModelSpec("coxph", FEATURES, LOGS, {"penalizer": 0.0}))
    ours = harrell_c(test["time"].to_numpy(), test["event"].to_numpy(), score_table(bundle, test)["risk"].to_numpy())

    xtr = bundle.design(train)
    xte = bundle.design(test)
    ref = CoxPHSurvivalAnalysis(ties="efron").fit(
        xtr, np.array(list(zip(train["event"].astype(bool), train["time"])), dtype=[("e", bool), ("t", float)]))
    theirs = concordance_index_censored(test["event"].astype(bool), test["time"], ref.predict(xte))[0]
    assert ours == pytest.approx(theirs, abs=5e-4)
    assert bundle.coef == pytest.approx(ref.coef_, abs=1e-3)
    assert 0.62 < ours < 0.75  # GBSG2 Cox models reach about 0.68


def test_penalty_shrinks_coefficients(gbsg2):
    train, _ = gbsg2
    free, _ = fit_bundle(train, ModelSpec("coxph", FEATURES, LOGS, {"penalizer": 0.0}))
    ridge, _ = fit_bundle(train, ModelSpec("coxph", FEATURES, LOGS, {"penalizer": 1.0}))
    assert np.abs(ridge.coef).sum() < 0.8 * np.abs(free.coef).sum()


def test_bundle_round_trip_and_risk_groups(gbsg2, tmp_path):
    train, test = gbsg2
    bundle, summary = fit_bundle(train, ModelSpec("coxph", FEATURES, LOGS, {"penalizer": 0.1}), table_sha256="abc")
    save_bundle(bundle, summary, tmp_path / "model")
    loaded = load_bundle(tmp_path / "model")
    a, b = score_table(bundle, test), score_table(loaded, test)
    assert np.array_equal(a["risk"].to_numpy(), b["risk"].to_numpy())
    train_scores = score_table(loaded, train)
    assert (train_scores["risk_group"] == "high").mean() == pytest.approx(0.5, abs=0.01)
    assert (a["risk_sd"] == 0).all() and set(a["risk_group"]) == {"low", "high"}
    assert loaded.info["train_table_sha256"] == "abc"


def test_preprocessing_uses_training_statistics_only(gbsg2):
    train, test = gbsg2
    bundle, _ = fit_bundle(train, ModelSpec("coxph", FEATURES, LOGS, {"penalizer": 0.1}))
    shifted = test.copy()
    shifted["age"] = shifted["age"] + 100  # a validation cohort must not re-centre itself
    delta = score_table(bundle, shifted)["risk"] - score_table(bundle, test)["risk"]
    j = FEATURES.index("age")
    expected = bundle.coef[j] * 100 / bundle.preprocessor.scales_[j]
    assert np.allclose(delta, expected)


def test_missing_feature_column_is_an_error(gbsg2):
    train, test = gbsg2
    bundle, _ = fit_bundle(train, ModelSpec("coxph", FEATURES, LOGS))
    with pytest.raises(FeatureTableError, match="tsize"):
        score_table(bundle, test.drop(columns="tsize"), "val.parquet")
