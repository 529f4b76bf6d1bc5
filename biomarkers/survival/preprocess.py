"""Feature preprocessing fitted on training data only.

:class:`FeaturePipeline`: log transform, median imputation, optional ComBat harmonisation,
z-scores, correlation filter and FDR screening (the preprocessing state of a frozen bundle).
"""
from __future__ import annotations

import copy
import fnmatch
from typing import Any, Sequence

import numpy as np
import pandas as pd

from biomarkers.errors import FeatureTableError
from biomarkers.survival.harmonize import ComBat
from biomarkers.survival.selection import (benjamini_hochberg, correlation_filter, fdr_screen, priority_order,
                                           univariate_cox)


def log_matrix(table: pd.DataFrame, features: Sequence[str], log_features: Sequence[str], what: str) -> np.ndarray:
    """Numeric matrix of ``features`` (non-numbers become NaN) with ``log1p`` applied to ``log_features``.

    Raises
    ------
    FeatureTableError
        When ``table`` lacks a feature column, a log feature is not a feature, or a log feature
        has negative values.
    """
    missing = [f for f in features if f not in table.columns]
    if missing:
        raise FeatureTableError(f"{what} lacks feature column(s) {', '.join(missing)}")
    unknown = [f for f in log_features if f not in features]
    if unknown:
        raise FeatureTableError(f"log feature(s) not among the model features: {', '.join(unknown)}")
    x = table[list(features)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    for j, name in enumerate(features):
        if name in log_features:
            if np.nanmin(x[:, j], initial=0.0) < 0:
                raise FeatureTableError(f"{what}: log feature {name} has negative values")
            x[:, j] = np.log1p(x[:, j])
    return x


def select_features(table: pd.DataFrame, include: Sequence[str] | None) -> list[str]:
    """Model feature names: ``include`` when given, else every numeric non-outcome column.

    An ``include`` entry with a shell wildcard (``largest_deep_*``) stands for every numeric
    column it matches, in table order; one that matches none is an error.
    """
    skip = {"subject_id", "time", "event"}
    numeric = [c for c in table.columns if c not in skip and pd.api.types.is_numeric_dtype(table[c])]
    if not include:
        return numeric
    names: list[str] = []
    for entry in include:
        if not any(ch in entry for ch in "*?["):
            names.append(entry)
            continue
        hits = fnmatch.filter(numeric, entry)
        if not hits:
            raise FeatureTableError(f"no numeric feature column matches {entry!r}")
        names += [h for h in hits if h not in names]
    return names


class FeaturePipeline:
    """Every feature-preprocessing step, fitted on the training cohort only.

    Steps, in order: column selection -> ``log1p`` of ``log_features`` -> median imputation ->
    optional ComBat across centres (:class:`~biomarkers.survival.harmonize.ComBat`, covariates
    preserved) -> z-scores -> correlation filter -> univariate Cox screening with
    Benjamini-Hochberg FDR control -> optional cap on the number of features.

    The univariate Cox models are fitted to the z-scored training features; their p-values order
    the features ("better" = smaller p, then name) for the correlation filter, and their q-values
    are computed over all features tested, before the correlation filter (the whole family, the
    conservative choice). If no feature passes ``q < fdr_q``, the best ``min_features`` are kept and
    ``min_features_fallback_`` is set. Nothing in :meth:`transform` changes the fitted state.

    Parameters
    ----------
    features : sequence of str, optional
        Candidate features; default every numeric column except ``subject_id``, ``time``,
        ``event``, the ComBat covariates and a centre column named in :meth:`fit`.
    log_features : sequence of str
        Features to ``log1p`` (must be non-negative).
    harmonize : bool
        Apply ComBat (needs ``centers`` in :meth:`fit` and :meth:`transform`).
    combat_covariates : sequence of str
        Numeric columns whose effect ComBat preserves (e.g. ``age``); complete in every table.
    combat_features : sequence of str, optional
        The features ComBat adjusts (default: all). Clinical covariates that are model
        features (age, performance status) describe the patient, not the scanner, and belong
        outside this list.
    combat_min_batch_size : int
        Fewest subjects per centre (training centres, and unseen centres in :meth:`transform`).
    combat_unseen_priors : {"batch", "training"}
        Hyper-priors for a centre not in training (see :class:`ComBat`).
    corr_threshold : float or None
        Drop one of two features with ``|r|`` above this; ``None`` skips the filter.
    corr_method : {"spearman", "pearson"}
        Correlation coefficient of the filter.
    fdr_q : float or None
        Keep features with BH q-value below this; ``None`` skips the screening.
    min_features, max_features : int
        Bounds on the number of selected features (``max_features=None``: no cap).
    univariate_test : {"wald", "likelihood_ratio"}
        p-value of the univariate Cox models.
    """

    def __init__(self, features: Sequence[str] | None = None, log_features: Sequence[str] = (),
                 harmonize: bool = False, combat_covariates: Sequence[str] = (),
                 combat_features: Sequence[str] | None = None, combat_min_batch_size: int = 5,
                 combat_unseen_priors: str = "batch", corr_threshold: float | None = 0.9,
                 corr_method: str = "spearman", fdr_q: float | None = 0.10, min_features: int = 1,
                 max_features: int | None = None, univariate_test: str = "wald") -> None:
        self.features = features
        self.log_features = log_features
        self.harmonize = harmonize
        self.combat_covariates = combat_covariates
        self.combat_features = combat_features
        self.combat_min_batch_size = combat_min_batch_size
        self.combat_unseen_priors = combat_unseen_priors
        self.corr_threshold = corr_threshold
        self.corr_method = corr_method
        self.fdr_q = fdr_q
        self.min_features = min_features
        self.max_features = max_features
        self.univariate_test = univariate_test

    def fit(self, table: pd.DataFrame, time: Sequence[float], event: Sequence[int],
            centers: str | Sequence[Any] | None = None) -> "FeaturePipeline":
        """Learn every statistic and the selection from the training ``table``.

        Parameters
        ----------
        table : DataFrame
            Training feature table.
        time, event : array-like
            Follow-up time and event indicator (1 = event) of every row.
        centers : str or array-like, optional
            Centre column name or labels; required when ``harmonize``.

        Returns
        -------
        FeaturePipeline
            ``self``, fitted.
        """
        covariates = [str(c) for c in self.combat_covariates]
        names = self._candidates(table, centers, covariates)
        time_arr, event_arr = _outcome(time, event, len(table))
        x = log_matrix(table, names, list(self.log_features), "training table")
        medians = np.nanmedian(x, axis=0) if len(x) else np.full(len(names), np.nan)
        empty = [f for f, m in zip(names, medians) if np.isnan(m)]
        if empty:
            raise FeatureTableError(f"feature(s) with no value in the training table: {', '.join(empty)}")
        frame = pd.DataFrame(np.where(np.isnan(x), medians, x), columns=names)
        self.combat_ = None
        if self.harmonize:
            adjusted = self._combat_columns(names)
            self.combat_ = ComBat(min_batch_size=self.combat_min_batch_size, unseen_priors=self.combat_unseen_priors)
            frame[adjusted] = self.combat_.fit_transform(frame[adjusted], self._centres(table, centers),
                                                         _covariate_frame(table, covariates))
        scales = frame.std(axis=0, ddof=1).to_numpy()
        constant = [f for f, s in zip(names, scales) if not s > 0]
        if constant:
            raise FeatureTableError(f"feature(s) constant in the training table: {', '.join(constant)}")
        means = frame.mean(axis=0).to_numpy()
        z = (frame - means) / scales
        univariate = univariate_cox(z, time_arr, event_arr, self.univariate_test)
        univariate["q"] = benjamini_hochberg(univariate["p"].to_numpy())
        kept, dropped = priority_order(univariate), []
        if self.corr_threshold is not None:
            kept, dropped = correlation_filter(z, kept, self.corr_threshold, self.corr_method)
        chosen, screened, fallback = fdr_screen(univariate, kept, self.fdr_q, self.min_features, self.max_features)
        self.features_ = names
        self.medians_, self.means_, self.scales_ = medians.tolist(), means.tolist(), scales.tolist()
        self.univariate_ = [{k: _plain(v) for k, v in row.items()} for row in univariate.to_dict("records")]
        self.selected_ = [f for f in names if f in chosen]
        self.dropped_ = dropped + screened
        self.min_features_fallback_ = bool(fallback)
        self.n_train_, self.n_events_ = int(len(table)), int(event_arr.sum())
        return self

    def transform(self, table: pd.DataFrame, centers: str | Sequence[Any] | None = None) -> pd.DataFrame:
        """Selected, standardised features of any cohort, with the training statistics.

        With ComBat every fitted feature column must be present (an unseen centre's estimates use
        all of them); without it only the selected ones.

        Raises
        ------
        FeatureTableError
            When ``table`` lacks a needed column, or a centre/covariate is missing.
        """
        frame = self._imputed(table)
        if self.combat_ is not None:
            covariates = _covariate_frame(table, self.combat_.covariates_)
            adjusted = self.combat_.features_
            frame[adjusted] = self.combat_.transform(frame[adjusted], self._centres(table, centers), covariates)
        idx = [self.features_.index(f) for f in self.selected_]
        z = (frame[self.selected_].to_numpy() - np.asarray(self.means_)[idx]) / np.asarray(self.scales_)[idx]
        return pd.DataFrame(z, columns=self.selected_, index=table.index)

    def new_centre_estimates(self, table: pd.DataFrame, centers: str | Sequence[Any]) -> dict[str, dict[str, Any]]:
        """ComBat's estimates of every centre of ``table`` not in the training cohort, exactly as
        :meth:`transform` computes them for this table (:meth:`ComBat.new_centre_estimates`);
        empty without ComBat. A frozen signature keeps them as its harmonisation reference."""
        if self.combat_ is None:
            return {}
        covariates = _covariate_frame(table, self.combat_.covariates_)
        frame = self._imputed(table)[self.combat_.features_]
        return self.combat_.new_centre_estimates(frame, self._centres(table, centers), covariates)

    def _imputed(self, table: pd.DataFrame) -> pd.DataFrame:
        """The needed columns of ``table``, log-transformed where fitted so and median-imputed."""
        needed = self.features_ if self.combat_ is not None else self.selected_
        logs = [f for f in self.log_features if f in needed]
        x = log_matrix(table, needed, logs, "table to transform")
        medians = np.asarray([self.medians_[self.features_.index(f)] for f in needed])
        return pd.DataFrame(np.where(np.isnan(x), medians, x), columns=needed, index=table.index)

    def fit_transform(self, table: pd.DataFrame, time: Sequence[float], event: Sequence[int],
                      centers: str | Sequence[Any] | None = None) -> pd.DataFrame:
        """:meth:`fit` then :meth:`transform` on the training table."""
        return self.fit(table, time, event, centers).transform(table, centers)

    def summary(self) -> pd.DataFrame:
        """One row per candidate feature: univariate statistics and what happened to it (for the report)."""
        fate = {r["feature"]: r for r in self.dropped_}
        rows = []
        for u in self.univariate_:
            rec = fate.get(u["feature"])
            status = "selected" if rec is None else f"dropped ({rec['step']})"
            detail = "" if rec is None or rec["step"] != "correlation" else \
                f"|r| = {abs(rec['r']):.3f} with {rec['kept_instead']}"
            if rec is None and self.fdr_q is not None and not u["q"] < self.fdr_q:
                detail = f"kept by min_features={self.min_features} (q >= {self.fdr_q})"
            rows.append({**u, "status": status, "detail": detail})
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state: ``params`` (constructor arguments) and the fitted attributes."""
        return {
            "params": {
                "features": None if self.features is None else list(self.features),
                "log_features": list(self.log_features), "harmonize": bool(self.harmonize),
                "combat_covariates": list(self.combat_covariates),
                "combat_features": None if self.combat_features is None else list(self.combat_features),
                "combat_min_batch_size": self.combat_min_batch_size,
                "combat_unseen_priors": self.combat_unseen_priors, "corr_threshold": self.corr_threshold,
                "corr_method": self.corr_method, "fdr_q": self.fdr_q, "min_features": self.min_features,
                "max_features": self.max_features, "univariate_test": self.univariate_test,
            },
            **{k: copy.deepcopy(getattr(self, k)) for k in _FITTED},
            "combat_": None if self.combat_ is None else self.combat_.to_dict(),
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "FeaturePipeline":
        """Rebuild a fitted pipeline from :meth:`to_dict`'s output."""
        pipe = cls(**state["params"])
        for key in _FITTED:
            setattr(pipe, key, copy.deepcopy(state[key]))
        pipe.combat_ = None if state["combat_"] is None else ComBat.from_dict(state["combat_"])
        return pipe

    def _candidates(self, table: pd.DataFrame, centers: Any, covariates: list[str]) -> list[str]:
        if self.features:
            clash = [f for f in self.features if f in covariates]
            if clash and self.combat_features is None:
                raise ValueError(f"ComBat covariate(s) {', '.join(clash)} cannot also be features")
            return [str(f) for f in self.features]
        skip = set(covariates) | ({centers} if isinstance(centers, str) else set())
        names = [f for f in select_features(table, None) if f not in skip]
        if not names:
            raise FeatureTableError("training table has no numeric feature column")
        return names

    def _combat_columns(self, names: list[str]) -> list[str]:
        if self.combat_features is None:
            return names
        unknown = [f for f in self.combat_features if f not in names]
        if unknown:
            raise ValueError(f"ComBat feature(s) {', '.join(map(str, unknown))} are not among the model features")
        clash = [f for f in self.combat_features if f in self.combat_covariates]
        if clash:
            raise ValueError(f"ComBat covariate(s) {', '.join(clash)} cannot also be harmonised")
        return [f for f in names if f in self.combat_features]

    def _centres(self, table: pd.DataFrame, centers: str | Sequence[Any] | None) -> Sequence[Any]:
        if centers is None:
            raise FeatureTableError("the pipeline harmonises across centres (ComBat): pass the centre of every row")
        if isinstance(centers, str):
            if centers not in table.columns:
                raise FeatureTableError(f"table lacks the centre column {centers}")
            return table[centers].to_numpy()
        return centers


_FITTED = ("features_", "medians_", "means_", "scales_", "univariate_", "selected_", "dropped_",
           "min_features_fallback_", "n_train_", "n_events_")


def _outcome(time: Sequence[float], event: Sequence[int], n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(time, dtype=np.float64)
    e = np.asarray(event, dtype=np.float64)
    if t.shape != (n_rows,) or e.shape != (n_rows,):
        raise FeatureTableError(f"time and event must have one value per training row ({n_rows})")
    if not (np.isfinite(t).all() and (t >= 0).all() and np.isin(e, (0, 1)).all()):
        raise FeatureTableError("training outcome must have finite times >= 0 and events coded 0/1")
    if e.sum() < 2:
        raise FeatureTableError("training table has fewer than 2 events; cannot screen features")
    return t, e.astype(int)


def _covariate_frame(table: pd.DataFrame, covariates: Sequence[str]) -> pd.DataFrame | None:
    if not covariates:
        return None
    missing = [c for c in covariates if c not in table.columns]
    if missing:
        raise FeatureTableError(f"table lacks ComBat covariate column(s) {', '.join(missing)}")
    return table[list(covariates)]


def _plain(value: Any) -> Any:
    """A JSON-safe Python scalar (NaN becomes None)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return None if np.isnan(value) else (int(value) if isinstance(value, (int, np.integer)) else float(value))
    return value
