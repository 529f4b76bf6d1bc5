"""Four per-patient uncertainty scores of one survival model, and the choice between them.

For a model specification (kind, hyperparameters, features) and the training cohort:

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

Everything is estimated without the scored cohorts. :func:`uncertainty_choice`: ``folds``-fold
cross-validation of the training cohort gives every training patient out-of-fold scores from
models that did not see it. Those calibrate the conformal bound, and the method with the largest
selective-prediction area on them (:func:`~biomarkers.stats.selective_area`) among
those a single frozen model applies (:data:`~biomarkers.survival.bundle.CHOICE_MEASURES`: not the
ensemble, which needs its other members) becomes the abstention measure; ``fit`` freezes that choice
into the model's bundle. :func:`uncertainty_scores`: the models refitted on the whole training
cohort score every other cohort; each method's flag threshold is ``abstain_quantile`` of the refitted
model's values on the training cohort (the scale the bundle's threshold is on: fold models, fitted
on fewer patients, spread their MC-dropout samples differently).
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
from tqdm import tqdm

from biomarkers.errors import FeatureTableError
from biomarkers.survival import conformal, measures
from biomarkers.survival.abstention import CHOICE_MEASURES, UncertaintySettings
from biomarkers.survival.bundle import ModelBundle, fit_bundle
from biomarkers.survival.spec import ModelSpec
from biomarkers.stats import selective_area, selective_curve

#: Method name -> score column (higher = less trustworthy).
METHODS: dict[str, str] = {"mc_dropout": "u_mc_dropout", "ensemble": "u_ensemble", "distance": "u_distance",
                           "conformal": "u_conformal"}


def _fit(spec: ModelSpec, table: pd.DataFrame, seed_offset: int = 0) -> ModelBundle:
    """``spec`` fitted on ``table``; a network's seed moved on by ``seed_offset``."""
    if seed_offset:
        spec = spec.with_params(seed=spec.hyperparameters["seed"] + seed_offset)
    return fit_bundle(table, spec)[0]


def _members(spec: ModelSpec, table: pd.DataFrame, members: int, seed: int) -> list[ModelBundle]:
    """The model itself, then ``members - 1`` more (other seeds, or bootstrap resamples)."""
    first = _fit(spec, table)
    out = [first]
    stochastic = first.estimator.stochastic
    for k in range(1, members):
        if stochastic:
            out.append(_fit(spec, table, seed_offset=k))
            continue
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(k,)))
        for _ in range(100):  # a resample needs two events
            rows = rng.integers(0, len(table), len(table))
            if table["event"].to_numpy()[rows].sum() >= 2:
                break
        resample = table.iloc[np.sort(rows)].reset_index(drop=True)
        resample["subject_id"] = [f"{sid}#{i}" for i, sid in enumerate(resample["subject_id"])]
        out.append(_fit(spec, resample))
    return out


def _score(members: list[ModelBundle], train: pd.DataFrame, table: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Risk of the first member with every method's raw ingredients, for the rows of ``table``."""
    first = members[0]
    x = first.design(table)
    seed = first.info["score_seed"]
    samples = first.estimator.risk_samples(x, seed)
    grid = measures.quantile_grid(train["time"].max())
    surv = first.estimator.survival_samples(x, grid, seed).mean(axis=0)
    member_risk = np.stack([samples.mean(axis=0)] + [m.risk(table) for m in members[1:]])
    out = pd.DataFrame({"subject_id": table["subject_id"].astype(str).to_numpy(),
                        "time": table["time"].to_numpy(float), "event": table["event"].to_numpy(int),
                        "risk": samples.mean(axis=0),
                        "u_ensemble": member_risk.std(axis=0, ddof=1) if len(members) > 1 else 0.0,
                        "u_distance": measures.Distance.fit(first.design(train))(x),
                        "q50": conformal.survival_quantile(grid, surv, 0.5),
                        "q_alpha": conformal.survival_quantile(grid, surv, alpha)})
    if first.estimator.stochastic:
        out["u_mc_dropout"] = samples.std(axis=0, ddof=1)
    return out


def _conformal_columns(scores: pd.DataFrame, bound: conformal.ConformalBound) -> pd.DataFrame:
    lower = bound.lower(scores["q_alpha"])
    return scores.assign(lower_bound=lower, u_conformal=measures.conformal_score(scores["q50"], lower))


def _check_spec(spec: ModelSpec, settings: UncertaintySettings) -> None:
    if spec.kind == "cnn_survival":
        raise ValueError("uncertainty methods compare tabular models; cnn_survival reads lesion patches")
    if settings.members < 1 or settings.folds < 2:
        raise ValueError(f"need members >= 1 and folds >= 2, got {settings.members} and {settings.folds}")


def uncertainty_choice(spec: ModelSpec, train: pd.DataFrame, settings: UncertaintySettings = UncertaintySettings(),
                       progress: bool = False, train_sha256: str = "") -> tuple[pd.DataFrame, dict]:
    """Out-of-fold training scores with each method's uncertainty, the conformal calibration on
    them and the abstention method chosen by their selective-prediction areas.

    Returns
    -------
    oof : DataFrame
        One row per training patient (``cohort`` "train"): ``subject_id``, ``time``, ``event``,
        ``risk``, each available method's column (:data:`METHODS`), ``q50``, ``q_alpha`` (the model's
        median and alpha-quantile of T), ``lower_bound`` (conformal, days).
    choice : dict
        ``model``, ``entry`` (the specification fitted, :meth:`~biomarkers.survival.spec.ModelSpec.record`),
        ``methods`` (those available), ``training_area``
        (selective-prediction area of each on the out-of-fold scores), ``eligible`` (those a frozen
        model applies), ``chosen``, ``conformal`` (alpha, c0, eta, calibration size), ``settings``,
        ``train_table_sha256``, ``rule``.
    """
    from sklearn.model_selection import StratifiedKFold

    _check_spec(spec, settings)
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
        parts.append(_score(_members(spec, part, settings.members, settings.seed + 1000 * fold), part, held,
                            settings.alpha))
    oof = pd.concat(parts, ignore_index=True)
    order = {sid: i for i, sid in enumerate(train["subject_id"].astype(str))}
    oof = oof.sort_values("subject_id", key=lambda s: s.map(order)).reset_index(drop=True)
    bound = conformal.calibrate(oof["time"], oof["event"], oof["q_alpha"], settings.c0_days, settings.alpha)
    oof = _conformal_columns(oof, bound).assign(cohort="train")
    methods = {m: c for m, c in METHODS.items() if c in oof.columns}
    t, e, r = (oof[c].to_numpy(float) for c in ("time", "event", "risk"))
    areas = {m: selective_area(selective_curve(t, e, r, oof[c].to_numpy(float))) for m, c in methods.items()}
    eligible = [m for m in methods if m in CHOICE_MEASURES]
    chosen = max(eligible, key=lambda m: (areas[m], -eligible.index(m)))
    best = max(areas, key=lambda m: (areas[m], -list(methods).index(m)))
    note = "" if best == chosen else f"; {best}, larger still, needs its other members and is not applied"
    choice = {"model": spec.kind, "entry": spec.record(),
              "methods": methods, "training_area": areas, "eligible": eligible, "chosen": chosen,
              "conformal": asdict(bound), "settings": asdict(settings), "train_table_sha256": train_sha256,
              "rule": f"{chosen}: the largest selective-prediction area in {settings.folds}-fold cross-validation "
                      f"of the training cohort among {', '.join(eligible)}{note}"}
    columns = ["cohort", "subject_id", "time", "event", "risk", *methods.values(), "q50", "q_alpha", "lower_bound"]
    return oof[columns], choice


def uncertainty_scores(spec: ModelSpec, train: pd.DataFrame, cohorts: Mapping[str, pd.DataFrame],
                       settings: UncertaintySettings = UncertaintySettings(), progress: bool = False,
                       calibration: tuple[pd.DataFrame, dict] | None = None) -> tuple[pd.DataFrame, dict]:
    """Out-of-fold training scores and every cohort's scores with each method's uncertainty.

    ``calibration``: the result of :func:`uncertainty_choice` for the same specification, settings and
    training table (made here when not given).

    Returns
    -------
    scores : DataFrame
        The out-of-fold training rows of :func:`uncertainty_choice`, then each cohort's rows
        (``cohort`` its name) from the models refitted on the whole training cohort, with
        ``abstain`` (the chosen method above its threshold).
    choice : dict
        That of :func:`uncertainty_choice`, with ``thresholds`` (each method's ``abstain_quantile``
        of the refitted model's training values), ``threshold`` (the chosen one's) and ``rule``.
    """
    oof, choice = calibration if calibration is not None else uncertainty_choice(spec, train, settings, progress)
    if choice["settings"] != asdict(settings) or choice["entry"] != spec.record():
        raise ValueError("the uncertainty calibration was made for another model or other settings")
    bound = conformal.ConformalBound(**choice["conformal"])
    methods = choice["methods"]
    members = _members(spec, train, settings.members, settings.seed)
    fitted = _conformal_columns(_score(members, train, train, settings.alpha), bound)
    thresholds = {m: float(np.quantile(fitted[c], settings.abstain_quantile)) for m, c in methods.items()}
    frames = [oof] + [_conformal_columns(_score(members, train, table, settings.alpha), bound).assign(cohort=name)
                      for name, table in cohorts.items()]
    scores = pd.concat(frames, ignore_index=True)
    chosen = choice["chosen"]
    scores["abstain"] = scores[methods[chosen]] > thresholds[chosen]
    choice = {**choice, "thresholds": thresholds, "threshold": thresholds[chosen],
              "rule": f"abstain if {methods[chosen]} > {thresholds[chosen]:.4g}, the {settings.abstain_quantile:g} "
                      f"quantile of the refitted model's training values ({choice['rule']})"}
    return scores[[*oof.columns, "abstain"]], choice


def uncertainty_choice_to_files(train_path: str | Path, spec: ModelSpec, settings: UncertaintySettings,
                                out_calibration: str | Path, out_choice: str | Path, training_cohort: str = "train",
                                progress: bool = False) -> dict:
    """:func:`uncertainty_choice` from the training table's file; writes the out-of-fold scores
    (parquet, the choice in its metadata) and the choice (JSON, what ``fit --abstention`` reads)."""
    from biomarkers.io.atomic import write_json, write_parquet
    from biomarkers.io.provenance import sha256_file
    from biomarkers.survival.bundle import read_feature_table

    train = read_feature_table(train_path, training_cohort=training_cohort)
    oof, choice = uncertainty_choice(spec, train, settings, progress, sha256_file(train_path))
    write_parquet(oof, out_calibration, {"uncertainty_choice": choice})
    write_json(choice, out_choice)
    return choice


def uncertainty_scores_to_files(train_path: str | Path, cohort_paths: Mapping[str, str | Path],
                                calibration_path: str | Path, out_scores: str | Path, training_cohort: str = "train",
                                progress: bool = False) -> dict:
    """:func:`uncertainty_scores` from feature-table files and the calibration written by
    :func:`uncertainty_choice_to_files`, whose choice names the model specification and the settings;
    writes the scores (parquet, the choice in its metadata)."""
    from biomarkers.errors import InputError
    from biomarkers.io.atomic import read_parquet_metadata, write_parquet
    from biomarkers.io.provenance import sha256_file
    from biomarkers.survival.bundle import read_feature_table

    calibration_path = Path(calibration_path)
    if not calibration_path.is_file():
        raise InputError("uncertainty calibration does not exist (run uncertainty-choice)", path=calibration_path)
    choice = read_parquet_metadata(calibration_path).get("uncertainty_choice")
    if not isinstance(choice, dict) or not {"entry", "settings"} <= set(choice):
        raise InputError("not an uncertainty calibration (no choice in its metadata)", path=calibration_path)
    if choice.get("train_table_sha256") != sha256_file(train_path):
        raise InputError(f"calibration made on another training table than {train_path}; rerun uncertainty-choice",
                         path=calibration_path)
    train = read_feature_table(train_path, training_cohort=training_cohort)
    cohorts = {name: read_feature_table(path) for name, path in cohort_paths.items()}
    spec = ModelSpec.from_record(choice["entry"], f"{calibration_path}: model specification")
    settings = UncertaintySettings(**choice["settings"])
    scores, choice = uncertainty_scores(spec, train, cohorts, settings, progress,
                                        (pd.read_parquet(calibration_path), choice))
    write_parquet(scores, out_scores, {"uncertainty_choice": choice})
    return choice
