"""C-indices with bootstrap intervals, risk-group survival comparison.

Estimators (named as users will cite them):

* Harrell's C: ``sksurv.metrics.concordance_index_censored`` (ties in risk count 1/2).
* Uno's C: ``sksurv.metrics.concordance_index_ipcw``, inverse-probability-of-censoring
  weighted (Uno et al., Stat Med 2011), truncated at ``tau``; the censoring distribution
  is the Kaplan-Meier estimate on the evaluated cohort itself.
* 95 % intervals: percentile bootstrap over subjects, seeded.
* Risk groups: log-rank test (lifelines) and the Cox hazard ratio of high vs low.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from biomarkers.errors import FeatureTableError


def _surv(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    from sksurv.util import Surv

    return Surv.from_arrays(event=event.astype(bool), time=time.astype(float))


def harrell_c(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's concordance index (higher risk should mean shorter time)."""
    from sksurv.metrics import concordance_index_censored

    return float(concordance_index_censored(event.astype(bool), time.astype(float), risk)[0])


def uno_c(time: np.ndarray, event: np.ndarray, risk: np.ndarray, tau: float,
          censoring_time: np.ndarray | None = None, censoring_event: np.ndarray | None = None) -> float:
    """Uno's IPCW concordance truncated at ``tau``.

    The censoring distribution is estimated on (``censoring_time``, ``censoring_event``),
    by default the same subjects.
    """
    from sksurv.metrics import concordance_index_ipcw

    if censoring_time is None:
        censoring_time, censoring_event = time, event
    return float(concordance_index_ipcw(_surv(censoring_time, censoring_event), _surv(time, event), risk, tau=tau)[0])


def bootstrap(statistic: Callable[[np.ndarray], float], n: int, n_boot: int, seed: int) -> np.ndarray:
    """Values of ``statistic(indices)`` over ``n_boot`` resamples of ``range(n)`` with replacement.

    Resamples on which the statistic is undefined (not finite, or raises ``ValueError`` or
    ``ZeroDivisionError``, e.g. no comparable pair) are skipped; their number is reported.
    """
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, size=n)
        try:
            value = statistic(idx)
        except (ValueError, ZeroDivisionError):
            continue
        if np.isfinite(value):
            values.append(value)
    return np.asarray(values, dtype=np.float64)


def _estimate(statistic: Callable[[np.ndarray], float], n: int, n_boot: int, seed: int) -> dict:
    boot = bootstrap(statistic, n, n_boot, seed)
    lo, hi = np.percentile(boot, [2.5, 97.5]) if len(boot) else (None, None)
    return {"estimate": statistic(np.arange(n)), "ci95": [_num(lo), _num(hi)], "n_boot_used": int(len(boot))}


def _num(value) -> float | None:
    """A float for JSON, or None where undefined (JSON has no NaN)."""
    return None if value is None or not np.isfinite(value) else float(value)


def evaluate_scores(scores: pd.DataFrame, truth: pd.DataFrame | None = None, n_boot: int = 1000,
                    seed: int = 0, tau_quantile: float = 0.8) -> dict:
    """Validation statistics of a scored cohort.

    Parameters
    ----------
    scores : DataFrame
        ``subject_id``, ``risk``, ``risk_group``, ``time``, ``event``.
    truth : DataFrame, optional
        ``subject_id``, ``true_lp`` (simulated cohorts): adds the oracle C-index, computed on
        the same bootstrap resamples.
    n_boot, seed : int
        Bootstrap resamples and their seed.
    tau_quantile : float
        Uno's C is truncated at this quantile of the observed times.
    """
    missing = [c for c in ("subject_id", "risk", "risk_group", "time", "event") if c not in scores.columns]
    if missing:
        raise FeatureTableError(f"scores lack column(s) {', '.join(missing)} (score a table with outcomes)")
    time = scores["time"].to_numpy(float)
    event = scores["event"].to_numpy(int)
    risk = scores["risk"].to_numpy(float)
    n = len(scores)
    if event.sum() < 2:
        raise FeatureTableError(f"only {int(event.sum())} event(s) in the scored cohort; nothing to evaluate")
    tau = float(np.quantile(time, tau_quantile))
    out: dict = {
        "n_subjects": n, "n_events": int(event.sum()),
        "bootstrap": {"n_boot": n_boot, "seed": seed, "interval": "percentile"},
        "harrell_c": _estimate(lambda i: harrell_c(time[i], event[i], risk[i]), n, n_boot, seed),
        "uno_c": _estimate(lambda i: uno_c(time[i], event[i], risk[i], tau, time, event), n, n_boot, seed),
    }
    out["uno_c"]["tau_days"] = tau
    if truth is not None:
        lp = _align_truth(scores, truth)
        out["oracle_harrell_c"] = _estimate(lambda i: harrell_c(time[i], event[i], lp[i]), n, n_boot, seed)
    out["risk_groups"] = risk_group_stats(scores)
    return out


def _align_truth(scores: pd.DataFrame, truth: pd.DataFrame) -> np.ndarray:
    lp = scores[["subject_id"]].merge(truth[["subject_id", "true_lp"]], on="subject_id", how="left")["true_lp"]
    if lp.isna().any():
        sid = scores["subject_id"][lp.isna().to_numpy()].iloc[0]
        raise FeatureTableError(f"subject {sid}: no true_lp in the truth table")
    return lp.to_numpy(float)


def risk_group_stats(scores: pd.DataFrame) -> dict:
    """Per-group counts and median survival, log-rank p-value and hazard ratio (high vs low)."""
    from lifelines import CoxPHFitter, KaplanMeierFitter
    from lifelines.statistics import logrank_test

    groups: dict = {}
    for name, grp in scores.groupby("risk_group", sort=True):
        km = KaplanMeierFitter().fit(grp["time"], grp["event"])
        median = km.median_survival_time_
        groups[str(name)] = {"n": int(len(grp)), "events": int(grp["event"].sum()),
                             "median_survival_days": None if not np.isfinite(median) else float(median)}
    out: dict = {"groups": groups}
    high, low = scores[scores["risk_group"] == "high"], scores[scores["risk_group"] == "low"]
    if len(high) and len(low):
        test = logrank_test(high["time"], low["time"], high["event"], low["event"])
        out["logrank_p"] = float(test.p_value)
        df = pd.DataFrame({"time": scores["time"], "event": scores["event"],
                           "high": (scores["risk_group"] == "high").astype(float)})
        cph = CoxPHFitter().fit(df, "time", "event")
        row = cph.summary.loc["high"]
        out["hazard_ratio_high_vs_low"] = {"estimate": float(row["exp(coef)"]),
                                           "ci95": [float(row["exp(coef) lower 95%"]),
                                                    float(row["exp(coef) upper 95%"])]}
    return out
