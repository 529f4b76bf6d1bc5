"""Clinical covariates and survival outcome of the synthetic cohort.

The true log-hazard linear predictor is

    lp = 0.60 z(log MTV) + 0.50 z(heterogeneity) + 0.35 z(log(1 + Dmax))
         + 0.30 z(age) + 0.30 ECOG

where MTV is the total true lesion volume (mL), heterogeneity the volume-weighted
mean texture amplitude of the lesions (drawn independently of their uptake, so
SUVmax/SUVmean do not carry it), Dmax the largest distance between two lesion
centres (mm, 0 for a single lesion) and ECOG the performance status (0, 1, 2).
z() standardises with fixed population constants (estimated once from 2,000
simulated phantoms), so one subject's lp never depends on the other subjects.
Event times follow a Weibull proportional-hazards model; censoring is random
(exponential) and administrative at five years.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COEF_LOG_MTV: float = 0.60
COEF_HETEROGENEITY: float = 0.50
COEF_DISSEMINATION: float = 0.35
COEF_AGE: float = 0.30
COEF_ECOG: float = 0.30

# population mean and SD of each standardised term (see module docstring)
POP_LOG_MTV: tuple[float, float] = (2.70, 1.05)
POP_HETEROGENEITY: tuple[float, float] = (0.25, 0.15)
POP_LOG_DISSEMINATION: tuple[float, float] = (4.00, 2.32)
POP_AGE_YEARS: tuple[float, float] = (62.0, 10.0)

WEIBULL_SHAPE: float = 1.3
WEIBULL_SCALE_DAYS: float = 1500.0   # baseline scale (lp = 0); population median about 880 days
CENSOR_RATE_PER_DAY: float = 1.0 / 3500.0  # about 24 % censored at random
ADMIN_CENSOR_DAYS: float = 1826.0
MIN_TIME_DAYS: float = 1.0

AGE_RANGE_YEARS: tuple[float, float] = (30.0, 90.0)
ECOG_PROBABILITIES: tuple[float, float, float] = (0.50, 0.35, 0.15)


@dataclass(frozen=True)
class Covariates:
    """Clinical covariates of a cohort (arrays of one length)."""

    age_years: np.ndarray   # int
    sex: np.ndarray         # "F" / "M"
    ecog: np.ndarray        # int 0..2


@dataclass(frozen=True)
class LesionBurden:
    """Subject-level ground-truth lesion summaries that enter the hazard."""

    mtv_ml: float
    heterogeneity: float
    lesion_count: int
    dissemination_mm: float


def draw_covariates(n_subjects: int, rng: np.random.Generator) -> Covariates:
    """Draw age ~ N(62, 10) clipped to 30-90 years, sex 50/50 and ECOG 0/1/2."""
    if n_subjects < 1:
        raise ValueError(f"n_subjects must be at least 1, got {n_subjects}")
    age = np.rint(np.clip(rng.normal(*POP_AGE_YEARS, n_subjects), *AGE_RANGE_YEARS)).astype(int)
    sex = np.where(rng.random(n_subjects) < 0.5, "F", "M")
    ecog = rng.choice(3, size=n_subjects, p=ECOG_PROBABILITIES).astype(int)
    return Covariates(age, sex, ecog)


def lesion_burden(volumes_ml: np.ndarray, texture_amplitudes: np.ndarray,
                  centres_mm: np.ndarray) -> LesionBurden:
    """Summarise a subject's lesions.

    Parameters
    ----------
    volumes_ml : array of shape (n,)
        True lesion volumes.
    texture_amplitudes : array of shape (n,)
        Texture amplitude of each lesion.
    centres_mm : array of shape (n, 3)
        Lesion centres.

    Returns
    -------
    LesionBurden
        Total MTV, volume-weighted heterogeneity, count and Dmax.
    """
    volumes = np.asarray(volumes_ml, float)
    if volumes.size == 0 or np.any(volumes <= 0):
        raise ValueError("lesion_burden needs at least one lesion with positive volume")
    centres = np.asarray(centres_mm, float).reshape(-1, 3)
    diffs = centres[:, None, :] - centres[None, :, :]
    dmax = float(np.sqrt((diffs ** 2).sum(axis=-1)).max())
    het = float(np.average(np.asarray(texture_amplitudes, float), weights=volumes))
    return LesionBurden(float(volumes.sum()), het, int(volumes.size), dmax)


def _z(values: np.ndarray, population: tuple[float, float]) -> np.ndarray:
    return (np.asarray(values, float) - population[0]) / population[1]


def linear_predictor(mtv_ml: np.ndarray, heterogeneity: np.ndarray, dissemination_mm: np.ndarray,
                     age_years: np.ndarray, ecog: np.ndarray) -> np.ndarray:
    """True log-hazard linear predictor (higher = worse prognosis); see the module docstring."""
    mtv = np.asarray(mtv_ml, float)
    if np.any(mtv <= 0):
        raise ValueError("mtv_ml must be positive")
    return (COEF_LOG_MTV * _z(np.log(mtv), POP_LOG_MTV)
            + COEF_HETEROGENEITY * _z(heterogeneity, POP_HETEROGENEITY)
            + COEF_DISSEMINATION * _z(np.log1p(dissemination_mm), POP_LOG_DISSEMINATION)
            + COEF_AGE * _z(age_years, POP_AGE_YEARS)
            + COEF_ECOG * np.asarray(ecog, float))


def draw_survival(lp: np.ndarray, rng: np.random.Generator, latent: bool = False) -> tuple[np.ndarray, ...]:
    """Draw observed times and event indicators under the Weibull PH model.

    The event time T has survival S(t) = exp(-(t / scale) ** shape * exp(lp)); the
    observed time is min(T, C, 5 years) with C ~ Exponential(CENSOR_RATE_PER_DAY).

    Parameters
    ----------
    lp : array of shape (n,)
        Log-hazard linear predictors.
    rng : numpy.random.Generator
        Source of event and censoring times.
    latent : bool
        Also return the latent (uncensored) event times, in days (ground truth for checking
        the coverage of a prediction bound).

    Returns
    -------
    time_days : ndarray of float
        Observed times, rounded to 0.1 day and at least :data:`MIN_TIME_DAYS`.
    event : ndarray of int
        1 for an observed event, 0 for censored.
    event_days : ndarray of float
        Only with ``latent``: T itself, unrounded.
    """
    lp = np.asarray(lp, float)
    hazard_scale = np.exp(-lp / WEIBULL_SHAPE)
    event_days = WEIBULL_SCALE_DAYS * hazard_scale * rng.exponential(1.0, lp.shape) ** (1 / WEIBULL_SHAPE)
    censor_days = np.minimum(rng.exponential(1.0 / CENSOR_RATE_PER_DAY, lp.shape), ADMIN_CENSOR_DAYS)
    event = (event_days <= censor_days).astype(int)
    time_days = np.maximum(np.round(np.minimum(event_days, censor_days), 1), MIN_TIME_DAYS)
    return (time_days, event, event_days) if latent else (time_days, event)
