"""``biomarkers evaluate``: statistics to JSON/TSV and the report figures."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from biomarkers.errors import InputError
from biomarkers.io.atomic import write_json, write_tsv
from biomarkers.validation.metrics import evaluate_scores


def metrics_rows(metrics: dict) -> pd.DataFrame:
    """One row per C-index estimate: ``metric``, ``estimate``, ``ci_low``, ``ci_high``."""
    labels = {"harrell_c": "Harrell's C", "uno_c": "Uno's C", "oracle_harrell_c": "oracle Harrell's C (true hazard)"}
    rows = [{"metric": labels[k], "estimate": metrics[k]["estimate"], "ci_low": metrics[k]["ci95"][0],
             "ci_high": metrics[k]["ci95"][1]} for k in labels if k in metrics]
    return pd.DataFrame(rows)


def evaluate_to_files(scores_path: str | Path, out: str | Path, truth_path: str | Path | None = None,
                      n_boot: int = 1000, seed: int = 0, table: str | Path | None = None,
                      km_plot: str | Path | None = None, cindex_plot: str | Path | None = None,
                      label: str = "") -> dict:
    """Evaluate a scores file and write the metrics and optional figures."""
    scores_path = Path(scores_path)
    if not scores_path.is_file():
        raise InputError("scores file does not exist", path=scores_path)
    scores = pd.read_parquet(scores_path)
    truth = None
    if truth_path is not None:
        if not Path(truth_path).is_file():
            raise InputError("truth table does not exist", path=truth_path)
        truth = pd.read_csv(truth_path, sep="\t", dtype={"subject_id": str})
    metrics = evaluate_scores(scores, truth, n_boot, seed)
    metrics["cohort"] = label
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
        write_tsv(full, table, float_format="%.4g")
    from biomarkers.report import plots

    if km_plot is not None:
        plots.km_plot(scores, metrics, km_plot, f"Risk groups, {label}".rstrip(", "))
    if cindex_plot is not None:
        plots.cindex_plot(rows.rename(columns={"metric": "label"}), cindex_plot,
                          f"Discrimination, {label} (n={metrics['n_subjects']}, {metrics['n_events']} events)")
    write_json(metrics, out)
    return metrics
