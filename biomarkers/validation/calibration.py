"""Calibration of predicted survival at a horizon: smoothed curve, ICI/E50/E90, grouped table.

Method of Austin, Harrell and van Klaveren (2020), "Graphical calibration curves and the
integrated calibration index (ICI) for survival models", Stat Med 39:2714-2742: with
``p_i = 1 - S_i(t0)`` the predicted event probability by ``t0``, fit a Cox model of the
observed outcome on a restricted cubic spline with 3 knots of ``cloglog(p_i) =
log(-log(1 - p_i))``; the smoothed observed probability is ``1 - S_smooth(t0 | p_i)`` from
that model, and

* ICI = mean ``|observed - predicted|``, E50 its median, E90 its 90th percentile.

Implementation details: predictions are clipped to ``[1e-10, 1 - 1e-10]`` before the
cloglog; knots at the 10th, 50th and 90th percentiles of ``cloglog(p)`` (Harrell's
default for 3 knots, as ``rms::rcs``); Cox fit with Efron ties and the Breslow baseline
(``sksurv.linear_model.CoxPHSurvivalAnalysis``). R's ``rms::survest`` uses an
Efron-adjusted baseline hazard, so with tied event times the numbers differ slightly.

Relation to ``lifelines.calibration.survival_probability_calibration``: lifelines does not
fit this model. It fits a flexible parametric (Crowther-Royston-Clements) AFT model whose
log cumulative hazard is a 3-knot spline of ``log t - b0 - b1 cloglog(p)`` (knots on log
event times), with SLSQP; ``cloglog(p)`` enters linearly. Its ICI/E50 therefore agree
with ours only approximately (within a few thousandths on well-behaved data) and cannot
agree to 1e-6. Our smoother reproduces a proportional-hazards model in-sample exactly up
to the spline term (the cloglog of a Cox model's risk is linear in its linear predictor),
which lifelines' does not.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from biomarkers.errors import FeatureTableError
from biomarkers.stats import estimates

_EPS = 1e-10
_KNOT_PERCENTILES = (10.0, 50.0, 90.0)


def cloglog(p: np.ndarray) -> np.ndarray:
    """``log(-log(1 - p))`` of probabilities clipped to ``[1e-10, 1 - 1e-10]``."""
    p = np.clip(np.asarray(p, dtype=float), _EPS, 1.0 - _EPS)
    return np.log(-np.log1p(-p))


def rcs_basis(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Restricted (natural) cubic spline basis with 3 knots: columns ``x`` and the nonlinear term.

    The term is ``(x-k2)+^3 - l (x-k1)+^3 - (1-l) (x-k3)+^3`` with ``l = (k3-k2)/(k3-k1)``,
    divided by ``(k3-k1)^2`` for numerical scale; it is linear beyond the outer knots.

    Parameters
    ----------
    x : ndarray
        Values to expand.
    knots : ndarray
        Three increasing knots ``k1 <= k2 <= k3`` with ``k1 < k3``.

    Returns
    -------
    ndarray, shape (n, 2)
    """
    k1, k2, k3 = (float(k) for k in knots)
    if not k3 > k1:
        raise ValueError("restricted cubic spline needs distinct outer knots (predictions almost all equal)")
    lam = (k3 - k2) / (k3 - k1)
    x = np.asarray(x, dtype=float)
    cube = lambda u: np.maximum(u, 0.0) ** 3  # noqa: E731
    term = cube(x - k2) - lam * cube(x - k1) - (1.0 - lam) * cube(x - k3)
    return np.column_stack([x, term / (k3 - k1) ** 2])


class _Smoother:
    """Cox model of the outcome on ``rcs_basis(cloglog(p))``; ``observed(p)`` = 1 - S(t0 | p)."""

    def __init__(self, time: np.ndarray, event: np.ndarray, predicted: np.ndarray, horizon_days: float) -> None:
        from sklearn.exceptions import ConvergenceWarning
        from sksurv.linear_model import CoxPHSurvivalAnalysis
        from sksurv.util import Surv

        x = cloglog(predicted)
        self.knots = np.percentile(x, _KNOT_PERCENTILES)
        y = Surv.from_arrays(event=np.asarray(event).astype(bool), time=np.asarray(time, dtype=float))
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            try:
                model = CoxPHSurvivalAnalysis(ties="efron").fit(rcs_basis(x, self.knots), y)
            except ConvergenceWarning as exc:
                raise ValueError(f"calibration smoother did not converge: {exc}") from exc
        self.coef = np.asarray(model.coef_, dtype=float)
        self.cum_hazard0 = float(np.atleast_1d(model.cum_baseline_hazard_(np.array([float(horizon_days)])))[0])

    def observed(self, predicted: np.ndarray) -> np.ndarray:
        lp = rcs_basis(cloglog(predicted), self.knots) @ self.coef
        return -np.expm1(-self.cum_hazard0 * np.exp(lp))


def calibration_errors(time: np.ndarray, event: np.ndarray, predicted_risk: np.ndarray,
                       horizon_days: float) -> tuple[float, float, float]:
    """ICI, E50 and E90 of predicted event probabilities by ``horizon_days``.

    Parameters
    ----------
    time, event : ndarray
        Observed outcome.
    predicted_risk : ndarray
        Predicted probability of an event by the horizon, ``1 - S(t0)``.
    horizon_days : float
        The horizon ``t0``, inside the follow-up.

    Returns
    -------
    ici, e50, e90 : float
        Mean, median and 90th percentile of ``|smoothed observed - predicted|``.
    """
    pred = np.clip(np.asarray(predicted_risk, dtype=float), _EPS, 1.0 - _EPS)
    delta = np.abs(_Smoother(time, event, pred, horizon_days).observed(pred) - pred)
    return float(delta.mean()), float(np.percentile(delta, 50)), float(np.percentile(delta, 90))


def calibration_curve(time: np.ndarray, event: np.ndarray, predicted_risk: np.ndarray, horizon_days: float,
                      n_points: int = 100) -> dict:
    """Smoothed calibration curve on a grid of predicted probabilities, for plotting.

    The grid spans ``[min(p) - 0.01, max(p) + 0.01]`` clipped to ``[0, 1]``.

    Returns
    -------
    dict
        ``predicted`` and ``observed`` (lists of float), ``knots_cloglog`` (list of 3 floats).
    """
    pred = np.clip(np.asarray(predicted_risk, dtype=float), _EPS, 1.0 - _EPS)
    smoother = _Smoother(time, event, pred, horizon_days)
    grid = np.linspace(max(pred.min() - 0.01, 0.0), min(pred.max() + 0.01, 1.0), n_points)
    return {"predicted": grid.tolist(), "observed": smoother.observed(grid).tolist(),
            "knots_cloglog": [float(k) for k in smoother.knots]}


def _km_at(time: np.ndarray, event: np.ndarray, horizon_days: float) -> tuple[float | None, float | None, float | None]:
    from sksurv.nonparametric import kaplan_meier_estimator

    t, s, ci = kaplan_meier_estimator(event.astype(bool), time.astype(float), conf_type="log-log")
    if horizon_days > time.max() and s[-1] > 0:
        return None, None, None  # Kaplan-Meier undefined beyond the group's follow-up
    j = int(np.searchsorted(t, horizon_days, side="right")) - 1
    if j < 0:
        return 1.0, 1.0, 1.0
    return float(s[j]), float(ci[0, j]), float(ci[1, j])


def calibration_table(time: np.ndarray, event: np.ndarray, predicted_risk: np.ndarray, horizon_days: float,
                      n_groups: int = 10) -> pd.DataFrame:
    """Observed vs predicted event probability by groups of predicted risk.

    Subjects are split into ``n_groups`` equal-sized groups of predicted risk (10: deciles,
    5: quintiles; ties broken by row order). Observed = ``1 - KM(t0)`` within the group with
    its 95 % log(-log) interval (sksurv's ``kaplan_meier_estimator``); ``None`` where the
    group's follow-up ends before ``t0``.

    Returns
    -------
    DataFrame
        ``group`` (1 = lowest risk), ``n``, ``events_by_horizon``, ``predicted`` (mean),
        ``observed``, ``observed_low``, ``observed_high``.
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(bool)
    pred = np.asarray(predicted_risk, dtype=float)
    if not 1 <= n_groups <= len(pred):
        raise FeatureTableError(f"cannot split {len(pred)} subjects into {n_groups} calibration groups")
    group = pd.qcut(pd.Series(pred).rank(method="first"), n_groups, labels=False).to_numpy()
    rows = []
    for g in range(n_groups):
        m = group == g
        s, lo, hi = _km_at(time[m], event[m], horizon_days)
        rows.append({"group": g + 1, "n": int(m.sum()),
                     "events_by_horizon": int((event[m] & (time[m] <= horizon_days)).sum()),
                     "predicted": float(pred[m].mean()),
                     "observed": None if s is None else 1.0 - s,
                     "observed_low": None if hi is None else 1.0 - hi,
                     "observed_high": None if lo is None else 1.0 - lo})
    return pd.DataFrame(rows)


def calibration_metrics(time: np.ndarray, event: np.ndarray, surv_prob: np.ndarray, horizon_days: float,
                        n_boot: int, seed: int, n_groups: int = 10) -> dict:
    """ICI, E50, E90 with bootstrap intervals, the grouped table and the smoothed curve.

    Parameters
    ----------
    time, event : ndarray
        Outcome of the evaluated cohort.
    surv_prob : ndarray
        Predicted survival probability at ``horizon_days`` (the ``surv_<T>`` column).
    horizon_days : float
        Horizon ``t0`` inside the follow-up.
    n_boot, seed : int
        Bootstrap resamples and seed; the smoother is refitted on every resample (the same
        resamples as the other statistics with that seed).
    n_groups : int
        Groups of the calibration table.

    Returns
    -------
    dict
        ``horizon_days``, ``method``, ``ici``, ``e50``, ``e90`` (estimate, ci95, n_boot_used),
        ``n_groups``, ``table`` (list of row dicts), ``curve`` (see :func:`calibration_curve`).
    """

    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(bool)
    risk = 1.0 - np.asarray(surv_prob, dtype=float)
    try:
        ici, e50, e90 = estimates(lambda i: calibration_errors(time[i], event[i], risk[i], horizon_days),
                                   3, len(time), n_boot, seed)
        curve = calibration_curve(time, event, risk, horizon_days)
    except ValueError as exc:
        raise FeatureTableError(f"calibration at {horizon_days:g} d undefined on this cohort: {exc}") from exc
    table = calibration_table(time, event, risk, horizon_days, n_groups)
    return {"horizon_days": float(horizon_days),
            "method": "Austin, Harrell & van Klaveren 2020: Cox model on a 3-knot restricted cubic spline "
                      "of cloglog(predicted risk)",
            "ici": ici, "e50": e50, "e90": e90, "n_groups": int(n_groups),
            "table": _records(table), "curve": curve}


def _records(table: pd.DataFrame) -> list[dict]:
    """Rows as dicts of JSON-ready values (NaN -> None)."""
    return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}
            for row in table.to_dict(orient="records")]
