"""Time-dependent AUC and Brier scores from predicted survival probabilities.

Estimators (all from ``sksurv.metrics``, called on the inputs unchanged):

* cumulative/dynamic AUC at each horizon ``t`` (Uno et al. 2007; Hung and Chiang 2010):
  cases are subjects with an event at or before ``t``, controls those still event-free
  after ``t``; cases are weighted by the inverse probability of censoring (IPCW). The
  marker at horizon ``t`` is the predicted event probability ``1 - S(t)``.
* Brier score at each horizon and the integrated Brier score (Graf et al. 1999), IPCW.

The censoring distribution is the Kaplan-Meier estimate of the censoring times of the
evaluated cohort itself (as :func:`biomarkers.validation.metrics.uno_c` does), or of a
given training outcome. sksurv needs every horizon inside the cohort's follow-up
``[min time, max time)``; horizons outside it, or before the first event, are dropped and
listed with the reason (:func:`usable_horizons`); values at the remaining horizons are
never changed.
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import pandas as pd

from biomarkers.errors import FeatureTableError
from biomarkers.stats import estimates, surv_array

_SURV_COLUMN = re.compile(r"^surv_(\d+)$")


def survival_columns(scores: pd.DataFrame) -> dict[float, str]:
    """Horizons of the predicted-survival columns of a scores table.

    Parameters
    ----------
    scores : DataFrame
        A scores table; survival probabilities at horizon ``T`` days are in a column named
        ``surv_<T>`` with ``T`` an integer (``surv_365``). Band columns ``surv_<T>_low`` and
        ``surv_<T>_high`` are not horizons and are ignored.

    Returns
    -------
    dict of float to str
        Horizon in days -> column name, in increasing order of horizon.
    """
    found = {}
    for col in scores.columns:
        match = _SURV_COLUMN.match(str(col))
        if match:
            found[float(match.group(1))] = str(col)
    return dict(sorted(found.items()))


def usable_horizons(time: np.ndarray, event: np.ndarray, horizons: Sequence[float],
                    censoring_time: np.ndarray | None = None) -> tuple[list[float], list[dict]]:
    """Horizons at which the time-dependent metrics are defined on this cohort.

    Parameters
    ----------
    time, event : ndarray
        Observed times (days) and event indicators of the evaluated cohort.
    horizons : sequence of float
        Candidate horizons (days).
    censoring_time : ndarray, optional
        Times of the training outcome when it supplies the censoring distribution; a
        horizon at or beyond its largest time is dropped as well.

    Returns
    -------
    used : list of float
        Horizons inside ``[min(time), max(time))`` with at least one event at or before them.
    dropped : list of dict
        ``{"horizon_days": T, "reason": ...}`` for every other horizon.
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(bool)
    used, dropped = [], []
    for h in sorted(float(h) for h in horizons):
        if h < time.min():
            reason = f"before the first observed time ({time.min():g} d)"
        elif h >= time.max():
            reason = (f"at or beyond the largest observed time ({time.max():g} d); "
                      "scikit-survival needs horizons inside the follow-up")
        elif not np.any(event & (time <= h)):
            reason = "no event at or before this horizon"
        elif censoring_time is not None and h >= np.max(censoring_time):
            reason = f"at or beyond the training follow-up ({np.max(censoring_time):g} d) used for censoring weights"
        else:
            used.append(h)
            continue
        dropped.append({"horizon_days": h, "reason": reason})
    return used, dropped


def _censoring(time: np.ndarray, event: np.ndarray, censoring_time: np.ndarray | None,
               censoring_event: np.ndarray | None) -> np.ndarray:
    if censoring_time is None:
        return surv_array(time, event)
    return surv_array(censoring_time, censoring_event)


def time_dependent_auc(time: np.ndarray, event: np.ndarray, estimate: np.ndarray, times: Sequence[float],
                       censoring_time: np.ndarray | None = None,
                       censoring_event: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Cumulative/dynamic AUC at ``times`` (``sksurv.metrics.cumulative_dynamic_auc``).

    Parameters
    ----------
    time, event : ndarray
        Outcome of the evaluated subjects.
    estimate : ndarray
        Risk marker, higher = earlier event: shape ``(n,)`` (one score for every time) or
        ``(n, len(times))`` (e.g. predicted event probabilities ``1 - S(t)``).
    times : sequence of float
        Increasing horizons inside the follow-up (see :func:`usable_horizons`).
    censoring_time, censoring_event : ndarray, optional
        Outcome whose censoring distribution gives the IPC weights; default the subjects themselves.

    Returns
    -------
    auc : ndarray
        AUC at each horizon.
    mean_auc : float
        sksurv's summary: the AUCs weighted by the Kaplan-Meier event-probability increments.
    """
    from sksurv.metrics import cumulative_dynamic_auc

    auc, mean_auc = cumulative_dynamic_auc(_censoring(time, event, censoring_time, censoring_event),
                                           surv_array(time, event), estimate, np.asarray(times, dtype=float))
    return np.asarray(auc, dtype=float), float(mean_auc)


def brier_scores(time: np.ndarray, event: np.ndarray, surv_prob: np.ndarray, times: Sequence[float],
                 censoring_time: np.ndarray | None = None,
                 censoring_event: np.ndarray | None = None) -> np.ndarray:
    """IPCW Brier score at each horizon (``sksurv.metrics.brier_score``).

    Parameters
    ----------
    time, event : ndarray
        Outcome of the evaluated subjects.
    surv_prob : ndarray, shape (n, len(times))
        Predicted probability of being event-free at each horizon.
    times : sequence of float
        Increasing horizons inside the follow-up.
    censoring_time, censoring_event : ndarray, optional
        Outcome whose censoring distribution gives the weights; default the subjects themselves.

    Returns
    -------
    ndarray
        Brier score at each horizon (0 = perfect, 0.25 = predicting 0.5 for everyone).
    """
    from sksurv.metrics import brier_score

    _, scores = brier_score(_censoring(time, event, censoring_time, censoring_event), surv_array(time, event),
                            np.asarray(surv_prob, dtype=float), np.asarray(times, dtype=float))
    return np.asarray(scores, dtype=float)


def integrated_brier(times: Sequence[float], scores: np.ndarray) -> float:
    """Integrated Brier score from Brier scores at ``times``, as ``sksurv.metrics.integrated_brier_score``.

    The integral is the trapezoid rule over the given horizons only, divided by
    ``times[-1] - times[0]``. With survival columns on a coarse grid (e.g. 1, 2, 3 years)
    this is a coarse approximation of the integral over a fine grid, and it covers only
    ``[times[0], times[-1]]``, not the whole follow-up.

    Parameters
    ----------
    times : sequence of float
        At least 2 increasing horizons.
    scores : ndarray
        Brier score at each horizon (:func:`brier_scores`).

    Returns
    -------
    float
        The integrated Brier score.
    """
    times = np.asarray(times, dtype=float)
    if times.shape[0] < 2:
        raise FeatureTableError(f"the integrated Brier score needs at least 2 horizons, got {times.shape[0]}")
    return float(np.trapezoid(np.asarray(scores, dtype=float), times) / (times[-1] - times[0]))


def timedep_metrics(time: np.ndarray, event: np.ndarray, surv_prob: np.ndarray, horizons: Sequence[float],
                    n_boot: int, seed: int, censoring_time: np.ndarray | None = None,
                    censoring_event: np.ndarray | None = None) -> dict:
    """Time-dependent AUC, Brier scores and IBS with percentile bootstrap intervals.

    Parameters
    ----------
    time, event : ndarray
        Outcome of the evaluated cohort.
    surv_prob : ndarray, shape (n, len(horizons))
        Predicted survival probability at each horizon.
    horizons : sequence of float
        Increasing horizons inside the follow-up (:func:`usable_horizons`).
    n_boot, seed : int
        Bootstrap resamples and their seed; the resamples are those of every other
        statistic of :func:`biomarkers.validation.metrics.evaluate_scores` with that seed.
    censoring_time, censoring_event : ndarray, optional
        Training outcome for the censoring distribution; default the whole evaluated cohort
        (kept fixed over the resamples, as for Uno's C).

    Returns
    -------
    dict
        ``time_dependent_auc`` and ``brier_score`` (lists, one entry per horizon with
        ``horizon_days``), ``mean_time_dependent_auc`` and ``integrated_brier_score``
        (``None`` estimate with a ``note`` when fewer than 2 horizons).
    """

    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(bool)
    surv_prob = np.asarray(surv_prob, dtype=float)
    horizons = [float(h) for h in horizons]
    k = len(horizons)
    if censoring_time is None:
        censoring_time, censoring_event = time, event

    def statistics(i: np.ndarray) -> list[float]:
        auc, mean_auc = time_dependent_auc(time[i], event[i], 1.0 - surv_prob[i], horizons,
                                           censoring_time, censoring_event)
        brier = brier_scores(time[i], event[i], surv_prob[i], horizons, censoring_time, censoring_event)
        ibs = integrated_brier(horizons, brier) if k >= 2 else np.nan
        return [*auc, mean_auc if k >= 2 else np.nan, *brier, ibs]

    try:
        est = estimates(statistics, 2 * k + 2, len(time), n_boot, seed)
    except ValueError as exc:  # e.g. a censoring distribution that ends before the cohort's follow-up
        raise FeatureTableError(f"time-dependent metrics undefined on this cohort: {exc}") from exc
    out: dict = {
        "time_dependent_auc": [{"horizon_days": h, **est[j]} for j, h in enumerate(horizons)],
        "brier_score": [{"horizon_days": h, **est[k + 1 + j]} for j, h in enumerate(horizons)],
    }
    if k >= 2:
        span = [horizons[0], horizons[-1]]
        out["mean_time_dependent_auc"] = {**est[k], "range_days": span}
        out["integrated_brier_score"] = {**est[2 * k + 1], "range_days": span, "n_horizons": k,
                                         "note": "trapezoid rule over the given horizons only"}
    else:
        note = "needs at least 2 horizons inside the follow-up"
        out["mean_time_dependent_auc"] = {"estimate": None, "ci95": [None, None], "n_boot_used": 0, "note": note}
        out["integrated_brier_score"] = {"estimate": None, "ci95": [None, None], "n_boot_used": 0, "note": note}
    return out
