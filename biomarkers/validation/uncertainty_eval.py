"""The uncertainty evaluation of one model on one cohort, from the files of ``uncertainty-scores``.

For every method (:data:`biomarkers.survival.uncertainty_methods.METHODS`): the three evaluations
of :func:`~biomarkers.validation.selective.evaluate_uncertainty` (out-of-distribution detection
when a simulator's ``truth.tsv`` names the shifted subjects), and which shifted subjects each
method flags (above the ``abstain_quantile`` of the refitted model's training values). For the
abstention (the method chosen on training cross-validation): Harrell's C of the retained patients
against all. For the conformal lower bound: its coverage of the survival time, estimated from the
censored outcome and, in a simulation, checked on the latent event times.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from biomarkers.errors import InputError
from biomarkers.io.atomic import write_json, write_tsv
from biomarkers.survival.conformal import coverage
from biomarkers.validation.metrics import harrell_c
from biomarkers.validation.selective import bootstrap_interval, evaluate_uncertainty


def _truth(path: str | Path | None) -> pd.DataFrame | None:
    if path is None:
        return None
    if not Path(path).is_file():
        raise InputError("truth table does not exist", path=path)
    truth = pd.read_csv(path, sep="\t", dtype={"subject_id": str})
    if "subject_id" not in truth.columns:
        raise InputError("truth table lacks subject_id (expected the simulator's truth.tsv)", path=path)
    return truth


def evaluate_uncertainty_files(scores_path: str | Path, cohort: str, out: str | Path,
                               truth_path: str | Path | None = None, n_boot: int = 1000, seed: int = 0,
                               table: str | Path | None = None, plot: str | Path | None = None,
                               label: str = "") -> dict:
    """Evaluate the uncertainty scores of ``cohort``; write JSON, an optional TSV and figure."""
    from biomarkers.io.atomic import read_parquet_metadata

    scores_path = Path(scores_path)
    if not scores_path.is_file():
        raise InputError("uncertainty scores do not exist", path=scores_path)
    every = pd.read_parquet(scores_path)
    choice = read_parquet_metadata(scores_path)["uncertainty_choice"]
    scores = every[every["cohort"] == cohort].reset_index(drop=True)
    if scores.empty:
        raise InputError(f"no subject of cohort {cohort!r} in the uncertainty scores", path=scores_path)
    truth = _truth(truth_path)
    latent = None
    ood = None
    if truth is not None:  # a simulator's truth; one written before shifted subjects lacks their columns
        merged = scores[["subject_id"]].merge(truth.assign(_known=True), on="subject_id", how="left")
        if merged["_known"].isna().any():
            sid = merged.loc[merged["_known"].isna(), "subject_id"].iloc[0]
            raise InputError(f"subject {sid}: not in the truth table", path=truth_path)
        if {"shift", "ood"} <= set(merged.columns):
            scores["shift"] = merged["shift"].to_numpy()
            ood = merged["ood"].to_numpy(float)
        if "true_event_days" in merged.columns:
            latent = merged["true_event_days"].to_numpy(float)
    methods = choice["methods"]
    result = evaluate_uncertainty(scores, methods, ood if ood is not None and 0 < np.nansum(ood) < len(ood) else None,
                                  n_boot, seed)
    flagged = {m: scores[c].to_numpy(float) > choice["thresholds"][m] for m, c in methods.items()}
    kinds = scores["shift"] if "shift" in scores.columns else pd.Series("none", index=scores.index)
    result["flagged_by_shift"] = [
        {"shift": kind, "n": int((kinds == kind).sum()),
         **{m: float(f[(kinds == kind).to_numpy()].mean()) for m, f in flagged.items()}}
        for kind in dict.fromkeys(kinds)]
    time, event, risk = (scores[c].to_numpy(float) for c in ("time", "event", "risk"))
    keep = ~scores["abstain"].to_numpy(bool)
    result["abstention"] = {
        "chosen": choice["chosen"], "rule": choice["rule"], "n_abstained": int((~keep).sum()),
        "retained": bootstrap_interval(lambda i: harrell_c(time[i][keep[i]], event[i][keep[i]], risk[i][keep[i]]),
                              len(time), n_boot, seed),
        "retained_minus_all": bootstrap_interval(lambda i: harrell_c(time[i][keep[i]], event[i][keep[i]], risk[i][keep[i]])
                                        - harrell_c(time[i], event[i], risk[i]), len(time), n_boot, seed)}
    cov = coverage(time, event, scores["lower_bound"].to_numpy(float), latent)
    result["conformal"] = {**choice["conformal"], **cov, "target": 1 - choice["conformal"]["alpha"]}
    result.update(cohort=cohort, model=choice["model"], training_area=choice["training_area"])
    if table is not None:
        write_tsv(_rows(result), table, float_format="%.4g")
    if plot is not None:
        from biomarkers.report.uncertainty_plots import uncertainty_evaluation_plot

        uncertainty_evaluation_plot(result, scores, result["conformal"], plot,
                                    f"Uncertainty of {choice['model']}, {label or cohort}", choice["chosen"])
    write_json(result, out)
    return result


def _rows(result: dict) -> pd.DataFrame:
    """One row per method and figure: estimate and interval."""
    rows = []
    for name, entry in result["methods"].items():
        for key in ("area", "gain", "misprediction_auroc", "ood_auroc"):
            if key in entry:
                est = entry[key]
                rows.append({"method": name, "figure": key, "estimate": est["estimate"],
                             "ci_low": est["ci95"][0], "ci_high": est["ci95"][1],
                             "chosen": name == result["abstention"]["chosen"]})
    cov = result["conformal"]
    rows.append({"method": "conformal", "figure": "coverage_ipcw", "estimate": cov["estimate"],
                 "ci_low": cov["known_lower"], "ci_high": cov["known_upper"], "chosen": False})
    if "true" in cov:
        rows.append({"method": "conformal", "figure": "coverage_true", "estimate": cov["true"],
                     "ci_low": None, "ci_high": None, "chosen": False})
    return pd.DataFrame(rows)
