"""Penalised Cox proportional-hazards model (lifelines) on preprocessed features."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from biomarkers.errors import BiomarkerError


def fit_cox(x: np.ndarray, time: np.ndarray, event: np.ndarray, names: list[str],
            penalizer: float = 0.1, l1_ratio: float = 0.0) -> tuple[np.ndarray, pd.DataFrame]:
    """Fit a penalised Cox model; return coefficients and lifelines' summary table.

    Parameters
    ----------
    x : ndarray
        Standardised design matrix (n_subjects, n_features).
    time, event : ndarray
        Follow-up time and event indicator (1 = event).
    names : list of str
        Feature names (columns of ``x``).
    penalizer, l1_ratio : float
        lifelines' elastic-net penalty: ``penalizer * (l1_ratio * |b|_1 + 0.5 * (1 - l1_ratio) * |b|_2^2)``.
    """
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError, ConvergenceWarning

    df = pd.DataFrame(x, columns=names)
    df["time"], df["event"] = time, event
    model = CoxPHFitter(penalizer=penalizer, l1_ratio=l1_ratio)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            model.fit(df, duration_col="time", event_col="event")
        except ConvergenceError as exc:
            first = str(exc).strip().splitlines()[0]
            raise BiomarkerError(f"Cox model did not converge ({first}); raise the penalizer") from None
    coef = model.params_.reindex(names).to_numpy(dtype=np.float64)
    summary = model.summary[["coef", "exp(coef)", "se(coef)", "p"]].reset_index()
    summary = summary.rename(columns={"covariate": "feature"})
    return coef, summary
