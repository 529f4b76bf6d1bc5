"""Four per-patient uncertainty scores of one survival model, and the choice between them.

For a model entry (kind, hyperparameters, features) and the training cohort:

``mc_dropout`` (``u_mc_dropout``)
    The frozen model's MC-dropout SD of the risk (``risk_sd``; stochastic models only).
``ensemble`` (``u_ensemble``)
    SD of the risk over ``members`` fits: the model itself and ``members - 1`` more, with other
    seeds for a network (a deep ensemble, Lakshminarayanan et al. 2017, NeurIPS) and on bootstrap
    resamples of the training rows for a deterministic model (bagging; another seed would refit
    the same model). Members' risks are on the model's scale (log-hazard for Cox models).
``distance`` (``u_distance``)
    Mahalanobis distance of the patient's preprocessed design row from the training rows
    (Ledoit-Wolf shrunk covariance): how unlike anyone the model was fitted on the patient is.
``conformal`` (``u_conformal``)
    ``log(q50 / L)``: how far the conformal 90 % lower bound on the survival time
    (:mod:`biomarkers.survival.conformal`) falls below the model's predicted median. For a
    proportional-hazards model this is a function of the risk alone; it is reported as what a
    calibrated bound says about each patient, beside the bound and its coverage.

Everything is estimated without the scored cohorts: ``folds``-fold cross-validation of the
training cohort gives every training patient out-of-fold scores from models that did not see
it. Those calibrate the conformal bound, and the method with the largest selective-prediction
area on them (:func:`~biomarkers.validation.selective.selective_area`) becomes the abstention
measure, with its threshold at ``abstain_quantile`` of the out-of-fold values. The models refitted
on the whole training cohort then score every other cohort.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from biomarkers.errors import FeatureTableError
from biomarkers.survival import conformal
from biomarkers.survival.bundle import ModelBundle, fit_bundle
from biomarkers.validation.selective import selective_area, selective_curve

#: Method name -> score column (higher = less trustworthy).
METHODS: dict[str, str] = {"mc_dropout": "u_mc_dropout", "ensemble": "u_ensemble", "distance": "u_distance",
                           "conformal": "u_conformal"}
_QUANTILE_GRID = 400


@dataclass(frozen=True)
class UncertaintySettings:
    """How the uncertainty scores are made (defaults: the workflow's)."""

    members: int = 5
    folds: int = 5
    alpha: float = 0.1
    c0_days: float = 1095.0
    abstain_quantile: float = 0.9
    seed: int = 0


@dataclass(frozen=True)
class ModelEntry:
    """What :func:`~biomarkers.survival.bundle.fit_bundle` needs to fit one model."""

    kind: str
    features: Sequence[str] | None = None
    log_features: Sequence[str] = ()
    params: Mapping[str, Any] | None = None
    pipeline: Mapping[str, Any] | None = None

    def fit(self, table: pd.DataFrame, seed_offset: int = 0) -> ModelBundle:
        params = dict(self.params or {})
        if seed_offset:
            params["seed"] = int(params.get("seed", 0)) + seed_offset
        bundle, _ = fit_bundle(table, self.kind, self.features, self.log_features, params=params,
                               pipeline=dict(self.pipeline or {}))
        return bundle


def _members(entry: ModelEntry, table: pd.DataFrame, members: int, seed: int) -> list[ModelBundle]:
    """The model itself, then ``members - 1`` more (other seeds, or bootstrap resamples)."""
    first = entry.fit(table)
    out = [first]
    stochastic = first.estimator.stochastic
    for k in range(1, members):
        if stochastic:
            out.append(entry.fit(table, seed_offset=k))
            continue
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(k,)))
        for _ in range(100):  # a resample needs two events
            rows = rng.integers(0, len(table), len(table))
            if table["event"].to_numpy()[rows].sum() >= 2:
                break
        resample = table.iloc[np.sort(rows)].reset_index(drop=True)
        resample["subject_id"] = [f"{sid}#{i}" for i, sid in enumerate(resample["subject_id"])]
        out.append(entry.fit(resample))
    return out


def _score(members: list[ModelBundle], train: pd.DataFrame, table: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Risk of the first member with every method's raw ingredients, for the rows of ``table``."""
    from sklearn.covariance import LedoitWolf

    first = members[0]
    x = first.design(table)
    seed = first.info["score_seed"]
    samples = first.estimator.risk_samples(x, seed)
    grid = np.linspace(1.0, float(train["time"].max()), _QUANTILE_GRID)
    surv = first.estimator.survival_samples(x, grid, seed).mean(axis=0)
    member_risk = np.stack([samples.mean(axis=0)] + [m.risk(table) for m in members[1:]])
    out = pd.DataFrame({"subject_id": table["subject_id"].astype(str).to_numpy(),
                        "time": table["time"].to_numpy(float), "event": table["event"].to_numpy(int),
                        "risk": samples.mean(axis=0),
                        "u_ensemble": member_risk.std(axis=0, ddof=1) if len(members) > 1 else 0.0,
                        "u_distance": np.sqrt(LedoitWolf().fit(first.design(train)).mahalanobis(x)),
                        "q50": conformal.survival_quantile(grid, surv, 0.5),
                        "q_alpha": conformal.survival_quantile(grid, surv, alpha)})
    if first.estimator.stochastic:
        out["u_mc_dropout"] = samples.std(axis=0, ddof=1)
    return out


def uncertainty_scores(entry: ModelEntry, train: pd.DataFrame, cohorts: Mapping[str, pd.DataFrame],
                       settings: UncertaintySettings = UncertaintySettings(),
                       progress: bool = False) -> tuple[pd.DataFrame, dict]:
    """Out-of-fold training scores and every cohort's scores with each method's uncertainty.

    Returns
    -------
    scores : DataFrame
        One row per patient: ``cohort`` (``train`` rows are out-of-fold), ``subject_id``, ``time``,
        ``event``, ``risk``, each available method's column (:data:`METHODS`), ``q_alpha`` (the
        model's alpha-quantile of T), ``lower_bound`` (conformal, days), ``abstain`` (the chosen
        method above its threshold).
    choice : dict
        ``methods`` (those available), ``training_area`` (selective-prediction area of each on the
        out-of-fold scores), ``chosen``, ``threshold``, ``conformal`` (alpha, c0, eta, calibration size),
        and the settings.
    """
    from sklearn.model_selection import StratifiedKFold

    event = train["event"].to_numpy(int)
    if event.sum() < 2 * settings.folds:
        raise FeatureTableError(f"{settings.folds}-fold uncertainty calibration needs at least 2 events per fold; "
                                f"the training table has {int(event.sum())}")
    splits = list(StratifiedKFold(settings.folds, shuffle=True, random_state=settings.seed)
                  .split(np.zeros(len(train)), event))
    parts = []
    for fold, (fit_rows, held_rows) in enumerate(tqdm(splits, desc="uncertainty folds", disable=not progress)):
        part = train.iloc[fit_rows].reset_index(drop=True)
        held = train.iloc[held_rows].reset_index(drop=True)
        parts.append(_score(_members(entry, part, settings.members, settings.seed + 1000 * fold), part, held,
                            settings.alpha))
    oof = pd.concat(parts, ignore_index=True)
    order = {sid: i for i, sid in enumerate(train["subject_id"].astype(str))}
    oof = oof.sort_values("subject_id", key=lambda s: s.map(order)).reset_index(drop=True)
    bound = conformal.calibrate(oof["time"], oof["event"], oof["q_alpha"], settings.c0_days, settings.alpha)
    members = _members(entry, train, settings.members, settings.seed)
    frames = [oof.assign(cohort="train")]
    for name, table in cohorts.items():
        frames.append(_score(members, train, table, settings.alpha).assign(cohort=name))
    scores = pd.concat(frames, ignore_index=True)
    scores["lower_bound"] = bound.lower(scores["q_alpha"])
    scores["u_conformal"] = np.log(np.maximum(scores["q50"], 1e-9) / np.maximum(scores["lower_bound"], 1e-9))
    methods = {m: c for m, c in METHODS.items() if c in scores.columns}
    is_train = scores["cohort"] == "train"
    t, e, r = (scores.loc[is_train, c].to_numpy(float) for c in ("time", "event", "risk"))
    areas = {m: selective_area(selective_curve(t, e, r, scores.loc[is_train, c].to_numpy(float)))
             for m, c in methods.items()}
    chosen = max(areas, key=lambda m: (areas[m], -list(methods).index(m)))
    threshold = float(np.quantile(scores.loc[is_train, methods[chosen]], settings.abstain_quantile))
    scores["abstain"] = scores[methods[chosen]] > threshold
    columns = ["cohort", "subject_id", "time", "event", "risk", *methods.values(), "q50", "q_alpha",
               "lower_bound", "abstain"]
    choice = {"model": entry.kind, "methods": methods, "training_area": areas, "chosen": chosen,
              "threshold": threshold, "conformal": asdict(bound), "settings": asdict(settings),
              "rule": f"abstain if {methods[chosen]} > {threshold:.4g}, the {settings.abstain_quantile:g} quantile "
                      f"of its out-of-fold training values ({chosen}: the largest selective-prediction area "
                      f"in {settings.folds}-fold cross-validation of the training cohort)"}
    return scores[columns], choice


def uncertainty_scores_to_files(train_path: str | Path, cohort_paths: Mapping[str, str | Path], entry: ModelEntry,
                                settings: UncertaintySettings, out_scores: str | Path, out_choice: str | Path,
                                training_cohort: str = "train", progress: bool = False) -> dict:
    """:func:`uncertainty_scores` from feature-table files; writes the scores (parquet) and the choice (JSON)."""
    from biomarkers.io.atomic import write_json, write_parquet
    from biomarkers.survival.bundle import read_feature_table

    train = read_feature_table(train_path, training_cohort=training_cohort)
    cohorts = {name: read_feature_table(path) for name, path in cohort_paths.items()}
    scores, choice = uncertainty_scores(entry, train, cohorts, settings, progress)
    write_parquet(scores, out_scores, {"uncertainty_choice": choice})
    write_json(choice, out_choice)
    return choice
