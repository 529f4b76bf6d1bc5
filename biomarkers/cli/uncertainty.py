"""The verbs of the uncertainty evaluation and subtyping: ``uncertainty-choice`` (each method on
cross-validation of the training cohort, the conformal calibration and the abstention method chosen),
``uncertainty-scores`` (each method's per-patient uncertainty in every cohort) and ``uncertainty-evaluate`` (how well
each flags a cohort's unreliable predictions), ``subtypes`` (imaging subtypes fitted on the training
cohort, frozen, and survival by subtype in every cohort) and ``explain`` (the end-to-end model's
lesion attention, contributions and occlusion maps), ``pretraining`` (that model with a self-supervised
encoder against none). Registered on the ``biomarkers`` app by
:mod:`biomarkers.cli`; argument parsing and one library call each."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from biomarkers.cli import args as cli_args
from biomarkers.cli.args import key_values, split_list
from biomarkers.survival.abstention import UncertaintySettings


_TRAINING_COHORT = typer.Option("train", help="Cohort the training table must be of.")
_U = UncertaintySettings()


def uncertainty_choice(features: Path = typer.Option(..., help="Training feature table."),
                       model: Optional[str] = typer.Option(None, help="Model kind (as for `fit`; default coxph)."),
                       set_: List[str] = typer.Option([], "--set", help="Hyperparameter KEY=VALUE; repeatable."),
                       include: str = typer.Option("", help="Comma-separated feature columns."),
                       log_features: str = typer.Option("", help="Comma-separated features to log1p-transform."),
                       spec: Optional[str] = cli_args.SPEC,
                       harmonize: bool = cli_args.HARMONIZE, not_harmonized: str = cli_args.NOT_HARMONIZED,
                       corr_threshold: Optional[float] = cli_args.CORR_THRESHOLD, fdr_q: Optional[float] = cli_args.FDR_Q,
                       max_features: Optional[int] = cli_args.MAX_FEATURES,
                       members: int = typer.Option(_U.members, help="Ensemble members (the model and members - 1 more)."),
                       folds: int = typer.Option(_U.folds, help="Cross-validation folds of the training cohort."),
                       alpha: float = typer.Option(_U.alpha, help="Conformal miscoverage: the bound covers 1 - alpha."),
                       c0_days: float = typer.Option(_U.c0_days, help="Conformal cut-off (days): the bound never exceeds it."),
                       abstain_quantile: float = typer.Option(_U.abstain_quantile, help="Flag above this quantile of each method's "
                                                                        "training values."),
                       seed: int = typer.Option(_U.seed, help="Seed of the folds and bootstrap members."),
                       training_cohort: str = _TRAINING_COHORT, threads: int = cli_args.THREADS,
                       out: Path = typer.Option(..., help="Out-of-fold training scores (parquet) to write."),
                       choice: Path = typer.Option(..., help="JSON to write: methods, training areas, the chosen "
                                                             "one, the conformal calibration (for `fit --abstention`).")
                       ) -> None:
    """Each uncertainty method on cross-validation of the training cohort; the conformal calibration
    and the abstention method chosen there."""
    from biomarkers.survival.bundle import read_feature_table
    from biomarkers.survival.uncertainty_methods import uncertainty_choice_to_files

    cli_args.torch_threads(threads)
    spec_ = cli_args.model_spec(spec, model, set_, include, log_features)
    table = read_feature_table(features, training_cohort=training_cohort)  # its columns resolve the preprocessing
    spec_ = spec_.with_pipeline(cli_args.pipeline_options(table, spec_.features, harmonize, not_harmonized,
                                                          corr_threshold, fdr_q, max_features))
    settings = UncertaintySettings(members, folds, alpha, c0_days, abstain_quantile, seed)
    picked = uncertainty_choice_to_files(features, spec_, settings, out, choice, training_cohort, progress=True)
    typer.echo(f"{spec_.kind}: abstention by {picked['rule']}")


def uncertainty_scores(features: Path = typer.Option(..., help="Training feature table."),
                       cohort: List[str] = typer.Option(..., help="NAME=FEATURES.parquet of a cohort to score; repeatable."),
                       calibration: Path = typer.Option(..., help="Out-of-fold scores of `uncertainty-choice` (its choice "
                                                                  "names the model and the settings)."),
                       training_cohort: str = _TRAINING_COHORT, threads: int = cli_args.THREADS,
                       out: Path = typer.Option(..., help="Scores (parquet) to write: every cohort, training out-of-fold.")
                       ) -> None:
    """Per-patient uncertainty of a model by MC dropout, an ensemble, input distance and a conformal bound."""
    from biomarkers.survival.uncertainty_methods import uncertainty_scores_to_files

    cli_args.torch_threads(threads)
    picked = uncertainty_scores_to_files(features, key_values(cohort, "--cohort"), calibration, out, training_cohort,
                                         progress=True)
    typer.echo(f"{picked['model']}: {picked['rule']}")


def uncertainty_evaluate(scores: Path = typer.Option(..., help="Scores of `uncertainty-scores`."),
                         cohort: str = typer.Option(..., help="Cohort to evaluate."),
                         out: Path = typer.Option(..., help="JSON to write."),
                         truth: Optional[Path] = typer.Option(None, help="truth.tsv of a simulated cohort (OOD labels, "
                                                                         "latent event times)."),
                         bootstrap: int = typer.Option(1000, help="Bootstrap resamples."),
                         seed: int = typer.Option(0, help="Bootstrap seed."),
                         table: Optional[Path] = typer.Option(None, help="Also write the figures as TSV."),
                         plot: Optional[Path] = typer.Option(None, help="Figure (PNG)."),
                         label: str = typer.Option("", help="Label for the figure title.")) -> None:
    """Selective prediction, misprediction and OOD detection of every uncertainty method; conformal coverage."""
    from biomarkers.validation.uncertainty_eval import evaluate_uncertainty_files

    result = evaluate_uncertainty_files(scores, cohort, out, truth, bootstrap, seed, table, plot, label)
    cov = result["conformal"]
    typer.echo(f"{result['model']}, {cohort}: abstention by {result['abstention']['chosen']}; conformal bound "
               f"coverage {cov['estimate']:.3f} (target {cov['target']:.2f})")


def subtypes(features: Path = typer.Option(..., help="Training feature table (the subtypes are fitted on it)."),
             cohort: List[str] = typer.Option([], help="NAME=FEATURES.parquet of a cohort to assign; repeatable."),
             include: str = typer.Option("largest_deep_*", help="Comma-separated features or wildcards to cluster."),
             k: str = typer.Option("2,3,4", help="Numbers of subtypes tried; the best mean silhouette on training wins."),
             harmonize: bool = typer.Option(True, help="ComBat across centres before clustering."),
             seed: int = typer.Option(0, help="Seed of k-means."),
             training_cohort: str = typer.Option("train", help="Cohort the training table must be of."),
             out: Path = typer.Option(..., help="Folder to write: subtypes.json, assignments.tsv."),
             plot_dir: Optional[Path] = typer.Option(None, help="Folder of the Kaplan-Meier figures (subtypes_<cohort>.png).")) -> None:
    """Imaging subtypes by k-means on the training cohort, frozen and assigned to other cohorts; survival by subtype."""
    from biomarkers.validation.subtypes import subtypes_to_files

    result = subtypes_to_files(features, key_values(cohort, "--cohort"), out, split_list(include),
                               [int(v) for v in split_list(k)], harmonize, seed, plot_dir, training_cohort)
    for name, stats in result["cohorts"].items():
        p = stats["logrank_p"]
        typer.echo(f"{name}: {result['model']['k']} subtypes, sizes {[r['n'] for r in stats['subtypes']]}, "
                   f"log-rank p = {p:.3g}" if p is not None else f"{name}: one subtype")


def explain(model: Path = typer.Option(..., help="Frozen end-to-end model (cnn_survival) directory."),
            features: Path = typer.Option(..., help="The cohort's feature table."),
            patches: Path = typer.Option(..., help="The cohort's lesion patch archive."),
            out: Path = typer.Option(..., help="TSV to write: attention and contribution of every lesion."),
            plot: Optional[Path] = typer.Option(None, help="Figure (PNG) of the highest- and lowest-risk patients."),
            n_each: int = typer.Option(2, help="Highest- and lowest-risk patients in the figure."),
            window: int = typer.Option(4, help="Side (voxels) of the occlusion cubes."),
            label: str = typer.Option("", help="Label for the figure title."),
            threads: int = cli_args.THREADS) -> None:
    """Per lesion: attention weight and leave-one-out contribution; occlusion maps for the report."""
    from biomarkers.validation.explanations import explain_to_files

    cli_args.torch_threads(threads)
    rows = explain_to_files(model, features, patches, out, plot, n_each, window, label)
    typer.echo(f"explained {rows['subject_id'].nunique()} patients, {len(rows)} lesions -> {out}")


def pretraining(features: Path = typer.Option(..., help="Training feature table."),
                patches: Path = typer.Option(..., help="Training cohort's lesion patch archive."),
                validation_features: Path = typer.Option(..., help="Validation feature table."),
                validation_patches: Path = typer.Option(..., help="Validation cohort's lesion patch archive."),
                pretrain_patches: List[Path] = typer.Option(..., help="Patch archive the encoder learns from "
                                                                     "without outcomes; repeatable."),
                include: str = typer.Option("", help="Comma-separated clinical covariates joining the images."),
                set_: List[str] = typer.Option([], "--set", help="cnn_survival hyperparameter KEY=VALUE; repeatable."),
                spec: Optional[str] = typer.Option(None, help="The end-to-end model as JSON (as for `fit --spec`, kind "
                                                              "cnn_survival), instead of --include and --set."),
                seeds: str = typer.Option("0,1,2", help="Comma-separated seeds."),
                pretrain_epochs: int = typer.Option(20, help="Autoencoder epochs."),
                bootstrap: int = typer.Option(1000, help="Bootstrap resamples."),
                seed: int = typer.Option(0, help="Bootstrap seed."),
                training_cohort: str = typer.Option("train", help="Cohort the training table must be of."),
                out: Path = typer.Option(..., help="JSON to write."),
                plot: Optional[Path] = typer.Option(None, help="Figure (PNG)."),
                label: str = typer.Option("", help="Label for the figure title."),
                threads: int = cli_args.THREADS) -> None:
    """End-to-end CNN from scratch vs with a self-supervised pretrained encoder (fine-tuned, frozen)."""
    from biomarkers.survival.pretraining import PretrainingSettings
    from biomarkers.validation.pretraining import pretraining_to_files

    cli_args.torch_threads(threads)
    spec_ = cli_args.model_spec(spec, None if spec else "cnn_survival", set_, include, "")
    settings = PretrainingSettings(tuple(int(s) for s in split_list(seeds)), pretrain_epochs, bootstrap, seed)
    result = pretraining_to_files(features, patches, validation_features, validation_patches, pretrain_patches,
                                  spec_, settings, out, plot, training_cohort, label)
    for name, entry in result["variants"].items():
        typer.echo(f"{name}: validation C {entry['harrell_c_mean']:.3f} (seed SD {entry['harrell_c_seed_sd']:.3f})")
