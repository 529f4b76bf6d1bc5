"""The Breslow baseline hazard that turns every proportional-hazards model's risk into survival curves."""
from __future__ import annotations

import numpy as np


def breslow_baseline(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Breslow estimate of the baseline cumulative hazard at the distinct event times.

    ``H0(t) = sum over event times s <= t of d(s) / sum_{j: t_j >= s} exp(risk_j)``, with
    ``d(s)`` the number of events at ``s`` (Breslow 1972), so that
    ``S(t | x) = exp(-H0(t) exp(risk(x)))``.
    """
    time, risk = np.asarray(time, np.float64), np.asarray(risk, np.float64)
    order = np.argsort(time, kind="stable")
    t_sorted = time[order]
    at_risk = np.cumsum(np.exp(risk[order])[::-1])[::-1]  # sum of exp(risk) over t_j >= t_sorted[i]
    event_times, deaths = np.unique(time[np.asarray(event) == 1], return_counts=True)
    first = np.searchsorted(t_sorted, event_times, side="left")
    return event_times, np.cumsum(deaths / at_risk[first])


def breslow_survival(baseline_time: np.ndarray, baseline_cumhaz: np.ndarray, times: np.ndarray,
                     risk: np.ndarray) -> np.ndarray:
    """``S(t | x) = exp(-H0(t) exp(risk))`` at ``times`` for risks of any shape: (..., len(times)).

    ``H0`` is the step function of :func:`breslow_baseline` (0 before the first event time).
    """
    pos = np.searchsorted(baseline_time, times, side="right") - 1
    h0 = np.where(pos >= 0, baseline_cumhaz[np.maximum(pos, 0)], 0.0)
    return np.exp(-h0 * np.exp(np.asarray(risk))[..., None])
