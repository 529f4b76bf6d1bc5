"""Checks that an uncertainty-aware score's spread (``risk_sd``) flags its unreliable cases.

(a) Does ranking error grow with ``risk_sd``? Harrell's C within tertiles of ``risk_sd``,
    and the Spearman correlation between ``risk_sd`` and each subject's discordance rate:
    the fraction of the comparable pairs the subject belongs to that the score orders
    wrongly (ties in risk count 1/2). Comparable pairs are those of
    ``sksurv.metrics.concordance_index_censored``: the earlier time is an event, or equal
    times with the event against a censoring. Summed over subjects, discordant weight over
    comparable pairs is exactly ``1 - Harrell's C``.
(b) Abstention: Harrell's C of the retained subjects (``abstain == False``), of all, and of
    the abstained, and the retained-minus-all difference.

Every interval is a percentile bootstrap over the whole cohort on the same seeded
resamples as the other statistics; tertile and abstention labels are those of the full
cohort, so a resample's tertile sizes vary. Discordance rates cost O(n^2) per resample.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from biomarkers.errors import FeatureTableError
from biomarkers.stats import discordance_rate, estimate, guarded_estimate, harrell_c, num



def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    ok = np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return np.nan
    return float(spearmanr(x[ok], y[ok]).statistic)


def sd_tertiles(risk_sd: np.ndarray) -> np.ndarray:
    """Tertile (0, 1, 2 = lowest to highest ``risk_sd``) of every subject; ties broken by row order."""
    return pd.qcut(pd.Series(np.asarray(risk_sd, dtype=float)).rank(method="first"), 3, labels=False).to_numpy()


def uncertainty_checks(scores: pd.DataFrame, n_boot: int = 1000, seed: int = 0,
                       risk_cutoff: float | None = None) -> dict:
    """Whether ``risk_sd`` tracks ranking error, and what abstaining buys.

    Parameters
    ----------
    scores : DataFrame
        ``risk``, ``risk_sd``, ``time``, ``event``; optional boolean ``abstain``.
    n_boot, seed : int
        Bootstrap resamples and their seed.
    risk_cutoff : float, optional
        The frozen risk-group cut-off. With it, the abstention is compared with a control that
        needs no uncertainty at all: abstaining on the same number of patients whose risk lies
        nearest the cut-off (the patients whose group is most easily wrong). Abstention that
        beats this control shows the MC-dropout spread adds information beyond the score.

    Returns
    -------
    dict
        ``risk_sd_tertiles``: list of 3 dicts (``tertile``, ``risk_sd_min``, ``risk_sd_max``,
        ``n``, ``harrell_c``); ``discordance_spearman``: Spearman rho of ``risk_sd`` vs the
        per-subject discordance rate with bootstrap interval, scipy's p-value and ``n`` (subjects
        in a comparable pair); and, if ``abstain`` is present, ``abstention`` with ``n_abstained``,
        ``n_retained`` and Harrell's C of ``all``, ``retained``, ``abstained`` and
        ``retained_minus_all``, and with ``risk_cutoff`` also ``nearest_cutoff`` (C of the
        control's retained patients) and ``retained_minus_nearest_cutoff``. Undefined values
        are ``None``.
    """
    from scipy.stats import spearmanr

    missing = [c for c in ("risk", "risk_sd", "time", "event") if c not in scores.columns]
    if missing:
        raise FeatureTableError(f"scores lack column(s) {', '.join(missing)} for the uncertainty checks")
    time = scores["time"].to_numpy(float)
    event = scores["event"].to_numpy(int)
    risk = scores["risk"].to_numpy(float)
    sd = scores["risk_sd"].to_numpy(float)
    n = len(scores)
    if n < 3:
        raise FeatureTableError(f"{n} subject(s): too few for uncertainty checks")
    tertile = sd_tertiles(sd)

    def c_in(mask: np.ndarray):
        return lambda i: harrell_c(time[i][mask[i]], event[i][mask[i]], risk[i][mask[i]])

    out: dict = {"risk_sd_tertiles": []}
    for k in range(3):
        m = tertile == k
        out["risk_sd_tertiles"].append({"tertile": k + 1, "risk_sd_min": float(sd[m].min()),
                                        "risk_sd_max": float(sd[m].max()), "n": int(m.sum()),
                                        "harrell_c": guarded_estimate(c_in(m), n, n_boot, seed)})
    rate = discordance_rate(time, event, risk)
    rho = estimate(lambda i: _spearman(sd[i], discordance_rate(time[i], event[i], risk[i])), n, n_boot, seed)
    ok = np.isfinite(rate)
    p = spearmanr(sd[ok], rate[ok]).pvalue if np.isfinite(rho["estimate"]) else np.nan
    out["discordance_spearman"] = {**rho, "estimate": num(rho["estimate"]), "p": num(p), "n": int(ok.sum())}
    if "abstain" in scores.columns:
        out["abstention"] = _abstention(time, event, risk, scores["abstain"].to_numpy(bool), n_boot, seed,
                                        risk_cutoff)
    return out


def _abstention(time: np.ndarray, event: np.ndarray, risk: np.ndarray, abstain: np.ndarray,
                n_boot: int, seed: int, risk_cutoff: float | None = None) -> dict:
    n = len(time)
    keep = ~abstain

    def c(mask: np.ndarray | None):
        if mask is None:
            return lambda i: harrell_c(time[i], event[i], risk[i])
        return lambda i: harrell_c(time[i][mask[i]], event[i][mask[i]], risk[i][mask[i]])

    out: dict = {"n_abstained": int(abstain.sum()), "n_retained": int(keep.sum()),
                 "all": guarded_estimate(c(None), n, n_boot, seed), "retained": guarded_estimate(c(keep), n, n_boot, seed),
                 "abstained": guarded_estimate(c(abstain), n, n_boot, seed)}
    out["retained_minus_all"] = guarded_estimate(lambda i: c(keep)(i) - c(None)(i), n, n_boot, seed)
    if risk_cutoff is not None:
        near = np.zeros(n, bool)
        near[np.argsort(np.abs(risk - risk_cutoff), kind="stable")[: int(abstain.sum())]] = True
        out["nearest_cutoff"] = guarded_estimate(c(~near), n, n_boot, seed)
        out["retained_minus_nearest_cutoff"] = guarded_estimate(lambda i: c(keep)(i) - c(~near)(i), n, n_boot, seed)
    return out
