"""Validation: ``evaluate``, ``compare``, ``uncertainty-plot``, ``collect``, ``headline``."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from biomarkers.cli.app import app, user_errors
from biomarkers.cli.args import key_values as _key_values


@app.command()
@user_errors
def evaluate(scores: Path = typer.Option(..., help="scores.parquet with time and event."),
             out: Path = typer.Option(..., help="metrics.json to write."),
             truth: Optional[Path] = typer.Option(None, help="truth.tsv of a simulated cohort (adds the oracle C-index)."),
             bootstrap: int = typer.Option(1000, help="Bootstrap resamples."),
             seed: int = typer.Option(0, help="Bootstrap seed."),
             table: Optional[Path] = typer.Option(None, help="Also write the headline metrics as TSV."),
             km_plot: Optional[Path] = typer.Option(None, help="Kaplan-Meier plot by risk group (PNG)."),
             cindex_plot: Optional[Path] = typer.Option(None, help="C-index interval plot (PNG)."),
             calibration_plot: Optional[Path] = typer.Option(None, help="Calibration at the horizon (PNG; needs surv_<T> columns)."),
             uncertainty_plot: Optional[Path] = typer.Option(None, help="MC-dropout uncertainty checks (PNG; needs risk_sd > 0)."),
             horizon: Optional[float] = typer.Option(None, help="Calibration horizon in days (default: the middle scored horizon)."),
             label: str = typer.Option("", help="Cohort label for plot titles."),
             model_name: str = typer.Option("", help="Model name for the table's model column and plot titles.")) -> None:
    """Validation statistics with bootstrap confidence intervals."""
    from biomarkers.validation.evaluate import EvaluationOutputs, evaluate_to_files

    outputs = EvaluationOutputs(table, km_plot, cindex_plot, calibration_plot, uncertainty_plot, label, model_name)
    evaluate_to_files(scores, out, truth, outputs, n_boot=bootstrap, seed=seed, horizon_days=horizon)


@app.command()
@user_errors
def compare(scores: List[str] = typer.Argument(..., help="NAME=SCORES.parquet of every model, same cohort."),
            out: Path = typer.Option(..., help="TSV to write: one row per pair of models and C-index."),
            bootstrap: int = typer.Option(1000, help="Bootstrap resamples (the same for every model)."),
            seed: int = typer.Option(0, help="Bootstrap seed.")) -> None:
    """Paired bootstrap comparison of models' C-indices on the same cohort."""
    from biomarkers.validation.compare import compare_files

    result = compare_files(_key_values(scores, "NAME=SCORES"), out, bootstrap, seed)
    typer.echo(result.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


@app.command("uncertainty-plot")
@user_errors
def uncertainty_plot(scores: Path = typer.Option(..., help="scores.parquet of an MC-dropout model, with outcomes."),
                     metrics: Path = typer.Option(..., help="metrics.json written by `evaluate` for these scores."),
                     out: Path = typer.Option(..., help="PNG to write."),
                     label: str = typer.Option("", help="Title label (model and cohort).")) -> None:
    """Does the MC-dropout spread mean something: discordance by risk_sd and C-index after abstention."""
    from biomarkers.validation.evaluate import uncertainty_plot_files

    uncertainty_plot_files(scores, metrics, out, label)


@app.command()
@user_errors
def collect(tables: List[Path] = typer.Argument(..., help="TSV tables with the same columns."),
            out: Path = typer.Option(..., help="Combined TSV to write.")) -> None:
    """Stack TSV tables (e.g. every cohort's metrics) into one."""
    from biomarkers.io.atomic import concat_tsv

    concat_tsv(tables, out)


@app.command()
@user_errors
def headline(metrics: Path = typer.Argument(..., help="Stacked metrics TSV (`collect` of every evaluate --table)."),
             out: Path = typer.Option(..., help="TSV to write: one row per model and cohort."),
             skip_cohort: List[str] = typer.Option([], help="Cohort to leave out (e.g. the training cohort); repeatable."),
             plot: Optional[Path] = typer.Option(None, help="Harrell's C (95 % interval) of every model side by side (PNG)."),
             plot_skip_cohort: List[str] = typer.Option([], help="Cohort the plot leaves out (e.g. the training "
                                                                 "cohort, whose C is apparent); repeatable.")) -> None:
    """Headline metrics per model and cohort, as 'estimate (95 % interval)' text."""
    from biomarkers.validation.evaluate import headline_files

    result = headline_files(metrics, out, skip_cohort, plot, plot_skip_cohort)
    typer.echo(result.to_string(index=False))
