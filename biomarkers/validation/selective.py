"""Does an uncertainty score flag the patients whose prediction should not be trusted?

Three evaluations, as for survival models in SurvUnc (Liu et al., KDD 2025):

Selective prediction
    Reject the most uncertain patients first (ties by row order) and compute Harrell's C of the
    rest, at rejected fractions 0, 0.05, ..., ``max_reject``. The *area* is the mean C over that
    grid (trapezoid rule over the fraction, divided by its range): 0.5-ish for a useless ranking,
    higher when rejecting the uncertain raises C. ``gain`` is the area minus the C of all patients
    (0 for an uncertainty score that does not help; random rejection gives about 0).
Misprediction detection
    A patient is mispredicted when the score orders more than half of its comparable pairs
    wrongly (:func:`~biomarkers.validation.uncertainty.discordance_rate` > 0.5; patients in no
    comparable pair are left out). AUROC of the uncertainty for that label.
Out-of-distribution detection
    AUROC of the uncertainty for a known out-of-distribution label (the simulator's ``ood``).

Every figure has a percentile bootstrap interval over patients on the seeded resamples of the
other validation statistics; a resample where a figure is undefined (one class only) is skipped
for that figure.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from biomarkers.errors import FeatureTableError
from biomarkers.stats import (REJECT_STEP, discordance_rate, estimates, guarded_estimate, harrell_c, num,
                              rejection_order, selective_area, selective_curve)

__all__ = ["REJECT_STEP", "auroc", "bootstrap_interval", "evaluate_uncertainty", "mispredicted", "rejection_order",
           "selective_area", "selective_curve"]

def mispredicted(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> np.ndarray:
    """1.0 where most of a patient's comparable pairs are ordered wrongly, 0.0 where not, NaN where it has none."""
    rate = discordance_rate(time, event, risk)
    return np.where(np.isfinite(rate), (rate > 0.5).astype(float), np.nan)


def auroc(label: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for a 0/1 ``label`` (NaN labels left out); NaN with one class."""
    from sklearn.metrics import roc_auc_score

    label, score = np.asarray(label, float), np.asarray(score, float)
    ok = np.isfinite(label)
    if len(np.unique(label[ok])) < 2:
        return float("nan")
    return float(roc_auc_score(label[ok].astype(int), score[ok]))


def bootstrap_interval(statistic, n: int, n_boot: int, seed: int) -> dict:
    """Estimate and 95 % percentile interval of ``statistic(indices)``; all ``None`` where it is undefined
    on the whole cohort, and resamples where it is undefined skipped."""

    def finite(i: np.ndarray) -> float:
        value = statistic(i)
        if not np.isfinite(value):
            raise ValueError("undefined on this resample")
        return value

    return guarded_estimate(finite, n, n_boot, seed)


def evaluate_uncertainty(scores: pd.DataFrame, methods: Mapping[str, str], ood: np.ndarray | None = None,
                         n_boot: int = 1000, seed: int = 0, max_reject: float = 0.5) -> dict:
    """The three evaluations of every uncertainty method.

    Parameters
    ----------
    scores : DataFrame
        ``time``, ``event``, ``risk`` and one column per method.
    methods : mapping
        Method name -> its column in ``scores`` (higher = less trustworthy).
    ood : ndarray, optional
        0/1 out-of-distribution label per row.

    Returns
    -------
    dict
        ``n``, ``harrell_c_all``, ``n_mispredicted``, ``n_ood`` and per method
        (``methods[name]``): ``curve`` (list of dicts), ``area``, ``gain``, ``misprediction_auroc``,
        ``ood_auroc`` (intervals as ``{"estimate", "ci95", "n_boot_used"}``).
    """
    missing = [c for c in ("time", "event", "risk", *methods.values()) if c not in scores.columns]
    if missing:
        raise FeatureTableError(f"scores lack column(s) {', '.join(missing)} for the uncertainty evaluation")
    time, event = scores["time"].to_numpy(float), scores["event"].to_numpy(int)
    risk = scores["risk"].to_numpy(float)
    n = len(scores)
    if n < 5:
        raise FeatureTableError(f"{n} subject(s): too few for the uncertainty evaluation")
    wrong = mispredicted(time, event, risk)
    out: dict = {"n": n, "harrell_c_all": num(harrell_c(time, event, risk)),
                 "n_mispredicted": int(np.nansum(wrong)), "methods": {}}
    if ood is not None:
        ood = np.asarray(ood, float)
        out["n_ood"] = int(np.nansum(ood))
    for name, column in methods.items():
        u = scores[column].to_numpy(float)

        def area_and_gain(i: np.ndarray, u=u) -> tuple[float, float]:
            area = selective_area(selective_curve(time[i], event[i], risk[i], u[i], max_reject))
            return area, area - harrell_c(time[i], event[i], risk[i])

        area, gain = estimates(area_and_gain, 2, n, n_boot, seed)  # one curve per resample for both
        entry = {"column": column, "curve": selective_curve(time, event, risk, u, max_reject).to_dict("records"),
                 "area": area, "gain": gain,
                 "misprediction_auroc": bootstrap_interval(
                     lambda i, u=u: auroc(mispredicted(time[i], event[i], risk[i]), u[i]), n, n_boot, seed)}
        if ood is not None:
            entry["ood_auroc"] = bootstrap_interval(lambda i, u=u: auroc(ood[i], u[i]), n, n_boot, seed)
        out["methods"][name] = entry
    return out
