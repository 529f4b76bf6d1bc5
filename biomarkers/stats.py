"""Shared statistics: concordance indices and seeded bootstrap estimates.

Placed low, so that model fitting, cross-validation, validation and the report compute them the
same way:

* Harrell's C: the pairs and ties of ``sksurv.metrics.concordance_index_censored`` (ties in risk
  count 1/2).
* Uno's C: ``sksurv.metrics.concordance_index_ipcw``, inverse-probability-of-censoring weighted
  (Uno et al., Stat Med 2011), truncated at ``tau``.
* Per-subject discordance: the share of a subject's comparable pairs that the risk orders wrongly.
* Selective prediction: Harrell's C of the patients retained as the most uncertain are rejected,
  and the curve's mean (its area over the rejected range).
* 95 % intervals: percentile bootstrap over subjects, seeded; every statistic with one seed uses
  the same resamples.
"""
from __future__ import annotations

import hashlib
from typing import Callable, Sequence

import numpy as np
import pandas as pd


def surv_array(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    from sksurv.util import Surv

    return Surv.from_arrays(event=event.astype(bool), time=time.astype(float))


_PAIRWISE_MAX = 4000  # subjects up to which Harrell's C is counted on the n x n pair matrix


def harrell_c(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's concordance index (higher risk should mean shorter time).

    The same pairs and ties as ``sksurv.metrics.concordance_index_censored`` (tied risks
    within 1e-8 count 1/2; an event is comparable with every later time and with a
    censoring at its own time), counted at once on the pair matrix: the counts are integers,
    so the value is the same float, at about 1/100 of the time on a bootstrap resample.
    Inputs sksurv would refuse, cohorts of more than 4000 subjects and cohorts without a
    comparable pair go to sksurv itself (its errors and its value).
    """
    time, event, risk = np.asarray(time, dtype=float), np.asarray(event).astype(bool), np.asarray(risk, dtype=float)
    n = len(time)
    if (2 <= n <= _PAIRWISE_MAX and len(event) == n and risk.shape == (n,) and event.any()
            and np.isfinite(time).all() and np.isfinite(risk).all()):
        later = time[None, :] > time[:, None]
        comparable = event[:, None] & (later | ((time[None, :] == time[:, None]) & ~event[None, :]))
        pairs = int(comparable.sum())
        if pairs:
            tied = np.abs(risk[None, :] - risk[:, None]) <= 1e-8
            concordant = int((comparable & ~tied & (risk[None, :] < risk[:, None])).sum())
            return float((concordant + 0.5 * int((comparable & tied).sum())) / pairs)
    from sksurv.metrics import concordance_index_censored

    return float(concordance_index_censored(event, time, risk)[0])


def uno_c(time: np.ndarray, event: np.ndarray, risk: np.ndarray, tau: float,
          censoring_time: np.ndarray | None = None, censoring_event: np.ndarray | None = None) -> float:
    """Uno's IPCW concordance truncated at ``tau``.

    The censoring distribution is estimated on (``censoring_time``, ``censoring_event``),
    by default the same subjects.
    """
    from sksurv.metrics import concordance_index_ipcw

    if censoring_time is None:
        censoring_time, censoring_event = time, event
    return float(concordance_index_ipcw(surv_array(censoring_time, censoring_event), surv_array(time, event), risk, tau=tau)[0])


def bootstrap_values(statistic: Callable[[np.ndarray], float], n: int, n_boot: int, seed: int) -> np.ndarray:
    """``statistic(indices)`` on each of ``n_boot`` seeded resamples of ``range(n)`` with replacement.

    NaN where the statistic is undefined on a resample (it raises ``ValueError`` or
    ``ZeroDivisionError``, e.g. no comparable pair); the same seed gives the same resamples, so
    two statistics' values line up resample by resample.
    """
    rng = np.random.default_rng(seed)
    values = np.full(n_boot, np.nan)
    for k in range(n_boot):
        idx = rng.integers(0, n, size=n)
        try:
            values[k] = statistic(idx)
        except (ValueError, ZeroDivisionError):
            continue
    return values


def bootstrap(statistic: Callable[[np.ndarray], float], n: int, n_boot: int, seed: int) -> np.ndarray:
    """The finite :func:`bootstrap_values`: resamples on which the statistic is undefined (not
    finite, or raising) are skipped; their number is reported.
    """
    values = bootstrap_values(statistic, n, n_boot, seed)
    return values[np.isfinite(values)]


def estimate(statistic: Callable[[np.ndarray], float], n: int, n_boot: int, seed: int) -> dict:
    """Estimate on the whole cohort and 95 % percentile interval over the finite :func:`bootstrap` values."""
    boot = bootstrap(statistic, n, n_boot, seed)
    lo, hi = np.percentile(boot, [2.5, 97.5]) if len(boot) else (None, None)
    return {"estimate": statistic(np.arange(n)), "ci95": [num(lo), num(hi)], "n_boot_used": int(len(boot))}


def estimates(statistics: Callable[[np.ndarray], Sequence[float]], k: int, n: int, n_boot: int,
               seed: int) -> list[dict]:
    """:func:`estimate` of each of the ``k`` values returned by ``statistics(indices)``.

    Every value gets the same seeded resamples as every other statistic with that seed;
    ``statistics`` is evaluated once per resample (cached by resample), not ``k`` times.
    A value that is undefined on a resample skips that resample for that value only.
    """
    cache: dict[bytes, object] = {}

    def value(j: int) -> Callable[[np.ndarray], float]:
        def stat(idx: np.ndarray) -> float:
            key = hashlib.sha1(np.ascontiguousarray(idx).tobytes()).digest()
            if key not in cache:
                try:
                    cache[key] = np.asarray(statistics(idx), dtype=np.float64)
                except (ValueError, ZeroDivisionError) as exc:
                    cache[key] = exc
            got = cache[key]
            if isinstance(got, Exception):
                raise got
            return float(got[j])
        return stat

    out = []
    for j in range(k):
        est = estimate(value(j), n, n_boot, seed)
        out.append({**est, "estimate": num(est["estimate"])})
    return out


def num(value) -> float | None:
    """A float for JSON, or None where undefined (JSON has no NaN)."""
    return None if value is None or not np.isfinite(value) else float(value)


def guarded_estimate(statistic: Callable[[np.ndarray], float], n: int, n_boot: int, seed: int) -> dict:
    """:func:`estimate` with ``None`` (JSON's null) where the whole-cohort value is undefined: not
    finite, or the statistic raises there (then without an interval)."""
    try:
        est = estimate(statistic, n, n_boot, seed)
    except (ValueError, ZeroDivisionError):
        return {"estimate": None, "ci95": [None, None], "n_boot_used": 0}
    return {**est, "estimate": num(est["estimate"])}


_TIED_TOL = 1e-8  # sksurv's tolerance for tied risks


def discordance_rate(time: np.ndarray, event: np.ndarray, risk: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Per-subject fraction of comparable pairs ordered wrongly by ``risk``.

    Parameters
    ----------
    time, event, risk : ndarray
        Outcome and risk score (higher = earlier event).
    chunk : int
        Rows processed at once (memory ``chunk * n``).

    Returns
    -------
    ndarray
        Discordance rate of every subject, NaN where the subject is in no comparable pair.
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(bool)
    risk = np.asarray(risk, dtype=float)
    n = len(time)
    disc, comp = np.zeros(n), np.zeros(n)
    for start in range(0, n, chunk):
        i = slice(start, min(start + chunk, n))
        ti, ri = time[i, None], risk[i, None]
        comparable = event[i, None] & ((time[None, :] > ti) | ((time[None, :] == ti) & ~event[None, :]))
        diff = risk[None, :] - ri  # the later subject should have the lower risk
        wrong = np.where(np.abs(diff) <= _TIED_TOL, 0.5, (diff > 0).astype(float)) * comparable
        disc[i] += wrong.sum(axis=1)
        comp[i] += comparable.sum(axis=1)
        disc += wrong.sum(axis=0)
        comp += comparable.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(comp > 0, disc / comp, np.nan)


#: Step of the rejected fraction in :func:`selective_curve`.
REJECT_STEP = 0.05


def rejection_order(uncertainty: np.ndarray) -> np.ndarray:
    """Row indices from most to least uncertain (ties: earlier row first)."""
    return np.argsort(-np.asarray(uncertainty, float), kind="stable")


def selective_curve(time: np.ndarray, event: np.ndarray, risk: np.ndarray, uncertainty: np.ndarray,
                    max_reject: float = 0.5) -> pd.DataFrame:
    """Harrell's C of the retained patients at each rejected fraction (``rejected``, ``n_retained``, ``harrell_c``)."""
    n = len(time)
    order = rejection_order(uncertainty)
    rows = []
    for frac in np.round(np.arange(0.0, max_reject + 1e-9, REJECT_STEP), 10):
        keep = np.ones(n, bool)
        keep[order[: int(np.floor(frac * n + 1e-9))]] = False
        try:
            c = harrell_c(time[keep], event[keep], risk[keep])
        except (ValueError, ZeroDivisionError):
            c = np.nan
        rows.append({"rejected": float(frac), "n_retained": int(keep.sum()), "harrell_c": c})
    return pd.DataFrame(rows)


def selective_area(curve: pd.DataFrame) -> float:
    """Mean C over the curve's rejected-fraction range (trapezoid rule)."""
    x, y = curve["rejected"].to_numpy(float), curve["harrell_c"].to_numpy(float)
    if not np.isfinite(y).all() or len(x) < 2:
        return float("nan")
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0]))
