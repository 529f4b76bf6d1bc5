"""Validation statistics against lifelines' and scikit-survival's own functions."""
import numpy as np
import pandas as pd
import pytest
from lifelines.statistics import logrank_test
from lifelines.utils import concordance_index
from sksurv.metrics import concordance_index_ipcw
from sksurv.util import Surv

from biomarkers.validation.metrics import evaluate_scores, harrell_c, uno_c


@pytest.fixture
def cohort():
    rng = np.random.default_rng(7)
    n = 120
    lp = rng.normal(size=n)
    t_event = rng.exponential(1000 * np.exp(-lp))
    t_cens = rng.uniform(200, 2500, size=n)
    time = np.round(np.minimum(t_event, t_cens), 1)
    event = (t_event <= t_cens).astype(int)
    risk = lp + rng.normal(scale=0.8, size=n)
    return pd.DataFrame({"subject_id": [f"s{i}" for i in range(n)], "risk": risk, "risk_sd": 0.0,
                         "risk_group": np.where(risk > np.median(risk), "high", "low"),
                         "time": time, "event": event}), lp


def test_harrell_matches_lifelines(cohort):
    df, _ = cohort
    ours = harrell_c(df["time"].to_numpy(), df["event"].to_numpy(), df["risk"].to_numpy())
    # lifelines scores concordance of predicted *survival*, so pass minus the risk.
    assert ours == pytest.approx(concordance_index(df["time"], -df["risk"], df["event"]), abs=1e-12)


def test_uno_matches_scikit_survival(cohort):
    df, _ = cohort
    y = Surv.from_arrays(df["event"].astype(bool), df["time"])
    tau = float(np.quantile(df["time"], 0.8))
    ref = concordance_index_ipcw(y, y, df["risk"].to_numpy(), tau=tau)[0]
    assert uno_c(df["time"].to_numpy(), df["event"].to_numpy(), df["risk"].to_numpy(), tau) == pytest.approx(ref)


def test_evaluate_scores(cohort):
    df, lp = cohort
    truth = pd.DataFrame({"subject_id": df["subject_id"], "true_lp": lp})
    m = evaluate_scores(df, truth, n_boot=200, seed=3)
    assert m == evaluate_scores(df, truth, n_boot=200, seed=3)  # seeded: identical
    for key in ("harrell_c", "uno_c", "oracle_harrell_c"):
        lo, hi = m[key]["ci95"]
        assert lo < m[key]["estimate"] < hi
    # the noisy score cannot beat the true linear predictor by much
    assert m["oracle_harrell_c"]["estimate"] > m["harrell_c"]["estimate"] > 0.6
    high, low = df[df.risk_group == "high"], df[df.risk_group == "low"]
    p = logrank_test(high.time, low.time, high.event, low.event).p_value
    assert m["risk_groups"]["logrank_p"] == pytest.approx(p)
    assert m["risk_groups"]["hazard_ratio_high_vs_low"]["estimate"] > 1
    assert m["risk_groups"]["groups"]["high"]["n"] == 60


def test_truth_must_cover_every_subject(cohort):
    df, lp = cohort
    truth = pd.DataFrame({"subject_id": df["subject_id"][1:], "true_lp": lp[1:]})
    with pytest.raises(Exception, match="subject s0"):
        evaluate_scores(df, truth, n_boot=10)


def test_harrell_equals_scikit_survival_on_gbsg2_resamples():
    """The pair-matrix count gives sksurv's float exactly: real tied times, tied risks, duplicates."""
    from sksurv.datasets import load_gbsg2
    from sksurv.metrics import concordance_index_censored

    x, y = load_gbsg2()
    time, event = y["time"].astype(float), y["cens"].astype(bool)
    risk = np.round(x["pnodes"].to_numpy(float) / 3 - x["progrec"].to_numpy(float) / 300, 1)  # many ties
    rng = np.random.default_rng(3)
    for size in (686, 40, 7, 2):
        for _ in range(5):
            i = rng.integers(0, len(time), size=size)  # bootstrap resample: repeated subjects tie in time
            if not event[i].any():
                continue
            assert harrell_c(time[i], event[i], risk[i]) == concordance_index_censored(event[i], time[i], risk[i])[0]
    with pytest.raises(ValueError, match="censored"):
        harrell_c(time[:5], np.zeros(5), risk[:5])
    with pytest.raises(ValueError):
        harrell_c(time[:5], event[:5], np.array([0.1, np.nan, 0.2, 0.3, 0.4]))
