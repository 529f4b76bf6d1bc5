"""Survival curves of the deep survival models (:mod:`biomarkers.survival.deep`): the predicted
curves with their MC-dropout band, and survival at the cuts of a discrete time grid from the
networks' outputs (logistic hazard: Gensheimer & Narasimhan 2019; DeepHit: Lee et al. 2018)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SurvivalCurves:
    """Predicted survival probabilities at ``times``, shape (n_patients, len(times)).

    ``lower``/``upper`` are the 2.5 and 97.5 percentiles over MC-dropout samples (equal
    to ``mean`` without MC dropout); ``samples`` (T, n_patients, len(times)) is kept only
    when asked for.
    """

    times: np.ndarray
    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    samples: np.ndarray | None = None


def grid_survival(phi: np.ndarray) -> np.ndarray:
    """Survival at the cuts from hazard logits: ``prod (1 - sigmoid(phi))`` = ``exp(-cumsum softplus)``."""
    return np.exp(-np.cumsum(np.logaddexp(0.0, phi), axis=-1))


def pmf_survival(phi: np.ndarray) -> np.ndarray:
    """Survival at the cuts from DeepHit logits: ``1 - cumsum(softmax([phi, 0]))`` without the padding column."""
    padded = np.concatenate([phi, np.zeros(phi.shape[:-1] + (1,))], axis=-1)
    pmf = np.exp(padded - padded.max(axis=-1, keepdims=True))
    pmf /= pmf.sum(axis=-1, keepdims=True)
    return np.clip(1.0 - np.cumsum(pmf[..., :-1], axis=-1), 0.0, 1.0)
