"""C-indices with bootstrap intervals, risk-group survival comparison.

Estimators (named as users will cite them):

* Harrell's C: ``sksurv.metrics.concordance_index_censored`` (ties in risk count 1/2).
* Uno's C: ``sksurv.metrics.concordance_index_ipcw``, inverse-probability-of-censoring
  weighted (Uno et al., Stat Med 2011), truncated at ``tau``; the censoring distribution
  is the Kaplan-Meier estimate on the evaluated cohort itself (or a given training outcome).
* 95 % intervals: percentile bootstrap over subjects, seeded; every statistic of one
  evaluation uses the same resamples.
* Risk groups: log-rank test (lifelines) and the Cox hazard ratio of high vs low.

With ``surv_<T>`` columns :func:`evaluate_scores` adds time-dependent AUC, Brier scores
(:mod:`biomarkers.validation.timedep`) and calibration (:mod:`biomarkers.validation.calibration`);
with ``risk_sd > 0`` the uncertainty checks (:mod:`biomarkers.validation.uncertainty`).
Paired model comparison: :mod:`biomarkers.validation.compare`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from biomarkers.errors import FeatureTableError
from biomarkers.stats import bootstrap, bootstrap_values, estimate, harrell_c, uno_c

__all__ = ["bootstrap", "bootstrap_values", "evaluate_scores", "harrell_c", "risk_group_stats", "uno_c"]


def evaluate_scores(scores: pd.DataFrame, truth: pd.DataFrame | None = None, n_boot: int = 1000,
                    seed: int = 0, tau_quantile: float = 0.8, *, horizon_days: float | None = None,
                    censoring_outcome: tuple[np.ndarray, np.ndarray] | None = None,
                    calibration_groups: int = 10, uncertainty: bool = True,
                    risk_cutoff: float | None = None) -> dict:
    """Validation statistics of a scored cohort.

    Parameters
    ----------
    scores : DataFrame
        ``subject_id``, ``risk``, ``risk_group``, ``time``, ``event``; optional ``risk_sd``,
        ``abstain`` and survival-probability columns ``surv_<T>`` (T in days).
    truth : DataFrame, optional
        ``subject_id``, ``true_lp`` (simulated cohorts): adds the oracle C-index, computed on
        the same bootstrap resamples.
    n_boot, seed : int
        Bootstrap resamples and their seed.
    tau_quantile : float
        Uno's C is truncated at this quantile of the observed times.
    horizon_days : float, optional
        Horizon of the calibration; one of the ``surv_<T>`` horizons. Default the middle
        usable horizon (the lower middle of an even number).
    censoring_outcome : (ndarray, ndarray), optional
        Training ``(time, event)`` whose Kaplan-Meier censoring distribution gives the IPC
        weights of Uno's C, the time-dependent AUC and the Brier scores; default the
        evaluated cohort itself.
    calibration_groups : int
        Groups of predicted risk in the calibration table (10 deciles, 5 quintiles); fewer
        when the cohort has under 5 patients per group (said in ``notes``).
    uncertainty : bool
        Add the uncertainty checks (:mod:`biomarkers.validation.uncertainty`) when
        ``risk_sd`` is positive for some subject.
    risk_cutoff : float, optional
        The frozen risk-group cut-off, for the uncertainty checks' control (abstaining on the
        patients nearest the cut-off instead).

    Returns
    -------
    dict
        JSON-ready statistics. With ``surv_<T>`` columns also ``horizons``,
        ``time_dependent_auc``, ``brier_score``, ``mean_time_dependent_auc``,
        ``integrated_brier_score`` and ``calibration``; with ``risk_sd > 0`` also
        ``uncertainty``; ``notes`` lists horizons that were dropped and why.
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
    ctime, cevent = (time, event) if censoring_outcome is None else (
        np.asarray(censoring_outcome[0], dtype=float), np.asarray(censoring_outcome[1], dtype=int))
    tau = float(np.quantile(time, tau_quantile))
    out: dict = {
        "n_subjects": n, "n_events": int(event.sum()),
        "bootstrap": {"n_boot": n_boot, "seed": seed, "interval": "percentile"},
        "harrell_c": estimate(lambda i: harrell_c(time[i], event[i], risk[i]), n, n_boot, seed),
        "uno_c": estimate(lambda i: uno_c(time[i], event[i], risk[i], tau, ctime, cevent), n, n_boot, seed),
    }
    out["uno_c"]["tau_days"] = tau
    if censoring_outcome is not None:
        out["uno_c"]["censoring"] = f"training outcome (n={len(ctime)})"
    if truth is not None:
        lp = _align_truth(scores, truth)
        out["oracle_harrell_c"] = estimate(lambda i: harrell_c(time[i], event[i], lp[i]), n, n_boot, seed)
    out["risk_groups"] = risk_group_stats(scores)
    out.update(_probability_metrics(scores, n_boot, seed, horizon_days, censoring_outcome, calibration_groups))
    if uncertainty and "risk_sd" in scores.columns and (scores["risk_sd"].to_numpy(float) > 0).any():
        from biomarkers.validation.uncertainty import uncertainty_checks

        out["uncertainty"] = uncertainty_checks(scores, n_boot, seed, risk_cutoff)
    return out


def _probability_metrics(scores: pd.DataFrame, n_boot: int, seed: int, horizon_days: float | None,
                         censoring_outcome: tuple[np.ndarray, np.ndarray] | None, calibration_groups: int) -> dict:
    """Time-dependent AUC, Brier/IBS and calibration from the ``surv_<T>`` columns (empty without them)."""
    from biomarkers.validation.calibration import calibration_metrics
    from biomarkers.validation.timedep import survival_columns, timedep_metrics, usable_horizons

    columns = survival_columns(scores)
    if not columns:
        if horizon_days is not None:
            raise FeatureTableError("a calibration horizon was given but the scores have no surv_<T> columns")
        return {}
    surv = scores[list(columns.values())].to_numpy(float)
    if not np.all((surv >= 0) & (surv <= 1)):
        raise FeatureTableError("survival columns " + ", ".join(columns.values())
                                + " must hold probabilities in [0, 1] without missing values")
    time, event = scores["time"].to_numpy(float), scores["event"].to_numpy(int)
    ctime, cevent = (None, None) if censoring_outcome is None else (
        np.asarray(censoring_outcome[0], dtype=float), np.asarray(censoring_outcome[1], dtype=int))
    used, dropped = usable_horizons(time, event, list(columns), ctime)
    notes = [f"horizon {d['horizon_days']:g} d dropped: {d['reason']}" for d in dropped]
    out: dict = {"horizons": {"available_days": list(columns), "used_days": used, "dropped": dropped,
                              "censoring_distribution": "evaluated cohort (Kaplan-Meier)" if ctime is None
                              else f"training outcome (Kaplan-Meier, n={len(ctime)})"}}
    if horizon_days is not None and float(horizon_days) not in used:
        why = next((d["reason"] for d in dropped if d["horizon_days"] == float(horizon_days)),
                   f"no column surv_{horizon_days:g} (have {', '.join(columns.values())})")
        raise FeatureTableError(f"cannot calibrate at {horizon_days:g} d: {why}")
    if used:
        cols = [list(columns).index(h) for h in used]
        out.update(timedep_metrics(time, event, surv[:, cols], used, n_boot, seed, ctime, cevent))
        t0 = float(horizon_days) if horizon_days is not None else used[(len(used) - 1) // 2]
        groups = max(1, min(calibration_groups, len(scores) // 5))  # at least 5 patients per group
        if groups < calibration_groups:
            notes.append(f"calibration table: {groups} group(s) instead of {calibration_groups} "
                         f"for {len(scores)} subjects (at least 5 per group)")
        try:
            out["calibration"] = calibration_metrics(time, event, surv[:, list(columns).index(t0)], t0,
                                                     n_boot, seed, groups)
        except FeatureTableError as exc:  # e.g. a forest that predicts (almost) one value for everyone
            out["calibration"] = {"horizon_days": t0, "undefined": str(exc)}
            notes.append(str(exc))
    else:
        notes.append("no usable survival horizon: time-dependent metrics and calibration skipped")
    out["notes"] = notes
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
