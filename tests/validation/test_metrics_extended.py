"""Time-dependent metrics, calibration, paired comparison and uncertainty checks.

References: scikit-survival's metric functions called directly, lifelines' Cox model and
calibration function, brute-force pair counting, and a synthetic cohort with known answers.
"""
import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest
from sksurv.datasets import load_gbsg2
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.metrics import brier_score, cumulative_dynamic_auc, integrated_brier_score
from sksurv.preprocessing import OneHotEncoder

from biomarkers.errors import FeatureTableError
from biomarkers.validation.calibration import calibration_errors, calibration_table
from biomarkers.validation.compare import compare_models
from biomarkers.validation.evaluate import EvaluationOutputs, evaluate_to_files, metrics_rows
from biomarkers.stats import estimate
from biomarkers.validation.metrics import evaluate_scores, harrell_c
from biomarkers.validation.timedep import brier_scores, integrated_brier, survival_columns, timedep_metrics
from biomarkers.validation.uncertainty import discordance_rate, uncertainty_checks

HORIZONS = [365, 730, 1095, 1825]


@pytest.fixture(scope="module")
def gbsg2():
    """GBSG2 split 400 train / 286 test, Cox model fitted on train, test scores with surv columns."""
    X, y = load_gbsg2()
    X = X.assign(tgrade=X["tgrade"].map(len).astype(int))
    Xt = OneHotEncoder().fit_transform(X)
    perm = np.random.default_rng(0).permutation(len(y))
    tr, te = perm[:400], perm[400:]
    model = CoxPHSurvivalAnalysis(ties="efron").fit(Xt.iloc[tr], y[tr])
    risk = model.predict(Xt.iloc[te])
    surv = np.array([[fn(h) for h in HORIZONS] for fn in model.predict_survival_function(Xt.iloc[te])])
    scores = pd.DataFrame({"subject_id": [f"p{i}" for i in te], "risk": risk, "risk_sd": 0.0,
                           "risk_low": risk, "risk_high": risk,
                           "risk_group": np.where(risk > np.median(risk), "high", "low"),
                           "time": y["time"][te], "event": y["cens"][te].astype(int)})
    for j, h in enumerate(HORIZONS):
        scores[f"surv_{h}"] = surv[:, j]
    return {"scores": scores, "surv": surv, "y_train": y[tr], "y_test": y[te]}


def test_survival_columns():
    df = pd.DataFrame(columns=["subject_id", "surv_730", "surv_365", "surv_730_low", "surv_730_high",
                               "surv_x", "surv_1.5", "risk"])
    assert survival_columns(df) == {365.0: "surv_365", 730.0: "surv_730"}
    assert list(survival_columns(df)) == [365.0, 730.0]


def test_timedep_equals_sksurv(gbsg2):
    s, y = gbsg2["surv"], gbsg2["y_test"]
    ref_auc, ref_mean = cumulative_dynamic_auc(y, y, 1 - s, HORIZONS)
    _, ref_bs = brier_score(y, y, s, HORIZONS)
    ref_ibs = integrated_brier_score(y, y, s, HORIZONS)
    m = evaluate_scores(gbsg2["scores"], n_boot=20, seed=1)
    assert [e["estimate"] for e in m["time_dependent_auc"]] == pytest.approx(ref_auc, abs=1e-12)
    assert m["mean_time_dependent_auc"]["estimate"] == pytest.approx(ref_mean, abs=1e-12)
    assert [e["estimate"] for e in m["brier_score"]] == pytest.approx(ref_bs, abs=1e-12)
    assert m["integrated_brier_score"]["estimate"] == pytest.approx(ref_ibs, abs=1e-12)
    assert 0.65 < ref_mean < 0.8 and 0.1 < ref_ibs < 0.25  # a real signal, not a degenerate case
    # censoring distribution from the training outcome
    yt = gbsg2["y_train"]
    got = timedep_metrics(y["time"], y["cens"], s, HORIZONS, 0, 0, yt["time"], yt["cens"])
    assert [e["estimate"] for e in got["time_dependent_auc"]] == pytest.approx(
        cumulative_dynamic_auc(yt, y, 1 - s, HORIZONS)[0], abs=1e-12)
    assert [e["estimate"] for e in got["brier_score"]] == pytest.approx(brier_score(yt, y, s, HORIZONS)[1], abs=1e-12)
    assert got["integrated_brier_score"]["estimate"] == pytest.approx(integrated_brier_score(yt, y, s, HORIZONS))
    assert got["brier_score"][0]["estimate"] != pytest.approx(m["brier_score"][0]["estimate"], abs=1e-9)


def test_bootstrap_shares_resamples(gbsg2):
    """Every value of the cached multi-statistic bootstrap equals a plain `estimate` of it."""
    y, s = gbsg2["y_test"], gbsg2["surv"]
    t, e = y["time"], y["cens"]
    got = timedep_metrics(t, e, s, HORIZONS, 30, 5)
    ref = estimate(lambda i: brier_scores(t[i], e[i], s[i], HORIZONS, t, e)[2], len(t), 30, 5)
    assert got["brier_score"][2] == {"horizon_days": 1095.0, **ref}
    lo, hi = got["integrated_brier_score"]["ci95"]
    assert lo < got["integrated_brier_score"]["estimate"] < hi


def test_horizon_beyond_follow_up_dropped(gbsg2):
    scores = gbsg2["scores"].assign(surv_5000=0.3)
    m = evaluate_scores(scores, n_boot=0)
    assert m["horizons"]["used_days"] == [float(h) for h in HORIZONS]
    assert m["horizons"]["dropped"][0]["horizon_days"] == 5000.0
    assert "largest observed time" in m["notes"][0]
    y, s = gbsg2["y_test"], gbsg2["surv"]
    assert [e["estimate"] for e in m["brier_score"]] == pytest.approx(brier_score(y, y, s, HORIZONS)[1], abs=1e-12)
    with pytest.raises(FeatureTableError, match="cannot calibrate at 5000 d"):
        evaluate_scores(scores, n_boot=0, horizon_days=5000)


def test_ibs_needs_two_horizons(gbsg2):
    with pytest.raises(FeatureTableError, match="at least 2 horizons"):
        integrated_brier([730.0], np.array([0.2]))
    single = gbsg2["scores"].drop(columns=["surv_365", "surv_1095", "surv_1825"])
    m = evaluate_scores(single, n_boot=0)
    assert m["integrated_brier_score"]["estimate"] is None and "2 horizons" in m["integrated_brier_score"]["note"]
    assert m["calibration"]["horizon_days"] == 730.0


def test_calibration_equals_cox_on_rcs_fitted_by_lifelines(gbsg2):
    """Austin et al.'s smoother rebuilt from lifelines' CoxPHFitter and lifelines' own spline basis."""
    from lifelines import CoxPHFitter
    from lifelines.fitters.mixins import SplineFitterMixin

    scores, t0 = gbsg2["scores"], 1095.0
    pred = 1 - scores["surv_1095"].to_numpy()
    x = np.log(-np.log(1 - pred))
    k = np.percentile(x, [10, 50, 90])
    df = pd.DataFrame({"x": x, "x_nl": SplineFitterMixin().basis(x, k[1], k[0], k[2]),
                       "T": scores["time"], "E": scores["event"]})
    cph = CoxPHFitter().fit(df, "T", "E")
    obs = 1 - cph.predict_survival_function(df[["x", "x_nl"]], times=[t0]).to_numpy().ravel()
    delta = np.abs(obs - pred)
    ici, e50, e90 = calibration_errors(scores["time"], scores["event"], pred, t0)
    assert ici == pytest.approx(delta.mean(), abs=1e-6)
    assert e50 == pytest.approx(np.median(delta), abs=1e-6)
    assert e90 == pytest.approx(np.percentile(delta, 90), abs=1e-6)
    assert 0.01 < ici < 0.2  # out-of-sample: visibly but not grossly miscalibrated


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # lifelines' cloglog of its grid end 0
@pytest.mark.parametrize("stretch", [1.0, 0.8, 2.0])
def test_calibration_close_to_lifelines_function(stretch):
    """lifelines smooths with a parametric AFT spline model, not a Cox model: agreement to 0.005.

    ``stretch`` rescales the training times so that the model is miscalibrated on the real
    times (ICI 0.04-0.10), where a wrong implementation would be far off.
    """
    import matplotlib.pyplot as plt
    from lifelines import CoxPHFitter
    from lifelines.calibration import survival_probability_calibration
    from lifelines.datasets import load_rossi

    rossi = load_rossi()
    cph = CoxPHFitter().fit(rossi.assign(week=rossi["week"] * stretch), "week", "arrest")
    for t0 in (30, 40):
        with contextlib.redirect_stdout(io.StringIO()):
            _, ici_ref, e50_ref = survival_probability_calibration(cph, rossi, t0)
        plt.close("all")
        pred = 1 - cph.predict_survival_function(rossi, times=[t0]).to_numpy().ravel()
        ici, e50, _ = calibration_errors(rossi["week"], rossi["arrest"], pred, t0)
        assert ici == pytest.approx(ici_ref, abs=0.005)
        assert e50 == pytest.approx(e50_ref, abs=0.005)
        if stretch == 1.0:
            assert ici < 0.003  # in-sample Cox model: the Cox smoother reproduces it up to the spline term
        else:
            assert ici > 0.03


def test_calibration_table_is_grouped_kaplan_meier(gbsg2):
    from lifelines import KaplanMeierFitter

    scores, t0 = gbsg2["scores"], 730.0
    pred = 1 - scores["surv_730"].to_numpy()
    tab = calibration_table(scores["time"], scores["event"], pred, t0, n_groups=5)
    assert tab["n"].tolist() == [58, 57, 57, 57, 57] and tab["n"].sum() == len(scores)
    assert np.all(np.diff(tab["predicted"]) > 0)
    order = np.argsort(pred, kind="stable")
    top = scores.iloc[order[-57:]]
    km = KaplanMeierFitter().fit(top["time"], top["event"])
    assert tab["observed"].iloc[-1] == pytest.approx(1 - km.predict(t0), abs=1e-12)
    assert tab["predicted"].iloc[-1] == pytest.approx(pred[order[-57:]].mean())
    ci = km.confidence_interval_survival_function_
    lo_s = ci.iloc[:, 0][ci.index <= t0].iloc[-1]
    hi_s = ci.iloc[:, 1][ci.index <= t0].iloc[-1]
    assert tab["observed_low"].iloc[-1] == pytest.approx(1 - hi_s, abs=1e-6)
    assert tab["observed_high"].iloc[-1] == pytest.approx(1 - lo_s, abs=1e-6)


def test_paired_comparison_identical_models(gbsg2):
    a = gbsg2["scores"]
    b = a.sample(frac=1.0, random_state=3)[["subject_id", "risk"]]  # other row order, no outcome columns
    res = compare_models({"cox": a, "cox_again": b}, n_boot=50, seed=2)
    assert list(res.columns[:7]) == ["model_a", "model_b", "metric", "c_a", "c_b", "difference", "ci_low"]
    assert res["metric"].tolist() == ["harrell_c", "uno_c"]
    assert res["difference"].tolist() == [0.0, 0.0]
    assert res["ci_low"].tolist() == [0.0, 0.0] and res["ci_high"].tolist() == [0.0, 0.0]
    assert res["p"].tolist() == [1.0, 1.0]


def test_paired_comparison_negated_model(gbsg2):
    cox = gbsg2["scores"]
    neg = cox.assign(risk=-cox["risk"])
    noisy = cox.assign(risk=cox["risk"] + np.random.default_rng(4).normal(scale=2.0, size=len(cox)))
    res = compare_models({"negated": neg, "cox": cox, "noisy": noisy}, n_boot=100, seed=0)
    assert len(res) == 6
    row = res[(res.model_a == "negated") & (res.model_b == "cox") & (res.metric == "harrell_c")].iloc[0]
    c = harrell_c(cox["time"].to_numpy(), cox["event"].to_numpy(), cox["risk"].to_numpy())
    assert row["difference"] == pytest.approx((1 - c) - c, abs=1e-12)
    assert row["difference"] < 0 and row["ci_high"] < 0 and row["p"] < 0.05
    uno = res[(res.model_a == "negated") & (res.model_b == "cox") & (res.metric == "uno_c")].iloc[0]
    assert uno["difference"] < 0 and uno["p"] < 0.05


def test_paired_comparison_needs_same_subjects(gbsg2):
    a = gbsg2["scores"]
    with pytest.raises(FeatureTableError, match="different subjects.*1 only in 'a'"):
        compare_models({"a": a, "b": a.iloc[1:]}, n_boot=5)


def _brute_force_rates(time, event, risk):
    n = len(time)
    disc, comp = np.zeros(n), np.zeros(n)
    for i in range(n):
        for j in range(n):
            if i == j or not event[i]:
                continue
            if time[j] > time[i] or (time[j] == time[i] and not event[j]):
                w = 0.5 if abs(risk[j] - risk[i]) <= 1e-8 else float(risk[j] > risk[i])
                for k in (i, j):
                    comp[k] += 1
                    disc[k] += w
    return disc, comp


def test_discordance_rate_brute_force():
    rng = np.random.default_rng(11)
    n = 60
    time = np.round(rng.exponential(10, n))  # tied times
    event = rng.random(n) < 0.6
    risk = np.round(rng.normal(size=n), 1) - 0.05 * time  # tied risks
    disc, comp = _brute_force_rates(time, event, risk)
    rate = discordance_rate(time, event, risk, chunk=7)
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(rate, disc / comp, rtol=0, atol=1e-12)
    assert disc.sum() / comp.sum() == pytest.approx(1 - harrell_c(time, event.astype(int), risk), abs=1e-12)


@pytest.fixture(scope="module")
def uncertain_cohort():
    """MC-dropout-like scores where the subjects given large risk_sd were scored at random."""
    rng = np.random.default_rng(5)
    n = 300
    lp = rng.normal(size=n)
    t_event = rng.exponential(1000 * np.exp(-lp))
    t_cens = rng.uniform(300, 3000, size=n)
    time = np.round(np.minimum(t_event, t_cens), 1)
    event = (t_event <= t_cens).astype(int)
    bad = rng.random(n) < 0.25
    risk = np.where(bad, rng.normal(scale=1.5, size=n), lp)
    risk_sd = np.where(bad, rng.uniform(0.8, 1.5, n), rng.uniform(0.05, 0.5, n))
    return pd.DataFrame({"subject_id": [f"u{i}" for i in range(n)], "risk": risk, "risk_sd": risk_sd,
                         "risk_low": risk - 1.96 * risk_sd, "risk_high": risk + 1.96 * risk_sd,
                         "risk_group": np.where(risk > np.median(risk), "high", "low"),
                         "abstain": risk_sd > 0.65, "time": time, "event": event})


def test_uncertainty_checks_synthetic(uncertain_cohort):
    df = uncertain_cohort
    u = uncertainty_checks(df, n_boot=50, seed=0)
    t, e, r = df["time"].to_numpy(), df["event"].to_numpy(), df["risk"].to_numpy()
    keep = ~df["abstain"].to_numpy()
    ab = u["abstention"]
    assert ab["n_abstained"] == int(df["abstain"].sum()) and ab["n_retained"] + ab["n_abstained"] == len(df)
    assert ab["all"]["estimate"] == pytest.approx(harrell_c(t, e, r))
    assert ab["retained"]["estimate"] == pytest.approx(harrell_c(t[keep], e[keep], r[keep]))
    assert ab["retained"]["estimate"] > ab["all"]["estimate"] + 0.03 > ab["abstained"]["estimate"] + 0.03
    assert ab["retained_minus_all"]["ci95"][0] > 0
    tert = [x["harrell_c"]["estimate"] for x in u["risk_sd_tertiles"]]
    assert tert[0] > tert[2] + 0.1 and [x["n"] for x in u["risk_sd_tertiles"]] == [100, 100, 100]
    rho = u["discordance_spearman"]
    assert rho["estimate"] > 0.1 and rho["p"] < 0.01 and rho["ci95"][0] > 0 and rho["n"] == len(df)
    rate = discordance_rate(t, e, r)
    assert np.nanmean(rate[~keep]) > np.nanmean(rate[keep]) + 0.1  # the randomly scored are discordant
    # without a signal in risk_sd the checks see none
    flat = uncertainty_checks(df.assign(risk_sd=np.random.default_rng(1).uniform(0, 1, len(df))), n_boot=0)
    assert abs(flat["discordance_spearman"]["estimate"]) < 0.15


def test_abstention_against_the_nearest_cutoff_control(uncertain_cohort):
    df = uncertain_cohort
    cutoff = float(np.median(df["risk"]))
    t, e, r = df["time"].to_numpy(), df["event"].to_numpy(), df["risk"].to_numpy()
    ab = uncertainty_checks(df, n_boot=50, seed=0, risk_cutoff=cutoff)["abstention"]
    k = int(df["abstain"].sum())
    near = np.argsort(np.abs(r - cutoff))[:k]
    kept = np.setdiff1d(np.arange(len(df)), near)
    assert ab["nearest_cutoff"]["estimate"] == pytest.approx(harrell_c(t[kept], e[kept], r[kept]))
    # here risk_sd marks the randomly scored patients: it beats dropping those nearest the cut-off
    assert ab["retained_minus_nearest_cutoff"]["ci95"][0] > 0
    # abstaining exactly on the nearest patients is the control itself
    same = df.assign(abstain=np.isin(np.arange(len(df)), near))
    ctrl = uncertainty_checks(same, n_boot=20, seed=0, risk_cutoff=cutoff)["abstention"]
    assert ctrl["retained_minus_nearest_cutoff"]["estimate"] == 0.0
    assert ctrl["retained_minus_nearest_cutoff"]["ci95"] == [0.0, 0.0]


def test_evaluate_scores_extended(gbsg2, uncertain_cohort):
    m = evaluate_scores(gbsg2["scores"], n_boot=10, seed=3)
    assert m["calibration"]["horizon_days"] == 730.0  # lower middle of 4 horizons
    assert "uncertainty" not in m  # risk_sd == 0
    assert evaluate_scores(gbsg2["scores"], n_boot=0, horizon_days=1825)["calibration"]["horizon_days"] == 1825.0
    json.dumps(m, allow_nan=False)
    labels = metrics_rows(m)["metric"].tolist()
    for label in ("Harrell's C", "time-dependent AUC at 730 d", "Brier score at 1825 d", "integrated Brier score",
                  "mean time-dependent AUC", "ICI at 730 d", "E50 at 730 d", "E90 at 730 d"):
        assert label in labels
    u = evaluate_scores(uncertain_cohort, n_boot=10, seed=3)
    assert u == evaluate_scores(uncertain_cohort, n_boot=10, seed=3)  # seeded: identical
    json.dumps(u, allow_nan=False)
    assert "calibration" not in u and "horizons" not in u
    labels = metrics_rows(u)["metric"].tolist()
    assert "Harrell's C, risk_sd tertile 3 (highest)" in labels
    assert f"Harrell's C, retained (n abstained = {int(uncertain_cohort['abstain'].sum())})" in labels
    # deterministic scores without surv columns: exactly the keys the evaluation always had
    plain = uncertain_cohort.drop(columns=["abstain"]).assign(risk_sd=0.0)
    assert set(evaluate_scores(plain, n_boot=5)) == {"n_subjects", "n_events", "bootstrap", "harrell_c", "uno_c",
                                                     "risk_groups"}


def test_evaluate_to_files_writes_rows_and_figures(gbsg2, tmp_path):
    scores = gbsg2["scores"].assign(risk_sd=np.linspace(0.01, 0.5, len(gbsg2["scores"])))
    scores["abstain"] = scores["risk_sd"] > 0.45
    path = tmp_path / "scores.parquet"
    scores.to_parquet(path)
    out = tmp_path / "m.json"
    outputs = EvaluationOutputs(table=tmp_path / "m.tsv", cindex_plot=tmp_path / "c.png", label="test",
                                calibration_plot=tmp_path / "cal.png", uncertainty_plot=tmp_path / "unc.png")
    evaluate_to_files(path, out, outputs=outputs, n_boot=10)
    metrics = json.loads(out.read_text())
    assert metrics["calibration"]["ici"]["estimate"] > 0
    tsv = pd.read_csv(tmp_path / "m.tsv", sep="\t")
    assert {"ICI at 730 d", "integrated Brier score", "log-rank p (high vs low)"} <= set(tsv["metric"])
    assert list(tsv.columns) == ["cohort", "metric", "estimate", "ci_low", "ci_high"]
    for png in ("c.png", "cal.png", "unc.png"):
        assert (tmp_path / png).stat().st_size > 10_000


def test_headline_table_formats_estimates_with_intervals():
    from biomarkers.validation.evaluate import headline_table

    rows = pd.DataFrame([
        ("coxph", "validation", "Harrell's C", 0.7039, 0.5987, 0.8042),
        ("coxph", "validation", "Harrell's C, retained (n abstained = 3)", 0.9, 0.8, 1.0),
        ("coxph", "validation", "ICI at 730 d", 0.0326, 0.0214, 0.1588),
        ("coxph", "validation", "hazard ratio high vs low", 2.938, 1.443, 5.983),
        ("coxph", "validation", "log-rank p (high vs low)", 0.001903, np.nan, np.nan),
        ("rsf", "validation", "Harrell's C", 0.65, 0.55, 0.75),
    ], columns=["model", "cohort", "metric", "estimate", "ci_low", "ci_high"])
    table = headline_table(rows)
    first = table.iloc[0]
    assert first["Harrell's C"] == "0.704 (0.599-0.804)"  # not the retained-patients row
    assert first["ICI"] == "0.033 (0.021-0.159)" and first["HR high/low"] == "2.94 (1.44-5.98)"
    assert first["log-rank p"] == "0.0019"
    assert list(table["model"]) == ["coxph", "rsf"] and table.iloc[1]["ICI"] == ""
