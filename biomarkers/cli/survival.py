"""Survival models: ``fit``, ``cv``, ``models``, ``score``."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from biomarkers.cli import args as cli_args
from biomarkers.cli.app import TRAINING_COHORT as _TRAINING_COHORT
from biomarkers.cli.app import app, user_errors
from biomarkers.cli.args import key_values as _key_values
from biomarkers.cli.args import pipeline_options
from biomarkers.cli.args import split_list as _split
from biomarkers.errors import FeatureTableError
from biomarkers.survival.abstention import ABSTAIN_QUANTILE

_HARMONIZE, _NOT_HARMONIZED = cli_args.HARMONIZE, cli_args.NOT_HARMONIZED
_CORR_THRESHOLD, _FDR_Q, _MAX_FEATURES = cli_args.CORR_THRESHOLD, cli_args.FDR_Q, cli_args.MAX_FEATURES
_THREADS = cli_args.THREADS
_torch_threads = cli_args.torch_threads


@app.command()
@user_errors
def fit(features: Path = typer.Option(..., help="Training feature table."),
        model: Optional[str] = typer.Option(None, help="coxph (default) | coxnet | rsf | deepsurv | logistic_hazard | "
                                                       "deephit | cnn_survival."),
        out: Path = typer.Option(..., help="Model directory to write."),
        include: str = typer.Option("", help="Comma-separated feature columns (default: all numeric)."),
        log_features: str = typer.Option("", help="Comma-separated features to log1p-transform."),
        penalizer: Optional[float] = typer.Option(None, help="coxph penalty strength (default 0.1)."),
        l1_ratio: Optional[float] = typer.Option(None, help="Elastic-net mixing, 0 = ridge, 1 = lasso (coxph, coxnet)."),
        set_: List[str] = typer.Option([], "--set", help="Hyperparameter KEY=VALUE (see `biomarkers models`); "
                                                         "repeatable."),
        spec: Optional[str] = cli_args.SPEC,
        horizons: str = typer.Option("", help="Comma-separated times (days) at which survival is scored "
                                               "(default: quartiles of the training event times)."),
        abstain_quantile: float = typer.Option(ABSTAIN_QUANTILE, help="Abstain where the uncertainty exceeds this quantile of "
                                                         "its training values (MC-dropout models)."),
        abstain_on: str = typer.Option("risk_flip", help="Uncertainty of the abstention: risk_flip (share of "
                                                         "MC samples in the other risk group), risk_sd or distance."),
        abstention: Optional[Path] = typer.Option(None, help="choice.json of `uncertainty-choice` for this model: "
                                                             "abstain on its chosen method (replaces --abstain-on)."),
        harmonize: bool = _HARMONIZE, not_harmonized: str = _NOT_HARMONIZED,
        corr_threshold: Optional[float] = _CORR_THRESHOLD, fdr_q: Optional[float] = _FDR_Q,
        max_features: Optional[int] = _MAX_FEATURES,
        plot: Optional[Path] = typer.Option(None, help="Model figure (PNG): coefficients, importance or loss curves."),
        patches: Optional[Path] = typer.Option(None, help="cnn_survival: the training cohort's lesion patches "
                                                          "(`biomarkers lesion-patches`)."),
        training_cohort: str = _TRAINING_COHORT,
        threads: int = _THREADS) -> None:
    """Fit a survival model on the training cohort and freeze it."""
    from biomarkers.io.provenance import sha256_file
    from biomarkers.io.atomic import read_json
    from biomarkers.survival.bundle import Abstention, fit_bundle, read_feature_table, save_bundle

    _torch_threads(threads)
    spec_ = cli_args.model_spec(spec, model, set_, include, log_features,
                                {"penalizer": penalizer, "l1_ratio": l1_ratio})
    table = read_feature_table(features, training_cohort=training_cohort)
    spec_ = spec_.with_pipeline(pipeline_options(table, spec_.features, harmonize, not_harmonized, corr_threshold,
                                                 fdr_q, max_features))
    bags = _read_bags(patches)
    choice = read_json(abstention, "uncertainty choice") if abstention is not None else None
    try:
        bundle, summary = fit_bundle(table, spec_, table_sha256=sha256_file(features),
                                     horizons=[float(h) for h in _split(horizons)] or None,
                                     abstention=Abstention(abstain_quantile, abstain_on, choice), bags=bags)
    except FeatureTableError as exc:
        if exc.path is not None:
            raise
        raise FeatureTableError(str(exc), path=features) from None
    save_bundle(bundle, summary, out)
    if plot is not None:
        from biomarkers.report.model_plots import model_plot

        model_plot(bundle, summary, table, plot, f"{spec_.kind} (n={len(table)}, {bundle.info['n_events']} events)")
    typer.echo(f"fitted {spec_.kind} on {len(table)} subjects ({bundle.info['n_events']} events) -> {out} "
               f"(bundle SHA-256 {bundle.sha256})")


def _read_bags(path: Optional[Path]):
    """The lesion patch archive of --patches, or None."""
    if path is None:
        return None
    from biomarkers.deep.lesion_bags import read_bags

    return read_bags(path)


@app.command()
@user_errors
def cv(features: Path = typer.Option(..., help="Training feature table."),
       model: List[str] = typer.Option([], help="Candidate model on --include and --log-features; repeatable."),
       spec: List[str] = typer.Option([], help="NAME=JSON: a candidate with its own model, hyperparameters and "
                                               "features (JSON as for `fit --spec`); repeatable."),
       out: Path = typer.Option(..., help="Summary TSV to write: one row per model, best first."),
       include: str = typer.Option("", help="Comma-separated feature columns (default: all numeric); also the "
                                            "features ComBat harmonises for every candidate."),
       log_features: str = typer.Option("", help="Comma-separated features to log1p-transform."),
       set_: List[str] = typer.Option([], "--set", help="MODEL.KEY=VALUE hyperparameter of a --model candidate; "
                                                         "repeatable."),
       folds: int = typer.Option(5, help="Outer folds."),
       repeats: int = typer.Option(1, help="Repetitions of the outer split."),
       seed: int = typer.Option(0, help="Seed of the outer split."),
       harmonize: bool = _HARMONIZE, not_harmonized: str = _NOT_HARMONIZED,
       corr_threshold: Optional[float] = _CORR_THRESHOLD, fdr_q: Optional[float] = _FDR_Q,
       max_features: Optional[int] = _MAX_FEATURES,
       folds_out: Optional[Path] = typer.Option(None, help="Also write every fold's held-out C-indices (TSV)."),
       patches: Optional[Path] = typer.Option(None, help="The training cohort's lesion patches, for cnn_survival "
                                                         "candidates (`biomarkers lesion-patches`)."),
       training_cohort: str = _TRAINING_COHORT,
       threads: int = _THREADS) -> None:
    """Nested cross-validation of candidate models on the training cohort (for model choice)."""
    _torch_threads(threads)
    from biomarkers.io.atomic import write_tsv
    from biomarkers.survival.bundle import read_feature_table
    from biomarkers.survival.crossval import cross_validate, summarise
    from biomarkers.survival.spec import ModelSpec

    params: dict[str, dict[str, str]] = {name: {} for name in model}
    for key, value in _key_values(set_).items():
        name, dot, hyper = key.partition(".")
        if not dot or name not in params:
            raise ValueError(f"--set {key}=...: expected MODEL.KEY with MODEL one of {', '.join(params) or '--model'}")
        params[name][hyper] = value
    specs = {name: ModelSpec(name, tuple(_split(include)) or None, tuple(_split(log_features)), given)
             for name, given in params.items()}
    for name, text in _key_values(spec, "--spec").items():
        if name in specs:
            raise ValueError(f"candidate {name} given twice (--model, --spec)")
        specs[name] = cli_args.parse_spec(text, f"--spec {name}")
    if not specs:
        raise ValueError("no candidate: give --model or --spec")
    table = read_feature_table(features, training_cohort=training_cohort)
    pipeline = pipeline_options(table, _split(include) or None, harmonize, not_harmonized, corr_threshold, fdr_q,
                                max_features)
    per_fold = cross_validate(table, {name: s.with_pipeline(pipeline) for name, s in specs.items()}, folds, repeats,
                              seed, progress=True, bags=_read_bags(patches))
    summary = summarise(per_fold)
    if folds_out is not None:
        write_tsv(per_fold, folds_out, float_format="%.4g")
    write_tsv(summary, out, float_format="%.4g")
    typer.echo(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


@app.command()
def models() -> None:
    """The models `fit --model` offers and their hyperparameters with defaults."""
    from biomarkers.survival.models import DEFAULTS

    for name, params in DEFAULTS.items():
        typer.echo(f"{name}: " + ", ".join(f"{k}={v}" for k, v in params.items()))


@app.command()
@user_errors
def score(model: Path = typer.Option(..., help="Frozen model directory."),
          features: Path = typer.Option(..., help="Feature table of any cohort."),
          out: Path = typer.Option(..., help="scores.parquet to write."),
          patches: Optional[Path] = typer.Option(None, help="cnn_survival: the cohort's lesion patches "
                                                            "(`biomarkers lesion-patches`)."),
          expect_sha256: Optional[str] = typer.Option(None, help="Refuse the model unless its bundle SHA-256 "
                                                                 "(printed by `fit`) is this one."),
          threads: int = _THREADS) -> None:
    """Apply a frozen model to a cohort."""
    _torch_threads(threads)
    from biomarkers.survival.bundle import load_bundle, read_feature_table, score_table, write_scores

    bundle = load_bundle(model, expect_sha256)
    table = read_feature_table(features, need_outcome=False)
    write_scores(score_table(bundle, table, features, _read_bags(patches)), out, bundle)
