"""Feature selection fitted on the training cohort: correlation filter and univariate FDR screening.

Both steps are deterministic: the same table gives the same selection, in the same order.
"""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from biomarkers.errors import FeatureTableError

CORRELATION_METHODS = ("spearman", "pearson")
UNIVARIATE_TESTS = ("wald", "likelihood_ratio")


def correlation_matrix(x: pd.DataFrame, method: str = "spearman") -> pd.DataFrame:
    """Pearson or Spearman (Pearson of average ranks) correlation between the columns of ``x``.

    Parameters
    ----------
    x : DataFrame
        Complete numeric features (n_subjects, n_features).
    method : {"spearman", "pearson"}
        Correlation coefficient.

    Returns
    -------
    DataFrame
        Symmetric (n_features, n_features) matrix labelled by feature.
    """
    if method not in CORRELATION_METHODS:
        raise ValueError(f"method must be one of {CORRELATION_METHODS}, not {method!r}")
    values = x.to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise FeatureTableError("correlation filter needs complete values (impute first)")
    if method == "spearman":
        values = stats.rankdata(values, axis=0)
    r = np.corrcoef(values, rowvar=False).reshape(values.shape[1], values.shape[1])
    return pd.DataFrame(r, index=x.columns, columns=x.columns)


def correlation_filter(x: pd.DataFrame, priority: Sequence[str] | None = None, threshold: float = 0.9,
                       method: str = "spearman") -> tuple[list[str], list[dict[str, Any]]]:
    """Drop redundant features, greedily and deterministically.

    The rule: walk the features in ``priority`` order (most wanted first). A feature is kept unless
    ``|r|`` with a feature *already kept* exceeds ``threshold``; then it is dropped in favour of the
    kept feature it correlates with most (ties: the one earlier in priority). A dropped feature never
    causes another to be dropped. So among any pair above the threshold, the one earlier in
    priority survives whenever it was itself kept.

    Parameters
    ----------
    x : DataFrame
        Training features (complete).
    priority : sequence of str, optional
        Every column of ``x`` exactly once, most wanted first. Default: sorted by name.
    threshold : float
        ``|r|`` above which two features are redundant (strictly greater).
    method : {"spearman", "pearson"}
        Correlation coefficient.

    Returns
    -------
    kept : list of str
        Surviving features, in priority order.
    dropped : list of dict
        One record per dropped feature: ``feature``, ``step`` ("correlation"), ``kept_instead``,
        ``r`` (signed), ``method``, ``threshold``.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must lie in (0, 1], not {threshold}")
    order = sorted(map(str, x.columns)) if priority is None else [str(f) for f in priority]
    if sorted(order) != sorted(map(str, x.columns)):
        raise ValueError("priority must name every column of x exactly once")
    r = correlation_matrix(x.rename(columns=str)[order], method).to_numpy()
    kept: list[int] = []
    dropped: list[dict[str, Any]] = []
    for j, name in enumerate(order):
        if kept:
            partners = np.abs(r[j, kept])
            best = int(np.argmax(partners))  # first maximum = earliest in priority
            if partners[best] > threshold:
                k = kept[best]
                dropped.append({"feature": name, "step": "correlation", "kept_instead": order[k],
                                "r": float(r[j, k]), "method": method, "threshold": float(threshold)})
                continue
        kept.append(j)
    return [order[j] for j in kept], dropped


def univariate_cox(x: pd.DataFrame, time: np.ndarray, event: np.ndarray, test: str = "wald") -> pd.DataFrame:
    """One unpenalised Cox model (lifelines ``CoxPHFitter``, Efron ties) per feature.

    Parameters
    ----------
    x : DataFrame
        Training features (complete).
    time, event : ndarray
        Follow-up time and event indicator (1 = event), aligned with the rows of ``x``.
    test : {"wald", "likelihood_ratio"}
        Which p-value to report.

    Returns
    -------
    DataFrame
        ``feature``, ``coef`` (log hazard ratio per unit), ``se``, ``p``, ``converged``. A feature
        whose model fails (lifelines ``ConvergenceError``) gets ``p = 1`` and ``converged = False`` (it is then never
        preferred by the screening).
    """
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError, ConvergenceWarning

    if test not in UNIVARIATE_TESTS:
        raise ValueError(f"test must be one of {UNIVARIATE_TESTS}, not {test!r}")
    rows = []
    for name in x.columns:
        df = pd.DataFrame({"x": x[name].to_numpy(dtype=np.float64), "T": time, "E": event})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            try:
                model = CoxPHFitter().fit(df, duration_col="T", event_col="E")
            except (ConvergenceError, np.linalg.LinAlgError):
                rows.append({"feature": str(name), "coef": None, "se": None, "p": 1.0, "converged": False})
                continue
        p = model.summary.loc["x", "p"] if test == "wald" else model.log_likelihood_ratio_test().p_value
        rows.append({"feature": str(name), "coef": float(model.params_["x"]),
                     "se": float(model.standard_errors_["x"]), "p": float(p), "converged": True})
    return pd.DataFrame(rows, columns=["feature", "coef", "se", "p", "converged"])


def benjamini_hochberg(p: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values).

    Uses ``statsmodels.stats.multitest.multipletests(method="fdr_bh")`` when statsmodels is
    installed, else ``scipy.stats.false_discovery_control(method="bh")``; both give the same numbers.
    """
    p = np.asarray(p, dtype=np.float64)
    if p.size == 0:
        return p
    try:
        from statsmodels.stats.multitest import multipletests
    except ImportError:
        return stats.false_discovery_control(p, method="bh")
    return multipletests(p, method="fdr_bh")[1]


def priority_order(univariate: pd.DataFrame) -> list[str]:
    """Features ordered by univariate p-value, then name (the screening's notion of "better")."""
    return [f for _, f in sorted(zip(univariate["p"], univariate["feature"]))]


def fdr_screen(univariate: pd.DataFrame, candidates: Sequence[str] | None = None, q_threshold: float | None = 0.10,
               min_features: int = 1, max_features: int | None = None) -> tuple[list[str], list[dict[str, Any]], bool]:
    """Keep the candidates whose Benjamini-Hochberg q-value is below ``q_threshold``.

    ``univariate`` must hold a ``q`` column computed over *every* feature tested (the whole family,
    including those a correlation filter later removed), so that removing redundant features does
    not make the FDR control less conservative.

    If fewer than ``min_features`` candidates pass, the best ``min_features`` candidates (by p-value,
    then name) are kept anyway and the third return value is ``True``; the report must say so. If
    more than ``max_features`` pass, only the best ``max_features`` are kept.

    Parameters
    ----------
    univariate : DataFrame
        ``feature``, ``p``, ``q`` per feature.
    candidates : sequence of str, optional
        Features still in the running (default: all).
    q_threshold : float or None
        FDR level; a feature passes when ``q < q_threshold`` (``None``: every candidate passes, only
        ``max_features`` applies).
    min_features, max_features : int
        Bounds on the number kept (``max_features=None``: no cap).

    Returns
    -------
    kept : list of str
        Best first (p-value, then name).
    dropped : list of dict
        ``feature``, ``step`` ("screening" or "cap"), ``p``, ``q``, ``q_threshold``.
    fallback : bool
        Whether the ``min_features`` rule kept features that did not pass.
    """
    if min_features < 1:
        raise ValueError("min_features must be at least 1")
    if max_features is not None and max_features < min_features:
        raise ValueError("max_features must be at least min_features")
    table = univariate.set_index("feature")
    names = list(table.index) if candidates is None else [str(c) for c in candidates]
    order = sorted(names, key=lambda f: (table.at[f, "p"], f))
    passed = order if q_threshold is None else [f for f in order if table.at[f, "q"] < q_threshold]
    fallback = len(passed) < min(min_features, len(order))
    kept = order[:min_features] if fallback else passed
    if max_features is not None:
        kept = kept[:max_features]
    dropped = []
    for f in order:
        if f not in kept:
            step = "screening" if f not in passed else "cap"
            dropped.append({"feature": f, "step": step, "p": float(table.at[f, "p"]), "q": float(table.at[f, "q"]),
                            "q_threshold": None if q_threshold is None else float(q_threshold)})
    return kept, dropped, fallback
