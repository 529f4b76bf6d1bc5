"""Nested cross-validation: folds fitted without their held-out part, the same folds for every model."""
import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import StratifiedKFold
from typer.testing import CliRunner

from biomarkers.cli import app
from biomarkers.errors import FeatureTableError
from biomarkers.survival.bundle import ModelSpec, fit_bundle, score_table
from biomarkers.survival.crossval import cross_validate, summarise
from biomarkers.validation.metrics import harrell_c
from gbsg2 import FEATURES, LOGS


@pytest.fixture(scope="module")
def folds(gbsg2):
    train, _ = gbsg2
    return cross_validate(train, {"coxph": ModelSpec("coxph", FEATURES, LOGS),
                                  "coxnet": ModelSpec("coxnet", FEATURES, LOGS, {"cv_folds": 3})}, folds=3, seed=4)


def test_each_fold_is_scored_by_a_bundle_fitted_on_the_other_folds(gbsg2, folds):
    train, _ = gbsg2
    assert len(folds) == 6 and set(folds["model"]) == {"coxph", "coxnet"}
    split = list(StratifiedKFold(3, shuffle=True, random_state=4).split(np.zeros(len(train)), train["event"]))
    fit_part, held = split[1]
    bundle, _ = fit_bundle(train.iloc[fit_part].reset_index(drop=True), ModelSpec("coxph", FEATURES, LOGS))
    part = train.iloc[held].reset_index(drop=True)
    expected = harrell_c(part["time"].to_numpy(), part["event"].to_numpy(), score_table(bundle, part)["risk"].to_numpy())
    row = folds[(folds["model"] == "coxph") & (folds["fold"] == 1)].iloc[0]
    assert row["harrell_c"] == pytest.approx(expected, abs=1e-12)
    assert row["n_test"] == len(held)
    assert folds["harrell_c"].between(0.55, 0.8).all()


def test_summary_picks_the_best_mean(folds):
    summary = summarise(folds)
    best = folds.groupby("model")["harrell_c"].mean().idxmax()
    assert summary.iloc[0]["model"] == best and summary["chosen"].tolist() == [True, False]
    assert summary["folds"].tolist() == [3, 3]


def test_too_few_events_per_fold_is_an_error(gbsg2):
    train, _ = gbsg2
    tiny = pd.concat([train[train["event"] == 1].iloc[:5], train[train["event"] == 0].iloc[:20]])
    with pytest.raises(FeatureTableError, match="at least 2 events per fold"):
        cross_validate(tiny, {"coxph": ModelSpec("coxph", FEATURES, LOGS)}, folds=5)


def test_fit_score_and_cv_verbs(gbsg2, tmp_path):
    train, test = gbsg2
    train.to_parquet(tmp_path / "train.parquet")
    test.to_parquet(tmp_path / "test.parquet")
    runner = CliRunner()
    result = runner.invoke(app, ["fit", "--features", str(tmp_path / "train.parquet"), "--model", "rsf",
                                 "--set", "n_estimators=30", "--out", str(tmp_path / "rsf"),
                                 "--horizons", "365,730", "--plot", str(tmp_path / "rsf.png")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["score", "--model", str(tmp_path / "rsf"), "--features", str(tmp_path / "test.parquet"),
                                 "--out", str(tmp_path / "scores.parquet")])
    assert result.exit_code == 0, result.output
    scores = pd.read_parquet(tmp_path / "scores.parquet")
    assert {"surv_365", "surv_730_low", "abstain", "risk_sd"} <= set(scores.columns)
    assert (tmp_path / "rsf.png").stat().st_size > 5000
    result = runner.invoke(app, ["fit", "--features", str(tmp_path / "train.parquet"), "--model", "rsf",
                                 "--set", "trees=30", "--out", str(tmp_path / "bad")])
    assert result.exit_code == 1 and "biomarkers fit: error: model rsf has no hyperparameter 'trees'" in result.output
    assert not (tmp_path / "bad").exists()
    result = runner.invoke(app, ["cv", "--features", str(tmp_path / "train.parquet"), "--model", "coxph",
                                 "--model", "rsf", "--set", "rsf.n_estimators=30", "--folds", "3",
                                 "--out", str(tmp_path / "cv.tsv")])
    assert result.exit_code == 0, result.output
    assert list(pd.read_csv(tmp_path / "cv.tsv", sep="\t")["folds"]) == [3, 3]


def test_screening_inside_the_folds_does_not_leak():
    # 100 pure-noise features: choosing the 5 best on all subjects before cross-validating (the
    # classic leak) flatters the held-out C; screening inside each fold's fit leaves it at chance.
    from biomarkers.survival.selection import univariate_cox

    rng = np.random.default_rng(11)
    n, p = 80, 100
    noise = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"f{j:03d}" for j in range(p)])
    table = pd.concat([pd.DataFrame({"subject_id": [f"s{i}" for i in range(n)], "time": rng.exponential(500, n),
                                     "event": (rng.random(n) < 0.7).astype(int)}), noise], axis=1)
    screen = {"fdr_q": 0.1, "min_features": 5, "max_features": 5}
    right = cross_validate(table, {"coxph": ModelSpec("coxph", pipeline=screen)}, folds=4, repeats=2)
    best = univariate_cox(noise, table["time"].to_numpy(), table["event"].to_numpy()).nsmallest(5, "p")["feature"]
    wrong = cross_validate(table, {"coxph": ModelSpec("coxph", list(best))}, folds=4, repeats=2)
    assert abs(right["harrell_c"].mean() - 0.5) < 0.06
    assert wrong["harrell_c"].mean() > right["harrell_c"].mean() + 0.06


def test_candidates_with_their_own_kind_and_features(gbsg2):
    train, _ = gbsg2
    folds = cross_validate(train, {"small": ModelSpec("coxph", ["age", "pnodes"], ["pnodes"], {"penalizer": 0.0})},
                           folds=3, seed=4)
    split = list(StratifiedKFold(3, shuffle=True, random_state=4).split(np.zeros(len(train)), train["event"]))
    fit_part, held = split[0]
    bundle, _ = fit_bundle(train.iloc[fit_part].reset_index(drop=True),
                           ModelSpec("coxph", ["age", "pnodes"], ["pnodes"], {"penalizer": 0.0}))
    part = train.iloc[held].reset_index(drop=True)
    expected = harrell_c(part["time"].to_numpy(), part["event"].to_numpy(), score_table(bundle, part)["risk"].to_numpy())
    assert folds.loc[folds["fold"] == 0, "harrell_c"].item() == pytest.approx(expected, abs=1e-12)
    assert set(folds["model"]) == {"small"}
