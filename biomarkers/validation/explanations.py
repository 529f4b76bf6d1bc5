"""Explanations of an end-to-end model's scores on a cohort (:mod:`biomarkers.survival.explain`): every
lesion's attention weight and leave-one-out contribution, and occlusion maps of the highest- and
lowest-risk patients for the report."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from biomarkers.errors import InputError
from biomarkers.io.atomic import write_tsv


def explain_to_files(model_dir: str | Path, features: str | Path, patches: str | Path, out: str | Path,
                     plot: str | Path | None = None, n_each: int = 2, window: int = 4, label: str = "") -> pd.DataFrame:
    """Write a TSV with one row per lesion of the cohort (``subject_id``, ``lesion``, ``risk``, ``attention``,
    ``contribution``) and, optionally, the figure of the ``n_each`` highest- and lowest-risk patients."""
    from biomarkers.survival.explain import explain_patients, occlusion_map
    from biomarkers.deep.lesion_bags import read_bags
    from biomarkers.survival.cnn import risk_samples
    from biomarkers.survival.bundle import load_bundle, read_feature_table

    bundle = load_bundle(model_dir)
    if bundle.model != "cnn_survival":
        raise InputError(f"model {bundle.model} has no lesion-level explanation (only cnn_survival)", path=model_dir)
    table = read_feature_table(features, need_outcome=False)
    archive = read_bags(patches)
    x = bundle.design(table, str(features))
    bags = bundle.inputs(table, archive, str(features))["bags"]
    ids = table["subject_id"].astype(str).tolist()
    lesion_ids = [archive.lesion_id[archive.subject_id == sid].tolist() for sid in ids]
    net = bundle.estimator.net_
    rows = pd.DataFrame(explain_patients(net, bags, x, ids, lesion_ids))
    risk = risk_samples(net, bags, x, 0)[0]  # deterministic (dropout off): what the explanations explain
    rows.insert(2, "risk", rows["subject_id"].map(dict(zip(ids, risk))))
    write_tsv(rows, out)
    if plot is not None:
        from biomarkers.report.explain_plots import explanation_plot

        order = np.argsort(-risk, kind="stable")
        with_lesions = [i for i in order if len(bags[i])]
        chosen = with_lesions[:n_each] + [i for i in with_lesions[::-1][:n_each] if i not in with_lesions[:n_each]]
        cases = []
        for i in chosen:
            part = rows[rows["subject_id"] == ids[i]]
            maps = [occlusion_map(net, bags[i], x[i], k, window) for k in range(len(bags[i]))]
            cases.append({"subject_id": ids[i], "risk": float(risk[i]), "patches": bags[i], "maps": maps,
                          "attention": part["attention"].to_numpy(), "contribution": part["contribution"].to_numpy(),
                          "lesions": part["lesion"].to_numpy(), "top": i in with_lesions[:n_each]})
        explanation_plot(cases, plot, f"What drives the end-to-end score, {label}".rstrip(", "))
    return rows
