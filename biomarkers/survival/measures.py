"""Per-patient uncertainty measures that one frozen model computes by itself.

Shared by the frozen bundle (:mod:`biomarkers.survival.bundle`, whose abstention uses one of them)
and the comparison of uncertainty methods (:mod:`biomarkers.survival.uncertainty_methods`, which
chooses that one), so both compute the same numbers:

- ``risk_sd``: MC-dropout standard deviation of the risk; ``risk_flip``: share of MC-dropout
  samples on the other side of the risk-group cut-off;
- ``distance``: Mahalanobis distance of a patient's preprocessed design row from the training rows,
  with the Ledoit-Wolf shrunk covariance (Ledoit and Wolf 2004, J. Multivar. Anal. 88:365-411),
  which stays invertible when features are nearly collinear;
- ``conformal``: ``log(q50 / L)``, how far the conformal lower bound ``L`` on the survival time
  (:mod:`biomarkers.survival.conformal`) lies below the predicted median ``q50``; the quantiles are
  read off the model's survival curve on :func:`quantile_grid`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Points of the time grid on which predicted survival quantiles are read.
QUANTILE_GRID = 400


def quantile_grid(max_days: float) -> np.ndarray:
    """Days 1 to ``max_days`` (the last training time) where survival quantiles are read."""
    return np.linspace(1.0, float(max_days), QUANTILE_GRID)


def spread(samples: np.ndarray, cutoff: float) -> dict[str, np.ndarray]:
    """``risk_sd`` and ``risk_flip`` of risk samples (T, n) around the risk-group ``cutoff``
    (zeros when there is a single sample: a deterministic model)."""
    mean = samples.mean(axis=0)
    if len(samples) < 2:
        zeros = np.zeros(samples.shape[1])
        return {"risk_sd": zeros, "risk_flip": zeros}
    flip = ((samples > cutoff) != (mean > cutoff)[None, :]).mean(axis=0)
    return {"risk_sd": samples.std(axis=0, ddof=1), "risk_flip": flip}


@dataclass(frozen=True)
class Distance:
    """Location and precision of the training design rows; :meth:`__call__` gives distances."""

    location: tuple[float, ...]
    precision: tuple[tuple[float, ...], ...]

    @classmethod
    def fit(cls, design: np.ndarray) -> "Distance":
        from sklearn.covariance import LedoitWolf

        lw = LedoitWolf().fit(np.asarray(design, np.float64))
        return cls(tuple(float(v) for v in lw.location_), tuple(tuple(float(v) for v in row) for row in lw.precision_))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        centred = np.asarray(x, np.float64) - np.asarray(self.location)
        squared = np.einsum("ij,jk,ik->i", centred, np.asarray(self.precision), centred)
        return np.sqrt(np.maximum(squared, 0.0))

    def to_dict(self) -> dict:
        return {"location": list(self.location), "precision": [list(row) for row in self.precision]}

    @classmethod
    def from_dict(cls, state: dict) -> "Distance":
        return cls(tuple(float(v) for v in state["location"]),
                   tuple(tuple(float(v) for v in row) for row in state["precision"]))


def conformal_score(q50: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """``log(q50 / L)`` (both in days; floored at 1e-9 so that a zero bound stays finite)."""
    return np.log(np.maximum(np.asarray(q50, float), 1e-9) / np.maximum(np.asarray(lower, float), 1e-9))
