"""Intra-class correlation (ICC) of features measured on the same targets under several conditions.

Used for feature stability (:mod:`biomarkers.features.stability`): the targets are lesions,
the "raters" the perturbed conditions of the image. The ICC says how much of a feature's
variance lies between lesions rather than between conditions.
"""
from __future__ import annotations

import re
from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from biomarkers.errors import InputError

#: ICC forms (Shrout & Fleiss 1979 notation; McGraw & Wong 1996: ICC(1), ICC(A,1), ICC(C,1)).
ICC_KINDS = ("ICC(1,1)", "ICC(2,1)", "ICC(3,1)")

#: Columns that are never features (nor are ``centroid_*_mm`` or non-numeric columns).
BOOKKEEPING_COLUMNS = ("subject_id", "lesion_id", "perturbation")
#: Columns of :func:`icc_table`.
ICC_COLUMNS = ("feature", "icc", "ci_low", "ci_high", "n_lesions", "n_conditions", "stability")
_CENTROID = re.compile(r"^centroid_.*_mm$")


class ICCResult(NamedTuple):
    """ICC per feature and its two-sided confidence interval (arrays of one value per feature)."""

    icc: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray


def _ci_from_f(f_bound: np.ndarray, k: int) -> np.ndarray:
    """ICC bound ``(F - 1) / (F + k - 1)`` of an F bound; 1 in the limit of an infinite F."""
    return np.where(np.isposinf(f_bound), 1.0, (f_bound - 1.0) / (f_bound + k - 1.0))


def _check_icc_arguments(kind: str, confidence: float) -> None:
    if kind not in ICC_KINDS:
        raise ValueError(f"unknown ICC kind {kind!r}; expected one of {', '.join(ICC_KINDS)}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie between 0 and 1, got {confidence}")


def icc(values: np.ndarray, kind: str = "ICC(1,1)", confidence: float = 0.95) -> ICCResult:
    """Single-measurement intra-class correlation of every feature at once, from ANOVA mean squares.

    With ``n`` targets (lesions), ``k`` raters (conditions), the between-targets mean square
    MSR, the within-targets MSW, the between-raters MSC and the residual MSE (Shrout & Fleiss
    1979, Psychol Bull 86:420, Table 1):

    - ``ICC(1,1)`` one-way random: ``(MSR - MSW) / (MSR + (k-1) MSW)`` (the default: perturbations
      are not a fixed set of raters, as in Zwanenburg et al. 2019);
    - ``ICC(2,1)`` two-way random, absolute agreement:
      ``(MSR - MSE) / (MSR + (k-1) MSE + k (MSC - MSE) / n)``;
    - ``ICC(3,1)`` two-way mixed, consistency: ``(MSR - MSE) / (MSR + (k-1) MSE)``.

    Confidence intervals come from the F distribution: ``F = MSR/MSW`` (ICC(1,1)) or ``MSR/MSE``
    (ICC(3,1)) with ``(n-1, n(k-1))`` or ``(n-1, (n-1)(k-1))`` degrees of freedom, and for
    ICC(2,1) McGraw & Wong's (1996, Psychol Methods 1:30, Table 7, case 2A) bounds with
    Satterthwaite's degrees of freedom; that approximation is poor for a negative estimate, whose
    interval can then even exclude it (pingouin and R's psych give the same numbers).

    Parameters
    ----------
    values : ndarray, shape (n_targets, k_raters, n_features) or (n_targets, k_raters)
        One measurement per target, rater and feature; complete (see :func:`icc_table` for
        tables with missing lesions).
    kind : {"ICC(1,1)", "ICC(2,1)", "ICC(3,1)"}
        ICC form.
    confidence : float
        Coverage of the two-sided interval.

    Returns
    -------
    ICCResult
        ``icc``, ``ci_low``, ``ci_high``, one value per feature. A feature whose values are all
        identical, or hold a NaN or infinity, or whose ICC is 0/0 (e.g. ICC(3,1) when each rater
        gives one constant value) has no defined ICC: NaN, without a warning. A feature on which
        all raters agree exactly (and that varies) has ICC 1 with interval [1, 1].

    Raises
    ------
    ValueError
        Unknown ``kind``, a confidence outside (0, 1), fewer than 2 targets or raters.
    """
    _check_icc_arguments(kind, confidence)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 2:
        values = values[:, :, None]
    if values.ndim != 3:
        raise ValueError(f"values must be (targets, raters, features), got shape {values.shape}")
    n, k, _ = values.shape
    if n < 2 or k < 2:
        raise ValueError(f"an ICC needs at least 2 targets and 2 raters, got {n} and {k}")
    q = 1.0 - (1.0 - confidence) / 2.0
    with np.errstate(all="ignore"):
        grand = values.mean(axis=(0, 1))
        target_means = values.mean(axis=1)
        rater_means = values.mean(axis=0)
        msr = k * ((target_means - grand) ** 2).sum(axis=0) / (n - 1)
        msc = n * ((rater_means - grand) ** 2).sum(axis=0) / (k - 1)
        msw = ((values - target_means[:, None, :]) ** 2).sum(axis=(0, 1)) / (n * (k - 1))
        residual = values - target_means[:, None, :] - rater_means[None, :, :] + grand
        mse = (residual ** 2).sum(axis=(0, 1)) / ((n - 1) * (k - 1))
        # rounding leaves ~1e-16 relative residue where a mean square is zero in exact arithmetic
        tiny = 1e-12 * ((values - grand) ** 2).sum(axis=(0, 1)) / (n * k - 1)
        msr, msc, msw, mse = (np.where(ms <= tiny, 0.0, ms) for ms in (msr, msc, msw, mse))
        if kind == "ICC(2,1)":
            point = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
            a = k * point / (n * (1.0 - point))
            b = 1.0 + k * point * (n - 1) / (n * (1.0 - point))
            v = (a * msc + b * mse) ** 2 / ((a * msc) ** 2 / (k - 1) + (b * mse) ** 2 / ((n - 1) * (k - 1)))
            # v is 0/0 only where MSR = MSE = 0 (then both bounds are 0 whatever v) or ICC = 1
            # (set below); any positive value keeps the bounds finite there.
            v = np.where(np.isfinite(v) & (v > 0), v, k - 1.0)
            f_upper = stats.f.ppf(q, n - 1, v)
            f_lower = stats.f.ppf(q, v, n - 1)
            spread = k * msc + (k * n - k - n) * mse
            low = n * (msr - f_upper * mse) / (f_upper * spread + n * msr)
            high = n * (f_lower * msr - mse) / (spread + n * f_lower * msr)
        else:
            ms_noise, df_noise = (msw, n * (k - 1)) if kind == "ICC(1,1)" else (mse, (n - 1) * (k - 1))
            point = (msr - ms_noise) / (msr + (k - 1) * ms_noise)
            f_value = msr / ms_noise
            low = _ci_from_f(f_value / stats.f.ppf(q, n - 1, df_noise), k)
            high = _ci_from_f(f_value * stats.f.ppf(q, df_noise, n - 1), k)
        constant = ~(np.ptp(values, axis=(0, 1)) > 0)  # also true where a value is NaN
        agree = np.all(values == values[:, :1, :], axis=(0, 1)) & ~constant
        undefined = constant | ~np.isfinite(values).all(axis=(0, 1)) | np.isnan(point)
    point, low, high = (np.where(agree | (point == 1.0), 1.0, x) for x in (point, low, high))
    point, low, high = (np.where(undefined, np.nan, x) for x in (point, low, high))
    return ICCResult(point, low, high)


def stability_band(icc_values: np.ndarray | Sequence[float]) -> np.ndarray:
    """Koo & Li's (2016, J Chiropr Med 15:155) band of each ICC point value.

    ``poor`` below 0.5, ``moderate`` from 0.5, ``good`` from 0.75, ``excellent`` from 0.9;
    ``undefined`` for NaN.
    """
    x = np.asarray(icc_values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.select([x >= 0.9, x >= 0.75, x >= 0.5, x < 0.5], ["excellent", "good", "moderate", "poor"],
                         default="undefined")


def feature_columns(table: pd.DataFrame, exclude: Sequence[str] = ()) -> list[str]:
    """Numeric columns of ``table`` that are features, in table order.

    Never features: :data:`BOOKKEEPING_COLUMNS`, ``centroid_*_mm``, ``exclude``, non-numeric and
    boolean columns.
    """
    skip = set(BOOKKEEPING_COLUMNS) | set(exclude)
    return [c for c in table.columns
            if c not in skip and not _CENTROID.match(str(c)) and pd.api.types.is_numeric_dtype(table[c])
            and not pd.api.types.is_bool_dtype(table[c])]


def icc_table(long: pd.DataFrame, target_cols: Sequence[str] = ("subject_id", "lesion_id"),
              rater_col: str = "perturbation", features: Sequence[str] | None = None,
              kind: str = "ICC(1,1)", confidence: float = 0.95) -> pd.DataFrame:
    """ICC of every feature of a long table (one row per lesion and condition).

    Only lesions present under every condition are used: a lesion that vanished under a
    perturbation (eroded away, lost on a coarser grid) is dropped for all features. A lesion
    with a NaN for some feature is dropped for that feature only. ``n_lesions`` says how many
    lesions each ICC uses; ``result.attrs`` holds ``n_targets`` (lesions in the table) and
    ``n_complete`` (lesions present under every condition).

    To select robust features, threshold ``ci_low``, the lower confidence bound, not the point
    value (Zwanenburg et al. 2019 kept features whose lower bound was at least 0.75); the
    ``stability`` column is Koo & Li's band of the point value, for reading.

    Parameters
    ----------
    long : DataFrame
        E.g. the concatenated outputs of :func:`perturbed_lesion_features`.
    target_cols : sequence of str
        Columns that identify a lesion.
    rater_col : str
        Column that names the condition.
    features : sequence of str, optional
        Feature columns; default: every numeric column except bookkeeping (:func:`feature_columns`).
    kind, confidence
        See :func:`icc`.

    Returns
    -------
    DataFrame
        :data:`ICC_COLUMNS`, one row per feature in input column order.
    """
    _check_icc_arguments(kind, confidence)
    target_cols = list(target_cols)
    keys = [*target_cols, rater_col]
    missing = [c for c in keys if c not in long.columns]
    if missing:
        raise InputError(f"stability table lacks column(s) {', '.join(missing)}")
    if features is None:
        features = feature_columns(long, exclude=keys)
    else:
        features = list(features)
        bad = [c for c in features if c not in long.columns or c in keys or c in BOOKKEEPING_COLUMNS
               or _CENTROID.match(str(c)) or not pd.api.types.is_numeric_dtype(long[c])]
        if bad:
            raise InputError(f"not numeric feature columns of the stability table: {', '.join(map(str, bad))}")
    if not features:
        raise InputError("stability table has no numeric feature columns")
    duplicated = long.duplicated(keys)
    if duplicated.any():
        first = " ".join(f"{c}={v}" for c, v in long.loc[duplicated, keys].iloc[0].items())
        raise InputError(f"{int(duplicated.sum())} duplicate row(s) for one lesion and condition (first: {first}); "
                         "was a table given twice?")
    conditions = list(pd.unique(long[rater_col]))
    k = len(conditions)
    if k < 2:
        raise InputError(f"an ICC needs at least 2 conditions, the table has {conditions}")
    counts = long.groupby(target_cols, sort=False)[rater_col].nunique()
    complete = counts.index[counts == k]
    used = long[long.set_index(target_cols).index.isin(complete)]
    wide = used.set_index(keys)[features].astype(np.float64).unstack(rater_col)
    wide = wide.reindex(columns=pd.MultiIndex.from_product([features, conditions]))
    values = wide.to_numpy().reshape(len(wide), len(features), k).transpose(0, 2, 1)
    point, low, high = (np.full(len(features), np.nan) for _ in range(3))
    present = np.isfinite(values).all(axis=1)  # (lesions, features)
    n_lesions = present.sum(axis=0)
    patterns, inverse = np.unique(present.T, axis=0, return_inverse=True)
    for j, rows in enumerate(patterns):  # usually a single pattern: every lesion complete
        cols = np.flatnonzero(inverse.reshape(-1) == j)
        if rows.sum() >= 2:
            result = icc(values[rows][:, :, cols], kind, confidence)
            point[cols], low[cols], high[cols] = result
    table = pd.DataFrame({"feature": features, "icc": point, "ci_low": low, "ci_high": high,
                          "n_lesions": n_lesions, "n_conditions": k, "stability": stability_band(point)})
    table.attrs.update(n_targets=int(len(counts)), n_complete=int(len(complete)))
    return table
