"""``biomarkers evaluate``: statistics to JSON/TSV and the report figures."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from biomarkers.errors import InputError
from biomarkers.io.atomic import read_parquet_metadata, write_json, write_tsv
from biomarkers.io.subjects import check_outcome
from biomarkers.validation.metrics import evaluate_scores


_C_LABELS = {"harrell_c": "Harrell's C", "uno_c": "Uno's C", "oracle_harrell_c": "oracle Harrell's C (true hazard)"}


def _row(label: str, est: dict | None) -> dict:
    est = est or {}
    ci = est.get("ci95") or [None, None]
    return {"metric": label, "estimate": est.get("estimate"), "ci_low": ci[0], "ci_high": ci[1]}


def metrics_rows(metrics: dict) -> pd.DataFrame:
    """One row per estimate: ``metric``, ``estimate``, ``ci_low``, ``ci_high``.

    The C-indices first (as before), then, where present, the time-dependent AUC and Brier
    score at each horizon ("time-dependent AUC at 730 d"), their summaries ("integrated
    Brier score"), calibration at its horizon ("ICI at 730 d", "E50 ...", "E90 ...") and the
    uncertainty checks ("Harrell's C, risk_sd tertile 1 (lowest)", "Spearman rho risk_sd vs
    discordance", "Harrell's C, retained (n abstained = 12)", ...).
    """
    rows = [_row(label, metrics[k]) for k, label in _C_LABELS.items() if k in metrics]
    for entry in metrics.get("time_dependent_auc", []):
        rows.append(_row(f"time-dependent AUC at {entry['horizon_days']:g} d", entry))
    if metrics.get("mean_time_dependent_auc", {}).get("estimate") is not None:
        rows.append(_row("mean time-dependent AUC", metrics["mean_time_dependent_auc"]))
    for entry in metrics.get("brier_score", []):
        rows.append(_row(f"Brier score at {entry['horizon_days']:g} d", entry))
    if metrics.get("integrated_brier_score", {}).get("estimate") is not None:
        rows.append(_row("integrated Brier score", metrics["integrated_brier_score"]))
    cal = metrics.get("calibration")
    if cal and "undefined" not in cal:
        for key, name in (("ici", "ICI"), ("e50", "E50"), ("e90", "E90")):
            rows.append(_row(f"{name} at {cal['horizon_days']:g} d", cal[key]))
    unc = metrics.get("uncertainty")
    if unc:
        names = {1: "1 (lowest)", 2: "2", 3: "3 (highest)"}
        for t in unc["risk_sd_tertiles"]:
            rows.append(_row(f"Harrell's C, risk_sd tertile {names[t['tertile']]}", t["harrell_c"]))
        rows.append(_row("Spearman rho risk_sd vs discordance", unc["discordance_spearman"]))
        ab = unc.get("abstention")
        if ab:
            rows.append(_row(f"Harrell's C, retained (n abstained = {ab['n_abstained']})", ab["retained"]))
            rows.append(_row("Harrell's C, abstained", ab["abstained"]))
            rows.append(_row("Harrell's C, retained minus all", ab["retained_minus_all"]))
            if "nearest_cutoff" in ab:
                rows.append(_row("Harrell's C, retained by nearness to the cut-off (control)", ab["nearest_cutoff"]))
                rows.append(_row("Harrell's C, retained minus control", ab["retained_minus_nearest_cutoff"]))
    out = pd.DataFrame(rows, columns=["metric", "estimate", "ci_low", "ci_high"])
    return out.astype({"estimate": float, "ci_low": float, "ci_high": float})  # None -> NaN


#: Columns of :func:`headline_table`: the metric rows shown, by their label's start.
HEADLINE = (("Harrell's C", "Harrell's C"), ("Uno's C", "Uno's C"),
            ("oracle Harrell's C (true hazard)", "oracle C"), ("mean time-dependent AUC", "mean AUC(t)"),
            ("integrated Brier score", "IBS"), ("ICI at", "ICI"), ("hazard ratio high vs low", "HR high/low"),
            ("log-rank p (high vs low)", "log-rank p"))


def headline_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per model and cohort with the headline metrics as ``estimate (low-high)`` text.

    ``metrics`` is the stacked TSV of :func:`evaluate_to_files` (``model``, ``cohort``,
    ``metric``, ``estimate``, ``ci_low``, ``ci_high``). The training cohort's rows, if given,
    are apparent (optimistic) performance.
    """
    def text(row: pd.Series) -> str:
        if pd.isna(row["estimate"]):
            return ""
        if row["metric"].startswith("log-rank"):
            return f"{row['estimate']:.2g}"
        if row["metric"].startswith("hazard ratio"):  # unbounded: significant digits
            return f"{row['estimate']:.3g} ({row['ci_low']:.3g}-{row['ci_high']:.3g})"
        if pd.isna(row["ci_low"]):
            return f"{row['estimate']:.3f}"
        return f"{row['estimate']:.3f} ({row['ci_low']:.3f}-{row['ci_high']:.3f})"

    keys = [c for c in ("model", "cohort") if c in metrics.columns]
    out = []
    for key, part in metrics.groupby(keys, sort=False):
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        for start, name in HEADLINE:
            hit = part[part["metric"].str.startswith(start)]
            if start == "Harrell's C":
                hit = hit[hit["metric"] == start]
            if len(hit):
                row[name] = text(hit.iloc[0])
        out.append(row)
    return pd.DataFrame(out).fillna("")


#: Fewest events a cohort needs to be evaluated: below it a C-index or a hazard ratio says nothing
#: (2 subjects give C = 1.0 with the interval 1.0-1.0).
MIN_EVENTS = 3


def check_scored_outcomes(scores: pd.DataFrame, path: str | Path) -> None:
    """Refuse scores that cannot be evaluated: missing columns, outcomes outside event in {0, 1}
    and finite time > 0, a subject twice, a non-finite risk, fewer than :data:`MIN_EVENTS` events."""
    lacking = [c for c in ("subject_id", "risk", "time", "event") if c not in scores.columns]
    if lacking:
        raise InputError(f"scores lack column(s) {', '.join(lacking)} (score a table with outcomes)", path=path)
    sid = scores["subject_id"].astype(str)
    twice = sid[sid.duplicated()]
    if len(twice):
        raise InputError("subject scored more than once", twice.iloc[0], path)
    check_outcome(scores, path, InputError)
    event = pd.to_numeric(scores["event"])
    risk = pd.to_numeric(scores["risk"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(risk)
    if bad.any():
        raise InputError(f"risk is {risk[bad][0]}", sid[bad].iloc[0], path)
    if int(event.sum()) < MIN_EVENTS:
        raise InputError(f"{int(event.sum())} event(s) in {len(scores)} subjects; at least {MIN_EVENTS} are needed "
                         "for a C-index or a hazard ratio", path=path)


@dataclass(frozen=True)
class EvaluationOutputs:
    """What :func:`evaluate_to_files` writes besides the metrics JSON; None is not written.

    ``table``: the estimates as TSV (:func:`metrics_rows` plus the log-rank and hazard-ratio rows);
    ``km_plot``: Kaplan-Meier curves by risk group; ``cindex_plot``: the C-indices with their
    intervals; ``calibration_plot``: calibration at the horizon (drawn when the scores have
    ``surv_<T>`` columns); ``uncertainty_plot``: the MC-dropout checks (when ``risk_sd > 0``
    somewhere). ``label`` (the cohort) and ``model_name`` title them; ``model_name`` also adds a
    ``model`` column to the TSV and a ``model`` key to the metrics.
    """

    table: str | Path | None = None
    km_plot: str | Path | None = None
    cindex_plot: str | Path | None = None
    calibration_plot: str | Path | None = None
    uncertainty_plot: str | Path | None = None
    label: str = ""
    model_name: str = ""


def evaluate_to_files(scores_path: str | Path, out: str | Path, truth_path: str | Path | None = None,
                      outputs: EvaluationOutputs = EvaluationOutputs(), *, n_boot: int = 1000, seed: int = 0,
                      horizon_days: float | None = None, calibration_groups: int = 10) -> dict:
    """Evaluate a scores file and write the metrics and the ``outputs``.

    ``n_boot``, ``seed``, ``horizon_days`` and ``calibration_groups`` are passed to
    :func:`~biomarkers.validation.metrics.evaluate_scores`; ``truth_path`` is the simulator's
    ``truth.tsv`` (the oracle C-index).
    """
    label, model_name, table = outputs.label, outputs.model_name, outputs.table
    scores_path = Path(scores_path)
    if not scores_path.is_file():
        raise InputError("scores file does not exist", path=scores_path)
    scores = pd.read_parquet(scores_path)
    check_scored_outcomes(scores, scores_path)
    cutoff = read_parquet_metadata(scores_path).get("risk_cutoff")
    truth = None
    if truth_path is not None:
        if not Path(truth_path).is_file():
            raise InputError("truth table does not exist", path=truth_path)
        truth = pd.read_csv(truth_path, sep="\t", dtype={"subject_id": str})
        lacking = [c for c in ("subject_id", "true_lp") if c not in truth.columns]
        if lacking:
            raise InputError(f"truth table lacks column(s) {', '.join(lacking)} (expected the simulator's "
                             "truth.tsv)", path=truth_path)
    metrics = evaluate_scores(scores, truth, n_boot, seed, horizon_days=horizon_days,
                              calibration_groups=calibration_groups, risk_cutoff=cutoff)
    metrics["cohort"] = label
    if model_name:
        metrics["model"] = model_name
    rows = metrics_rows(metrics)
    rg = metrics["risk_groups"]
    if table is not None:
        extra = pd.DataFrame([
            {"metric": "log-rank p (high vs low)", "estimate": rg.get("logrank_p"), "ci_low": None, "ci_high": None},
            {"metric": "hazard ratio high vs low", "estimate": rg.get("hazard_ratio_high_vs_low", {}).get("estimate"),
             "ci_low": rg.get("hazard_ratio_high_vs_low", {}).get("ci95", [None])[0],
             "ci_high": rg.get("hazard_ratio_high_vs_low", {}).get("ci95", [None, None])[1]},
        ])
        full = pd.concat([rows, extra], ignore_index=True)
        full.insert(0, "cohort", label)
        if model_name:
            full.insert(0, "model", model_name)
        write_tsv(full, table, float_format="%.4g")
    from biomarkers.report import plots

    title = ", ".join(filter(None, [model_name, label]))

    if outputs.km_plot is not None:
        plots.km_plot(scores, metrics, outputs.km_plot, f"Risk groups, {title}".rstrip(", "))
    if outputs.cindex_plot is not None:
        crows = rows[rows["metric"].isin(list(_C_LABELS.values()))]
        plots.cindex_plot(crows.rename(columns={"metric": "label"}), outputs.cindex_plot,
                          f"Discrimination, {title} (n={metrics['n_subjects']}, {metrics['n_events']} events)")
    _validation_figures(scores, metrics, outputs.calibration_plot, outputs.uncertainty_plot, title)
    write_json(metrics, out)
    return metrics


def _validation_figures(scores: pd.DataFrame, metrics: dict, calibration_plot: str | Path | None,
                        uncertainty_plot: str | Path | None, label: str) -> None:
    from biomarkers.report import validation_plots

    cal = metrics.get("calibration")
    if calibration_plot is not None and cal and "undefined" in cal:
        validation_plots.message_plot(calibration_plot, f"Calibration at {cal['horizon_days']:g} d, {label}".rstrip(", "),
                                      cal["undefined"])
    elif calibration_plot is not None and cal:
        validation_plots.calibration_plot(pd.DataFrame(cal["table"]), {**cal["curve"], "ici": cal["ici"]["estimate"]},
                                          calibration_plot,
                                          f"Calibration at {cal['horizon_days']:g} d, {label}".rstrip(", "))
    if uncertainty_plot is not None and "uncertainty" in metrics:
        validation_plots.uncertainty_plot(scores, uncertainty_plot, f"Uncertainty, {label}".rstrip(", "),
                                          checks=metrics["uncertainty"])


def headline_files(metrics: str | Path, out: str | Path, skip_cohorts: Sequence[str] = (),
                   plot: str | Path | None = None, plot_skip_cohorts: Sequence[str] = ()) -> pd.DataFrame:
    """:func:`headline_table` of a stacked metrics TSV (``collect`` of every ``evaluate --table``),
    without ``skip_cohorts``; writes the TSV and, optionally, every model's Harrell's C side by side."""
    metrics = Path(metrics)
    if not metrics.is_file():
        raise InputError("metrics table does not exist", path=metrics)
    table = pd.read_csv(metrics, sep="\t")
    table = table[~table["cohort"].astype(str).isin(skip_cohorts)] if "cohort" in table else table
    result = headline_table(table)
    write_tsv(result, out)
    if plot is not None:
        from biomarkers.report.plots import model_cindex_plot

        model_cindex_plot(table[~table["cohort"].astype(str).isin(plot_skip_cohorts)], plot)
    return result


def uncertainty_plot_files(scores: str | Path, metrics: str | Path, out: str | Path, label: str = "") -> None:
    """The MC-dropout uncertainty figure of a scores file, from the checks its ``evaluate`` metrics hold."""
    import json

    from biomarkers.report.validation_plots import uncertainty_plot

    for path in (scores, metrics):
        if not Path(path).is_file():
            raise InputError("file does not exist", path=path)
    checks = json.loads(Path(metrics).read_text()).get("uncertainty")
    if checks is None:
        raise InputError("no uncertainty checks in the metrics (a deterministic model has risk_sd = 0)", path=metrics)
    uncertainty_plot(pd.read_parquet(scores), out, f"Uncertainty, {label}".rstrip(", "), checks=checks)
