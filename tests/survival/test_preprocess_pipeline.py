"""Feature selection and the full preprocessing pipeline, fitted on training data only."""
import copy
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.util import Surv
from statsmodels.stats.multitest import multipletests

from biomarkers.errors import FeatureTableError
from biomarkers.survival.harmonize import ComBat
from biomarkers.survival.preprocess import FeaturePipeline
from biomarkers.survival.selection import (benjamini_hochberg, correlation_filter, correlation_matrix, fdr_screen,
                                           univariate_cox)

TRAIN_CENTRES = {"A": (90, 0.0, 1.0), "B": (70, 1.5, 1.6), "C": (60, -1.0, 0.7)}


def cohort(seed: int, centres: dict, leak_from_outcome: bool = False) -> pd.DataFrame:
    """Multi-centre feature table: two prognostic features (one log-normal, with a near copy), noise,
    an age covariate, additive/multiplicative centre effects, 8 % missing values in ``glcm_noise``,
    and ``leak`` (noise, or minus log of the subject's own survival time)."""
    rng = np.random.default_rng(seed)
    parts = []
    for centre, (n, shift, gain) in centres.items():
        burden, uptake = rng.normal(size=n), rng.normal(size=n)
        age = np.round(rng.uniform(40, 80, n))
        lp = 0.9 * burden + 0.6 * uptake
        t_event, t_cens = rng.exponential(np.exp(-lp)), rng.uniform(0.2, 3.0, n)
        time = np.minimum(t_event, t_cens)
        part = pd.DataFrame({
            "subject_id": [f"{centre}{i:03d}" for i in range(n)], "center": centre, "age": age,
            "time": time, "event": (t_event <= t_cens).astype(int),
            "mtv_ml": np.exp(3 + burden) * gain, "tlg": np.exp(4 + burden + 0.08 * rng.normal(size=n)) * gain,
            "suv_max": 6 + 2 * uptake + shift + 0.02 * age,
        })
        for k in range(5):
            part[f"noise{k}"] = gain * rng.normal(size=n) + shift
        part["glcm_noise"] = np.where(rng.uniform(size=n) < 0.08, np.nan, rng.gamma(2.0, 1.0, n) * gain)
        part["leak"] = -np.log(time) if leak_from_outcome else rng.normal(size=n) + shift
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def train():
    return cohort(1, TRAIN_CENTRES)


@pytest.fixture(scope="module")
def validation():
    return cohort(2, {"V": (80, 3.0, 2.0)}, leak_from_outcome=True)


def pipeline(**kw):
    base = dict(log_features=["mtv_ml", "tlg", "glcm_noise"], harmonize=True, combat_covariates=["age"])
    return FeaturePipeline(**{**base, **kw})


@pytest.fixture(scope="module")
def fitted(train):
    return pipeline().fit(train, train["time"], train["event"], "center")


# ------------------------------------------------------------------ correlation filter
def test_correlation_matrix_matches_scipy():
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(50, 4)) @ rng.normal(size=(4, 4)), columns=list("abcd"))
    x.iloc[:10, 0] = 0.0  # ties
    np.testing.assert_allclose(correlation_matrix(x, "spearman"), stats.spearmanr(x).statistic, rtol=1e-12)
    np.testing.assert_allclose(correlation_matrix(x, "pearson").iloc[0, 2], stats.pearsonr(x["a"], x["c"])[0],
                               rtol=1e-12)


def test_correlation_filter_is_greedy_in_priority_order():
    rng = np.random.default_rng(4)
    a, c = rng.normal(size=(2, 400))
    c = 0.8 * a + 0.6 * c  # r(a, c) about 0.8
    b = (a + c) / 2 + 0.02 * rng.normal(size=400)  # r(a, b) and r(b, c) about 0.95
    x = pd.DataFrame({"a": a, "b": b, "c": c, "d": rng.normal(size=400)})
    r = x.corr(method="pearson")
    assert r.loc["a", "b"] > 0.9 and r.loc["b", "c"] > 0.9 and r.loc["a", "c"] < 0.9
    kept, dropped = correlation_filter(x, ["a", "b", "c", "d"], 0.9, "pearson")
    assert kept == ["a", "c", "d"]  # b goes because of a; c survives because b was dropped
    assert dropped == [{"feature": "b", "step": "correlation", "kept_instead": "a", "r": pytest.approx(r.loc["a", "b"]),
                        "method": "pearson", "threshold": 0.9}]
    kept, _ = correlation_filter(x, ["b", "d", "a", "c"], 0.9, "pearson")
    assert kept == ["b", "d"]
    assert correlation_filter(x, None, 0.9)[0] == ["a", "c", "d"]  # default priority: by name


# ------------------------------------------------------------------ univariate screening
def test_univariate_cox_matches_scikit_survival():
    rng = np.random.default_rng(3)
    x = pd.DataFrame({"f": rng.normal(size=150), "g": rng.normal(size=150)})
    t = np.round(rng.exponential(np.exp(-0.7 * x["f"])), 1) + 0.1  # ties: Efron in both
    e = rng.uniform(size=150) < 0.7
    out = univariate_cox(x, t, e.astype(int))
    for name in x:
        ref = CoxPHSurvivalAnalysis(ties="efron").fit(x[[name]], Surv.from_arrays(e, t))
        row = out.set_index("feature").loc[name]
        assert row["coef"] == pytest.approx(ref.coef_[0], rel=1e-4)  # both Newton-Raphson, own tolerances
        assert row["p"] == pytest.approx(2 * stats.norm.sf(abs(row["coef"] / row["se"])), rel=1e-9)
    assert out.set_index("feature").loc["f", "p"] < 1e-4 < out.set_index("feature").loc["g", "p"]
    lr = univariate_cox(x, t, e.astype(int), test="likelihood_ratio").set_index("feature")
    assert lr.loc["f", "p"] < 1e-4


def test_benjamini_hochberg_matches_scipy_and_statsmodels():
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216])
    q = benjamini_hochberg(p)
    np.testing.assert_allclose(q, stats.false_discovery_control(p, method="bh"), rtol=1e-12)
    np.testing.assert_allclose(q, multipletests(p, method="fdr_bh")[1], rtol=1e-12)
    assert q[0] == pytest.approx(0.01) and q[4] == pytest.approx(0.084)  # 0.042 * 10 / 5


def test_fdr_screen_fallback_and_cap():
    uni = pd.DataFrame({"feature": ["x", "y", "z", "w"], "p": [0.2, 0.01, 0.5, 0.01]})
    uni["q"] = benjamini_hochberg(uni["p"])  # y, w: q = 0.02
    kept, dropped, fallback = fdr_screen(uni, q_threshold=0.1)
    assert (kept, fallback) == (["w", "y"], False)  # ties in p broken by name
    assert [d["feature"] for d in dropped] == ["x", "z"]
    kept, dropped, fallback = fdr_screen(uni, q_threshold=0.1, max_features=1)
    assert kept == ["w"] and dropped[0] == {"feature": "y", "step": "cap", "p": 0.01, "q": pytest.approx(0.02),
                                            "q_threshold": 0.1}
    kept, _, fallback = fdr_screen(uni, candidates=["x", "z"], q_threshold=0.1, min_features=1)
    assert (kept, fallback) == (["x"], True)  # nothing passes: the best one is kept and flagged


# ------------------------------------------------------------------ the pipeline
def test_pipeline_steps_equal_the_manual_composition(train, fitted):
    names = fitted.features_
    assert "age" not in names and "center" not in names and "time" not in names
    x = train[names].copy()
    for f in ["mtv_ml", "tlg", "glcm_noise"]:
        x[f] = np.log1p(x[f])
    medians = x.median()
    np.testing.assert_allclose(fitted.medians_, medians, rtol=1e-12)
    x = x.fillna(medians)
    combat = ComBat().fit(x, train["center"], train[["age"]])
    assert combat.to_dict() == fitted.combat_.to_dict()
    h = combat.transform(x, train["center"], train[["age"]])
    z = (h - h.mean()) / h.std(ddof=1)
    out = fitted.transform(train, "center")
    np.testing.assert_allclose(out, z[fitted.selected_], rtol=1e-10, atol=1e-12)
    assert out.columns.tolist() == fitted.selected_ and (out.index == train.index).all()


def test_pipeline_selection_and_record(fitted):
    assert {"mtv_ml", "suv_max"} <= set(fitted.selected_)
    assert "tlg" not in fitted.selected_  # the near copy of mtv_ml goes, and the record says why
    tlg = next(d for d in fitted.dropped_ if d["feature"] == "tlg")
    assert tlg["step"] == "correlation" and tlg["kept_instead"] == "mtv_ml" and abs(tlg["r"]) > 0.9
    summary = fitted.summary().set_index("feature")
    assert summary.loc["tlg", "status"] == "dropped (correlation)"
    assert (summary.loc[fitted.selected_, "q"] < 0.10).all() and not fitted.min_features_fallback_
    assert set(summary.index) == set(fitted.features_)
    assert {d["feature"] for d in fitted.dropped_} | set(fitted.selected_) == set(fitted.features_)


def test_no_feature_passing_keeps_the_best_min_features(train):
    noise = train[["center", "age", "time", "event"] + [f"noise{k}" for k in range(5)]]
    pipe = FeaturePipeline(harmonize=True, combat_covariates=["age"], min_features=2)
    pipe.fit(noise, noise["time"], noise["event"], "center")
    assert pipe.min_features_fallback_ and len(pipe.selected_) == 2
    best = sorted(pipe.univariate_, key=lambda u: (u["p"], u["feature"]))[:2]
    assert set(pipe.selected_) == {u["feature"] for u in best}
    summary = pipe.summary().set_index("feature").loc[pipe.selected_]
    failing = summary[summary["q"] >= 0.10]
    assert len(failing) >= 1 and failing["detail"].str.startswith("kept by min_features=2").all()


def test_cap_and_switches(train):
    capped = pipeline(max_features=1).fit(train, train["time"], train["event"], "center")
    assert capped.selected_ == ["mtv_ml"] and any(d["step"] == "cap" for d in capped.dropped_)
    everything = FeaturePipeline(log_features=["glcm_noise"], corr_threshold=None, fdr_q=None)
    everything.fit(train.drop(columns="center"), train["time"], train["event"])
    assert everything.selected_ == everything.features_ and everything.combat_ is None
    assert "age" in everything.features_  # not a ComBat covariate here, so an ordinary feature


def test_json_round_trip_is_exact(train, validation, fitted):
    state = json.loads(json.dumps(fitted.to_dict(), allow_nan=False))
    assert set(state) == {"params", "features_", "medians_", "means_", "scales_", "univariate_", "selected_",
                          "dropped_", "min_features_fallback_", "n_train_", "n_events_", "combat_"}
    back = FeaturePipeline.from_dict(state)
    assert back.to_dict() == fitted.to_dict()
    both = pd.concat([train, validation], ignore_index=True)
    np.testing.assert_array_equal(back.transform(both, "center"), fitted.transform(both, "center"))


def test_missing_columns_raise_feature_table_errors(train, fitted):
    dropped_feature = next(d["feature"] for d in fitted.dropped_)
    with pytest.raises(FeatureTableError, match=f"lacks feature column.*{dropped_feature}"):
        fitted.transform(train.drop(columns=dropped_feature), "center")  # ComBat needs every fitted column
    with pytest.raises(FeatureTableError, match="lacks ComBat covariate column.* age"):
        fitted.transform(train.drop(columns="age"), "center")
    with pytest.raises(FeatureTableError, match="pass the centre"):
        fitted.transform(train)
    plain = FeaturePipeline(log_features=["mtv_ml", "tlg", "glcm_noise"], combat_covariates=())
    plain.fit(train.drop(columns=["center", "age"]), train["time"], train["event"])
    unused = [f for f in plain.features_ if f not in plain.selected_]
    assert plain.transform(train.drop(columns=unused)).shape == (len(train), len(plain.selected_))
    with pytest.raises(FeatureTableError, match=f"lacks feature column.*{plain.selected_[0]}"):
        plain.transform(train.drop(columns=plain.selected_[0]))


# ------------------------------------------------------------------ leakage
def test_validation_outcome_never_reaches_the_fitted_pipeline(train, validation):
    """``leak`` is noise in training and minus log survival time in validation (a perfect predictor there)."""
    t, e = validation["time"].to_numpy(), validation["event"].to_numpy()
    assert abs(stats.spearmanr(validation["leak"], t).statistic) == pytest.approx(1.0)
    pipe = pipeline().fit(train, train["time"], train["event"], "center")
    state = copy.deepcopy(pipe.to_dict())
    assert "leak" not in pipe.selected_
    assert next(u for u in pipe.univariate_ if u["feature"] == "leak")["q"] >= 0.10

    out = pipe.transform(validation, "center")  # an unseen centre: ComBat estimates its own location/scale
    assert pipe.to_dict() == state
    altered = validation.copy()
    altered["time"], altered["event"] = t[::-1], e[::-1]
    altered["leak"] = -np.log(altered["time"])
    altered[pipe.features_] = altered[pipe.features_] * 3.0
    pipe.transform(altered, "center")
    pipe.transform(pd.concat([train, altered], ignore_index=True), "center")
    assert pipe.to_dict() == state  # medians, means, ComBat estimates, selection: all untouched
    np.testing.assert_array_equal(pipe.transform(train, "center"),
                                  pipe.transform(pd.concat([train, altered]), "center").iloc[:len(train)])
    refit = pipeline().fit(train, train["time"], train["event"], "center")
    assert refit.to_dict() == state  # fitting is deterministic and only sees training rows
    assert out.shape == (len(validation), len(pipe.selected_))

    # the check has teeth: fitting on training + validation would select the leaking feature
    pooled = pd.concat([train, validation], ignore_index=True)
    leaky = pipeline().fit(pooled, pooled["time"], pooled["event"], "center")
    assert "leak" in leaky.selected_
    assert leaky.medians_ != state["medians_"]


def test_feature_wildcards_expand_in_table_order():
    from biomarkers.survival.preprocess import select_features

    table = pd.DataFrame({"subject_id": ["a"], "time": [1.0], "event": [1], "largest_deep_001": [1.0],
                          "largest_deep_000": [2.0], "age": [60.0], "center": ["C1"]})
    assert select_features(table, ["age", "largest_deep_*"]) == ["age", "largest_deep_001", "largest_deep_000"]
    assert select_features(table, None) == ["largest_deep_001", "largest_deep_000", "age"]
    with pytest.raises(FeatureTableError, match="no numeric feature column matches 'hottest_deep_\\*'"):
        select_features(table, ["hottest_deep_*"])
