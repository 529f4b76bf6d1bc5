"""Survival by frozen imaging subtype (:mod:`biomarkers.survival.subtypes`): Kaplan-Meier curves and
the log-rank test across subtypes in every cohort, the training cohort's being in-sample."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from biomarkers.errors import InputError
from biomarkers.survival.subtypes import fit_subtypes
from biomarkers.io.atomic import write_json, write_tsv


def subtype_survival(table: pd.DataFrame, subtype: np.ndarray) -> dict:
    """Size, events, median survival (Kaplan-Meier) of each subtype and the multivariate log-rank test."""
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import multivariate_logrank_test

    rows = []
    for s in sorted(set(subtype)):
        m = subtype == s
        km = KaplanMeierFitter().fit(table["time"][m], table["event"][m])
        median = km.median_survival_time_
        rows.append({"subtype": int(s), "n": int(m.sum()), "events": int(table["event"][m].sum()),
                     "median_days": None if not np.isfinite(median) else float(median)})
    out = {"subtypes": rows, "logrank_p": None, "logrank_statistic": None}
    if len(rows) > 1:
        test = multivariate_logrank_test(table["time"], subtype, table["event"])
        out["logrank_p"], out["logrank_statistic"] = float(test.p_value), float(test.test_statistic)
    return out


def subtypes_to_files(train_path: str | Path, cohort_paths: Mapping[str, str | Path], out_dir: str | Path,
                      features: Sequence[str], ks: Sequence[int], harmonize: bool = True, seed: int = 0,
                      plot_dir: str | Path | None = None, training_cohort: str = "train") -> dict:
    """Fit on the training table, assign every cohort, write ``subtypes.json`` (the frozen model and each
    cohort's survival by subtype), ``assignments.tsv`` and one Kaplan-Meier figure per cohort."""
    from biomarkers.survival.bundle import read_feature_table

    train = read_feature_table(train_path, training_cohort=training_cohort)
    tables = {training_cohort: train}
    for name, path in cohort_paths.items():
        if not Path(path).is_file():
            raise InputError("feature table does not exist", path=path)
        tables[name] = read_feature_table(path)
    model = fit_subtypes(train, features, ks, harmonize, seed)
    result = {"model": model.to_dict(), "features": list(model.pipeline.features), "cohorts": {}}
    rows = []
    for name, table in tables.items():
        subtype = model.assign(table)
        result["cohorts"][name] = subtype_survival(table, subtype)
        rows.append(pd.DataFrame({"cohort": name, "subject_id": table["subject_id"].astype(str), "subtype": subtype}))
        if plot_dir is not None:
            from biomarkers.report.plots import subtype_km_plot

            subtype_km_plot(table, subtype, result["cohorts"][name], Path(plot_dir) / f"subtypes_{name}.png",
                            f"Imaging subtypes, {name} ({'fitted here' if name == training_cohort else 'frozen'})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_tsv(pd.concat(rows, ignore_index=True), out_dir / "assignments.tsv")
    write_json(result, out_dir / "subtypes.json")
    return result
