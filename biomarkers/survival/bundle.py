"""Fit, freeze and apply a survival model.

A frozen model directory holds ``model.json`` (model name and hyperparameters, the fitted
preprocessing, the model's own state, the risk-group cut-off, the abstention threshold, the
survival horizons, the training table's feature columns, subject IDs and SHA-256, library
versions), any weight file the model needs (its SHA-256 in ``model.json``) and, for linear
models, ``coefficients.tsv``. Everything but the weights is plain JSON, so a reviewer can
read what was fitted. ``manifest.json`` lists the SHA-256 of every other file; :func:`load_bundle`
refuses a bundle whose files differ from it (an edited coefficient, cut-off or training list, a
swapped weight file), naming the file, and the SHA-256 of the manifest itself
(:func:`bundle_sha256`, printed by ``fit`` and written with every score) identifies the whole
bundle: ``score --expect-sha256`` checks it against the value a study published, which catches
a bundle rewritten together with its manifest. No file of a bundle is read with pickle.

Scores (:func:`score_table`): ``risk`` is the mean over MC-dropout samples (the single
prediction of deterministic models), ``risk_sd`` their standard deviation (0 for
deterministic models), ``risk_low``/``risk_high`` the 2.5 and 97.5 percentiles,
``risk_group`` "high" above the training cohort's median risk, ``risk_flip`` the share of
MC-dropout samples that fall in the other risk group (how uncertain the patient's group is),
``abstain`` True where the abstention measure exceeds its ``abstain_quantile`` among the
training cohort's values of the same frozen model, and ``surv_<T>`` (with ``_low``/``_high``
bands) the survival probability at each horizon T (days). A bundle fitted with the choice of
``uncertainty-choice`` (:func:`~biomarkers.survival.uncertainty_methods.uncertainty_choice`) also
scores ``u_distance`` (input distance, :mod:`biomarkers.survival.measures`) when that is its measure,
and ``lower_bound`` (the conformal lower bound on the survival time, days) with ``u_conformal``.

The abstention measure: the method with the largest selective-prediction area in cross-validation
of the training cohort, when fitted with that choice (``mc_dropout`` is ``risk_sd``); else
``risk_flip`` (default) or ``risk_sd``. Why ``risk_flip`` rather than ``risk_sd`` without a choice:
the spread of a network's log-hazard grows with the size of its activations, so the largest
``risk_sd`` tends to belong to patients of extreme risk, whose ranking is the least in doubt; for
stratification the question is whether the patient's *group* is reliable, which ``risk_flip``
measures. The threshold is a quantile of the frozen model's own training values, not of the
cross-validation models', whose MC-dropout spread runs on another scale.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from biomarkers.errors import FeatureTableError, ModelBundleError
from biomarkers.io.atomic import atomic_folder, write_parquet
from biomarkers.io.provenance import sha256_file
from biomarkers.survival import conformal, measures
from biomarkers.survival.abstention import CHOICE_MEASURES, MEASURE_COLUMNS, Abstention
from biomarkers.survival.manifest import MANIFEST, bundle_sha256, check_manifest, library_versions
from biomarkers.survival.models import MODELS, LinearCox, SurvivalModel, make_model
from biomarkers.survival.preprocess import FeaturePipeline, select_features
from biomarkers.survival.spec import ModelSpec
from biomarkers.survival.tables import (OUTCOME, check_scoring_table, default_horizons, feature_columns,
                                        read_feature_table)

__all__ = ["CHOICE_MEASURES", "MANIFEST", "OUTCOME", "Abstention", "ModelBundle", "ModelSpec", "bundle_sha256",
           "check_manifest", "check_scoring_table", "default_horizons", "feature_columns", "fit_bundle",
           "library_versions", "load_bundle", "read_feature_table", "save_bundle", "score_table",
           "write_scores"]

if TYPE_CHECKING:
    from biomarkers.deep.lesion_bags import LesionBags

BUNDLE_FORMAT = 3
#: Column of the feature table naming each subject's centre (needed by ComBat).
CENTER = "center"
#: Preprocessing options of :func:`fit_bundle` (``FeaturePipeline`` arguments) and their defaults:
#: no harmonisation, no correlation filter, no screening (features chosen a priori).
PIPELINE_DEFAULTS: dict[str, Any] = {"harmonize": False, "combat_covariates": [], "combat_features": None,
                                     "corr_threshold": None, "fdr_q": None, "min_features": 1, "max_features": None}
#: Seed of the MC-dropout masks at scoring (recorded in the bundle; scores are reproducible).
SCORE_SEED = 0


@dataclass
class ModelBundle:
    """A fitted model with everything needed to score a new cohort."""

    model: str
    preprocessor: FeaturePipeline
    estimator: SurvivalModel
    risk_cutoff: float
    info: dict
    #: SHA-256 of the bundle's manifest (:func:`bundle_sha256`) once saved or loaded.
    sha256: str = ""

    def design(self, table: pd.DataFrame, what: str = "feature table") -> np.ndarray:
        """The preprocessed design matrix of ``table`` (training statistics only)."""
        centers = None
        if self.preprocessor.combat_ is not None:
            if CENTER not in table.columns:
                raise FeatureTableError(f"{what} lacks the {CENTER} column the model's ComBat harmonisation needs")
            centers = table[CENTER].astype(str).to_numpy()
        return self.preprocessor.transform(table, centers).to_numpy(dtype=np.float64)

    @property
    def coef(self) -> np.ndarray:
        """Coefficients of a linear model (``coxph``, ``coxnet``) on the standardised features."""
        if not isinstance(self.estimator, LinearCox):
            raise AttributeError(f"model {self.model} has no coefficients")
        return self.estimator.coef_

    def inputs(self, table: pd.DataFrame, bags: "LesionBags | None", what: str = "feature table") -> dict:
        """What the estimator reads besides the design matrix: ``{}``, or each row's lesion patches.

        Raises
        ------
        FeatureTableError
            The model reads lesion patches and none were given, the archive's patches differ
            from the training ones, or a subject of ``table`` is missing from the archive.
        """
        if not self.estimator.needs_bags:
            return {}
        if bags is None:
            raise FeatureTableError(f"model {self.model} reads each subject's lesion patches; give the cohort's "
                                    "archive (`biomarkers lesion-patches`, --patches)", path=what)
        where = bags.path or "lesion patch archive"
        expected = self.info.get("lesion_patches")
        if expected is not None and bags.record() != expected:
            raise FeatureTableError(f"lesion patches {bags.record()['patch']} differ from the training ones "
                                    f"{expected['patch']}; build every cohort's archive the same way", path=where)
        try:
            return {"bags": bags.bags(table["subject_id"].astype(str))}
        except KeyError as exc:
            raise FeatureTableError("subject has no entry in the lesion patch archive (build it from the same "
                                    "subjects sheet)", subject_id=str(exc.args[0]), path=where) from None

    def uncertainty(self, x: np.ndarray, samples: np.ndarray, inputs: dict) -> dict[str, np.ndarray]:
        """Every uncertainty column of the scores: ``risk_sd``, ``risk_flip`` and, where the
        abstention holds their state, ``u_distance``; ``lower_bound`` and ``u_conformal``."""
        abstention = self.info["abstention"]
        out = measures.spread(samples, self.risk_cutoff)
        if "distance" in abstention:
            out["u_distance"] = measures.Distance.from_dict(abstention["distance"])(x)
        if "conformal" in abstention:
            cal = abstention["conformal"]
            grid = measures.quantile_grid(cal["grid_max_days"])
            surv = self.estimator.survival_samples(x, grid, self.info["score_seed"], **inputs).mean(axis=0)
            bound = conformal.ConformalBound(cal["alpha"], cal["c0"], cal["eta"], cal["n_calibration"],
                                             cal["effective_n"])
            out["lower_bound"] = bound.lower(conformal.survival_quantile(grid, surv, cal["alpha"]))
            out["u_conformal"] = measures.conformal_score(conformal.survival_quantile(grid, surv, 0.5),
                                                          out["lower_bound"])
        return out

    def risk(self, table: pd.DataFrame, bags: "LesionBags | None" = None) -> np.ndarray:
        """Risk (higher = worse prognosis) of every row: the mean over MC-dropout samples."""
        x = self.design(table)
        return self.estimator.risk_samples(x, self.info["score_seed"], **self.inputs(table, bags)).mean(axis=0)


def fit_bundle(table: pd.DataFrame, spec: ModelSpec, *, table_sha256: str = "",
               horizons: Sequence[float] | None = None, abstention: Abstention = Abstention(),
               bags: "LesionBags | None" = None) -> tuple[ModelBundle, pd.DataFrame | None]:
    """Fit preprocessing and model on the training table.

    Parameters
    ----------
    table : DataFrame
        Training feature table (``subject_id``, ``time``, ``event``, features).
    spec : ModelSpec
        The model, its hyperparameters, features (default: every numeric column), log features and
        preprocessing options (:data:`PIPELINE_DEFAULTS`; see
        :class:`~biomarkers.survival.preprocess.FeaturePipeline`): ComBat across the table's
        ``center`` column, correlation filter, FDR screening, cap on the number of features.
    table_sha256 : str
        The training table's SHA-256 (recorded; an uncertainty choice made on another table is refused).
    horizons : sequence of float, optional
        Times (days) at which survival is scored; default :func:`default_horizons`.
    abstention : Abstention
        The abstention measure, its quantile, or the uncertainty choice that picks the measure.
    bags : LesionBags, optional
        The training subjects' lesion patches, for models that read them (``cnn_survival``);
        the design matrix (``features``) then holds what joins the images, e.g. clinical
        covariates.

    Returns
    -------
    bundle : ModelBundle
    summary : DataFrame or None
        Coefficients with standard errors (``coxph``), coefficients (``coxnet``), else None.
    """
    model, params, log_features = spec.kind, spec.hyperparameters, spec.log_features
    if int(table["event"].sum()) < 2:
        raise FeatureTableError("training table has fewer than 2 events; cannot fit a survival model")
    abstain_quantile = abstention.quantile
    abstention = abstention.measure(model, table_sha256)
    time, event = table["time"].to_numpy(float), table["event"].to_numpy(int)
    options = {**PIPELINE_DEFAULTS, **spec.pipeline}
    unknown = sorted(set(options) - set(PIPELINE_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown preprocessing option(s) {', '.join(unknown)}")
    names = [f for f in select_features(table, spec.features) if not options["harmonize"]
             or f not in options["combat_covariates"]]
    if options["harmonize"] and options["combat_features"] is not None:
        # only this model's features are harmonised; a model of clinical covariates alone has none
        options["combat_features"] = [f for f in options["combat_features"] if f in names]
        options["harmonize"] = bool(options["combat_features"])
    pre = FeaturePipeline(names, list(log_features), **options)
    if options["harmonize"] and CENTER not in table.columns:
        raise FeatureTableError(f"training table lacks the {CENTER} column ComBat harmonisation needs")
    pre.fit(table, time, event, table[CENTER].astype(str).to_numpy() if options["harmonize"] else None)
    bundle = ModelBundle(model, pre, make_model(model, params), 0.0, {"score_seed": SCORE_SEED})
    x = bundle.design(table, "training table")
    names = list(pre.selected_)
    if bundle.estimator.needs_bags and bags is not None:
        bundle.info["lesion_patches"] = bags.record()
    inputs = bundle.inputs(table, bags, "training table")
    estimator = bundle.estimator.fit(x, time, event, names, **inputs)
    samples = estimator.risk_samples(x, SCORE_SEED, **inputs)
    risk = samples.mean(axis=0)
    bundle.risk_cutoff = float(np.median(risk))
    measure, why = abstention["measure"], abstention.pop("why", "")
    if measure == "distance":
        abstention["distance"] = measures.Distance.fit(x).to_dict()
    if "conformal" in abstention:
        abstention["conformal"]["grid_max_days"] = float(time.max())
    bundle.info["abstention"] = abstention
    threshold = None
    if len(samples) > 1 or measure in ("distance", "conformal"):
        values = bundle.uncertainty(x, samples, inputs)[MEASURE_COLUMNS[measure]]
        threshold = float(np.quantile(values, abstain_quantile))
    column = MEASURE_COLUMNS[measure]
    abstention.update(quantile=abstain_quantile, threshold=threshold,
                      rule=f"abstain if {column} > {threshold:.4g}, the {abstain_quantile:g} quantile of the "
                           f"training cohort's {column}{why}"
                      if threshold is not None else "deterministic model: never abstains")
    info = {
        "bundle_format": BUNDLE_FORMAT,
        "hyperparameters": params,
        "n_train": int(len(table)),
        "n_events": int(event.sum()),
        "train_table_sha256": table_sha256,
        "train_subjects": sorted(table["subject_id"].astype(str)),
        "feature_columns": feature_columns(table),
        "preprocessing": options,
        "selected_features": names,
        "horizons_days": [float(h) for h in (horizons if horizons else default_horizons(time, event))],
        "risk_group_rule": "high if risk > median training risk",
        "abstention": abstention,
        "score_seed": SCORE_SEED,
        "versions": library_versions(),
        **({"lesion_patches": bundle.info["lesion_patches"]} if "lesion_patches" in bundle.info else {}),
    }
    summary = None
    if model == "coxph":
        summary = estimator.summary_
    elif model == "coxnet":
        summary = pd.DataFrame({"feature": names, "coef": estimator.coef_})
    bundle.info = info
    return bundle, summary


def save_bundle(bundle: ModelBundle, summary: pd.DataFrame | None, out_dir: str | Path) -> None:
    """Write the bundle to ``out_dir`` atomically (a temporary folder renamed into place)."""
    out_dir = Path(out_dir)
    with atomic_folder(out_dir) as tmp:
        state = {
            "model": bundle.model,
            "preprocessor": bundle.preprocessor.to_dict(),
            "estimator": bundle.estimator.state(tmp),
            "risk_cutoff": bundle.risk_cutoff,
            "info": bundle.info,
        }
        (tmp / "model.json").write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
        if summary is not None:
            summary.to_csv(tmp / "coefficients.tsv", sep="\t", index=False, float_format="%.6g")
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / MANIFEST).write_text(json.dumps({"bundle_format": BUNDLE_FORMAT, "files": files}, indent=2,
                                               sort_keys=True) + "\n")
    bundle.sha256 = bundle_sha256(out_dir)


def load_bundle(model_dir: str | Path, expect_sha256: str | None = None) -> ModelBundle:
    """Read a frozen model directory written by :func:`save_bundle`.

    ``expect_sha256``: the bundle's published :func:`bundle_sha256`; a bundle with another one
    is refused.
    """
    folder = Path(model_dir)
    path = folder / "model.json"
    if not path.is_file():
        raise ModelBundleError(f"{path}: not a model directory (model.json missing)")
    check_manifest(folder)
    digest = bundle_sha256(folder)
    if expect_sha256 is not None and digest != expect_sha256.strip().lower():
        raise ModelBundleError(f"{folder / MANIFEST}: bundle SHA-256 {digest} is not the expected "
                               f"{expect_sha256.strip()}; this is not the published model")
    try:
        state = json.loads(path.read_text())
    except ValueError as exc:
        raise ModelBundleError(f"{path}: not valid JSON ({exc})") from None
    found = state.get("info", {}).get("bundle_format") if isinstance(state, dict) else None
    if found != BUNDLE_FORMAT:
        raise ModelBundleError(f"{path}: bundle format {found}, this version reads {BUNDLE_FORMAT}; refit the model")
    if state["model"] not in MODELS:
        raise ModelBundleError(f"{path}: unknown model {state['model']!r}")
    try:
        info = state["info"]
        estimator = make_model(state["model"], info["hyperparameters"]).restore(state["estimator"], folder)
        pre = FeaturePipeline.from_dict(state["preprocessor"])
        return ModelBundle(state["model"], pre, estimator, float(state["risk_cutoff"]), info, digest)
    except (KeyError, TypeError) as exc:
        raise ModelBundleError(f"{path}: incomplete model description (no {exc}); refit the model") from None


def score_table(bundle: ModelBundle, table: pd.DataFrame, path: str | Path = "feature table",
                bags: "LesionBags | None" = None) -> pd.DataFrame:
    """Scores of every subject (layout in the module docstring), plus ``time``/``event`` if present.

    ``bags``: the cohort's lesion patches, for models that read them (``cnn_survival``).
    """
    check_scoring_table(bundle, table, path)
    x = bundle.design(table, str(path))
    inputs = bundle.inputs(table, bags, str(path))
    seed = bundle.info["score_seed"]
    samples = bundle.estimator.risk_samples(x, seed, **inputs)
    risk = samples.mean(axis=0)
    stochastic = len(samples) > 1
    low, high = np.percentile(samples, [2.5, 97.5], axis=0) if stochastic else (risk, risk)
    uncertainty = bundle.uncertainty(x, samples, inputs)
    abstention = bundle.info["abstention"]
    threshold = abstention["threshold"]
    column = MEASURE_COLUMNS[abstention["measure"]]
    scores = pd.DataFrame({
        "subject_id": table["subject_id"].astype(str).to_numpy(),
        "risk": risk, "risk_sd": uncertainty["risk_sd"], "risk_low": low, "risk_high": high,
        "risk_group": np.where(risk > bundle.risk_cutoff, "high", "low"),
        "risk_flip": uncertainty["risk_flip"],
        **{c: uncertainty[c] for c in ("u_distance", "lower_bound", "u_conformal") if c in uncertainty},
        "abstain": uncertainty[column] > threshold if threshold is not None else np.zeros(len(x), bool),
    })
    horizons = np.asarray(bundle.info["horizons_days"], dtype=np.float64)
    surv = bundle.estimator.survival_samples(x, horizons, seed, **inputs)  # (T, n, horizons)
    mean = surv.mean(axis=0)
    lo, hi = np.percentile(surv, [2.5, 97.5], axis=0) if stochastic else (mean, mean)
    for j, horizon in enumerate(horizons):
        name = f"surv_{horizon:g}"
        scores[name], scores[f"{name}_low"], scores[f"{name}_high"] = mean[:, j], lo[:, j], hi[:, j]
    for col in ("time", "event"):
        if col in table.columns:
            scores[col] = table[col].to_numpy()
    return scores


def write_scores(scores: pd.DataFrame, path: str | Path, bundle: ModelBundle) -> None:
    """Write scores to parquet with the model's provenance in the metadata."""
    write_parquet(scores, path, {"model": bundle.model, "risk_cutoff": bundle.risk_cutoff,
                                 "hyperparameters": bundle.info["hyperparameters"],
                                 "abstention": bundle.info["abstention"],
                                 "train_table_sha256": bundle.info.get("train_table_sha256", ""),
                                 "bundle_sha256": bundle.sha256})
