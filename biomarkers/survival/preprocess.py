"""Feature preprocessing fitted on training data only: log transform, median imputation, z-scores."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from biomarkers.errors import FeatureTableError


@dataclass
class Preprocessor:
    """Select columns, ``log1p`` the skewed ones, impute medians, standardise.

    Every statistic is learnt in :meth:`fit` (on the training cohort) and only applied in
    :meth:`transform`. Fitted attributes end in ``_``.
    """

    features: list[str]
    log_features: list[str] = field(default_factory=list)
    medians_: list[float] = field(default_factory=list)
    means_: list[float] = field(default_factory=list)
    scales_: list[float] = field(default_factory=list)

    def fit(self, table: pd.DataFrame) -> "Preprocessor":
        """Learn medians, means and standard deviations from ``table``."""
        x = self._raw(table, "training table")
        medians = np.nanmedian(x, axis=0)
        if np.isnan(medians).any():
            bad = [f for f, m in zip(self.features, medians) if np.isnan(m)]
            raise FeatureTableError(f"feature(s) with no value in the training table: {', '.join(bad)}")
        x = np.where(np.isnan(x), medians, x)
        scales = x.std(axis=0, ddof=1)
        constant = [f for f, s in zip(self.features, scales) if not s > 0]
        if constant:
            raise FeatureTableError(f"feature(s) constant in the training table: {', '.join(constant)}")
        self.medians_, self.means_, self.scales_ = medians.tolist(), x.mean(axis=0).tolist(), scales.tolist()
        return self

    def transform(self, table: pd.DataFrame, what: str = "feature table") -> np.ndarray:
        """Standardised design matrix (n_subjects, n_features) of ``table``."""
        x = self._raw(table, what)
        x = np.where(np.isnan(x), np.asarray(self.medians_), x)
        return (x - np.asarray(self.means_)) / np.asarray(self.scales_)

    def _raw(self, table: pd.DataFrame, what: str) -> np.ndarray:
        missing = [f for f in self.features if f not in table.columns]
        if missing:
            raise FeatureTableError(f"{what} lacks feature column(s) {', '.join(missing)}")
        unknown = [f for f in self.log_features if f not in self.features]
        if unknown:
            raise FeatureTableError(f"log feature(s) not among the model features: {', '.join(unknown)}")
        x = table[self.features].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
        for j, name in enumerate(self.features):
            if name in self.log_features:
                if np.nanmin(x[:, j], initial=0.0) < 0:
                    raise FeatureTableError(f"{what}: log feature {name} has negative values")
                x[:, j] = np.log1p(x[:, j])
        return x

    def to_dict(self) -> dict:
        """JSON-serialisable state."""
        return asdict(self)

    @classmethod
    def from_dict(cls, state: dict) -> "Preprocessor":
        """Rebuild a fitted preprocessor from :meth:`to_dict`'s output."""
        return cls(**state)


def select_features(table: pd.DataFrame, include: Sequence[str] | None) -> list[str]:
    """Model feature names: ``include`` when given, else every numeric non-outcome column."""
    if include:
        return list(include)
    skip = {"subject_id", "time", "event"}
    return [c for c in table.columns if c not in skip and pd.api.types.is_numeric_dtype(table[c])]
