"""Conformal lower prediction bound on the survival time (Candes, Lei and Ren 2021).

Conformalized survival analysis (J. R. Stat. Soc. B 85:24-45, 2023; arXiv:2103.09763): fix a
cut-off ``c0``. On the units whose censoring time ``C >= c0`` the truncated time ``T ^ c0`` is
observed, and a bound ``L(x)`` that covers ``T ^ c0`` covers ``T``. With a model's predicted
``alpha``-quantile ``q(x)`` of ``T`` (the time where its survival curve falls to ``1 - alpha``)
the conformity score of a calibration unit is ``V = log q(X) - log(T ^ c0)``, and

    L(x) = min(q(x) exp(-eta), c0),

where ``eta`` is the weighted ``(1 - alpha)``-quantile of the calibration scores together with
a point at +infinity for the new unit (weighted split conformal, Tibshirani et al. 2019). The
paper weights unit i by ``1 / P(C >= c0 | X_i)``; with censoring independent of the covariates
(true in the simulator, and the usual assumption for administrative censoring) the weights are
equal, and ``P(T ^ c0 >= L(X)) >= 1 - alpha`` holds marginally.

The paper assumes every unit's censoring time is known (type-I censoring: the end of follow-up).
After an event it is not, here, so a unit enters calibration as follows: observed time
``>= c0``: ``C >= c0`` for sure, weight 1; censored before ``c0``: ``C < c0``, weight 0; an event
at ``t < c0``: weight ``G(c0-) / G(t)``, the probability that its censoring time would still
have exceeded ``c0`` (``G`` the Kaplan-Meier curve of the censoring times). This expected
membership is our extension, so :func:`coverage` checks what the bound achieves.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from biomarkers.errors import FeatureTableError


def censoring_survival(time: np.ndarray, event: np.ndarray):
    """Kaplan-Meier estimate of the censoring survival ``G(t) = P(C > t)`` (right-continuous).

    Returns a function of an array of times. Censorings are the "events" of this curve; at tied
    times events are taken to precede censorings (the usual convention).
    """
    time = np.asarray(time, float)
    censored = ~np.asarray(event).astype(bool)
    grid = np.unique(time[censored])
    at_risk = np.array([(time >= t).sum() for t in grid], float)
    drops = np.array([((time == t) & censored).sum() for t in grid], float)
    surv = np.cumprod(1.0 - drops / at_risk) if len(grid) else np.array([])

    def g(t: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(grid, np.asarray(t, float), side="right") - 1
        return np.where(idx >= 0, surv[np.clip(idx, 0, None)] if len(grid) else 1.0, 1.0)

    return g


def survival_quantile(times: np.ndarray, survival: np.ndarray, p: float) -> np.ndarray:
    """Per row of ``survival`` (n, len(times)): the first time where it falls to ``1 - p`` or
    below, the last time where it never does (a lower bound can only be shortened by that)."""
    times = np.asarray(times, float)
    below = np.asarray(survival) <= 1.0 - p
    first = np.where(below.any(axis=1), below.argmax(axis=1), len(times) - 1)
    return times[first]


@dataclass(frozen=True)
class ConformalBound:
    """A calibrated lower bound: ``L(x) = min(q(x) exp(-eta), c0)``."""

    alpha: float
    c0: float
    eta: float
    n_calibration: int
    effective_n: float

    def lower(self, q: np.ndarray) -> np.ndarray:
        """The bound for predicted ``alpha``-quantiles ``q`` (days)."""
        return np.minimum(np.asarray(q, float) * np.exp(-self.eta), self.c0)


def weighted_quantile(values: np.ndarray, weights: np.ndarray, level: float) -> float:
    """Smallest v with (weight of values <= v) >= level x total weight, a unit-weight point at
    +infinity included (the new unit's); +inf when the finite weights do not reach ``level``."""
    order = np.argsort(values, kind="stable")
    v, w = np.asarray(values, float)[order], np.asarray(weights, float)[order]
    total = w.sum() + 1.0
    cum = np.cumsum(w) / total
    hit = np.nonzero(cum >= level - 1e-12)[0]
    return float(v[hit[0]]) if len(hit) else float("inf")


def calibrate(time: np.ndarray, event: np.ndarray, q: np.ndarray, c0: float, alpha: float = 0.1) -> ConformalBound:
    """Calibrate the bound on held-out units (see the module docstring).

    Parameters
    ----------
    time, event : ndarray
        Observed outcome of the calibration units.
    q : ndarray
        Their predicted ``alpha``-quantiles of T, from a model that did not see them.
    c0 : float
        Cut-off (days); the bound never exceeds it.
    alpha : float
        Miscoverage level: the bound covers T with probability at least ``1 - alpha``.
    """
    time, q = np.asarray(time, float), np.asarray(q, float)
    event = np.asarray(event).astype(bool)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if not (len(time) == len(event) == len(q)) or np.any(q <= 0):
        raise FeatureTableError("conformal calibration needs one positive predicted quantile per unit")
    g = censoring_survival(time, event)
    weight = np.where(time >= c0, 1.0, 0.0)
    early = event & (time < c0)
    g_c0 = float(g(np.array([c0 - 1e-9]))[0])
    weight[early] = g_c0 / np.maximum(g(time[early] - 1e-9), 1e-12)
    if weight.sum() < 1:
        raise FeatureTableError(f"conformal calibration: no unit reaches the cut-off {c0:g} days")
    score = np.log(q) - np.log(np.minimum(time, c0))
    eta = weighted_quantile(score, weight, 1.0 - alpha)
    return ConformalBound(alpha, float(c0), eta, int((weight > 0).sum()), float(weight.sum()))


def coverage(time: np.ndarray, event: np.ndarray, lower: np.ndarray,
             latent_time: np.ndarray | None = None) -> dict:
    """How often the bound held: ``P(T >= L)``.

    ``estimate``: inverse-probability-of-censoring weighted, ``1 - mean(1{event, t < L} / G(t-))``;
    ``known_lower``/``known_upper``: the share certainly covered (observed time >= L) and one minus
    the share certainly missed (event before L); ``true``: the share of ``latent_time >= L`` when the
    uncensored times are known (a simulation).
    """
    time, lower = np.asarray(time, float), np.asarray(lower, float)
    event = np.asarray(event).astype(bool)
    g = censoring_survival(time, event)
    miss = event & (time < lower)
    est = 1.0 - float(np.sum(1.0 / np.maximum(g(time[miss] - 1e-9), 1e-12)) / len(time))
    out = {"estimate": est, "known_lower": float(np.mean(time >= lower)), "known_upper": float(1 - miss.mean()),
           "n": int(len(time))}
    if latent_time is not None:
        out["true"] = float(np.mean(np.asarray(latent_time, float) >= lower))
    return out
