"""Fit, freeze and apply a survival model.

A frozen model directory holds ``model.json`` (preprocessing state, coefficients, the
risk-group cut-off, the training table's SHA-256 and library versions) and
``coefficients.tsv``. It is plain JSON so that a reviewer can read what was fitted.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from biomarkers.errors import FeatureTableError, ModelBundleError
from biomarkers.io.atomic import write_parquet
from biomarkers.survival.cox import fit_cox
from biomarkers.survival.preprocess import Preprocessor, select_features

MODELS = ("coxph",)
BUNDLE_FORMAT = 1


@dataclass
class ModelBundle:
    """A fitted model with everything needed to score a new cohort."""

    model: str
    preprocessor: Preprocessor
    coef: np.ndarray
    risk_cutoff: float
    info: dict

    def risk(self, table: pd.DataFrame) -> np.ndarray:
        """Linear predictor (higher = worse prognosis) of every row of ``table``."""
        return self.preprocessor.transform(table) @ self.coef


def read_feature_table(path: str | Path, need_outcome: bool = True) -> pd.DataFrame:
    """Read a feature table and check the ``subject_id``/``time``/``event`` layout."""
    path = Path(path)
    if not path.is_file():
        raise FeatureTableError("feature table does not exist", path=path)
    table = pd.read_parquet(path)
    need = ["subject_id", "time", "event"] if need_outcome else ["subject_id"]
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise FeatureTableError(f"feature table lacks column(s) {', '.join(missing)}", path=path)
    return table


def fit_bundle(table: pd.DataFrame, model: str = "coxph", features: Sequence[str] | None = None,
               log_features: Sequence[str] = (), penalizer: float = 0.1, l1_ratio: float = 0.0,
               table_sha256: str = "") -> tuple[ModelBundle, pd.DataFrame]:
    """Fit preprocessing and model on the training table; return the bundle and a coefficient table."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; available: {', '.join(MODELS)}")
    if int(table["event"].sum()) < 2:
        raise FeatureTableError("training table has fewer than 2 events; cannot fit a survival model")
    names = select_features(table, features)
    pre = Preprocessor(features=names, log_features=list(log_features)).fit(table)
    x = pre.transform(table, "training table")
    coef, summary = fit_cox(x, table["time"].to_numpy(float), table["event"].to_numpy(int), names,
                            penalizer, l1_ratio)
    risk = x @ coef
    info = {
        "bundle_format": BUNDLE_FORMAT,
        "n_train": int(len(table)),
        "n_events": int(table["event"].sum()),
        "train_table_sha256": table_sha256,
        "hyperparameters": {"penalizer": penalizer, "l1_ratio": l1_ratio},
        "risk_group_rule": "high if risk > median training risk",
        "versions": _versions(),
    }
    return ModelBundle(model, pre, coef, float(np.median(risk)), info), summary


def save_bundle(bundle: ModelBundle, summary: pd.DataFrame, out_dir: str | Path) -> None:
    """Write the bundle to ``out_dir`` atomically (a temporary folder renamed into place)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        state = {
            "model": bundle.model,
            "preprocessor": bundle.preprocessor.to_dict(),
            "coef": dict(zip(bundle.preprocessor.features, bundle.coef.tolist())),
            "risk_cutoff": bundle.risk_cutoff,
            "info": bundle.info,
        }
        (tmp / "model.json").write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
        summary.to_csv(tmp / "coefficients.tsv", sep="\t", index=False, float_format="%.6g")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def load_bundle(model_dir: str | Path) -> ModelBundle:
    """Read a frozen model directory written by :func:`save_bundle`."""
    path = Path(model_dir) / "model.json"
    if not path.is_file():
        raise ModelBundleError(f"{path}: not a model directory (model.json missing)")
    state = json.loads(path.read_text())
    if state.get("info", {}).get("bundle_format") != BUNDLE_FORMAT:
        raise ModelBundleError(f"{path}: unsupported bundle format {state.get('info', {}).get('bundle_format')}")
    pre = Preprocessor.from_dict(state["preprocessor"])
    coef = np.array([state["coef"][f] for f in pre.features], dtype=np.float64)
    return ModelBundle(state["model"], pre, coef, float(state["risk_cutoff"]), state["info"])


def score_table(bundle: ModelBundle, table: pd.DataFrame, path: str | Path = "feature table") -> pd.DataFrame:
    """Scores of every subject: ``subject_id``, ``risk``, ``risk_sd``, ``risk_group`` (+ outcome if present)."""
    missing = [f for f in bundle.preprocessor.features if f not in table.columns]
    if missing:
        raise FeatureTableError(f"lacks the model's feature column(s) {', '.join(missing)}", path=path)
    risk = bundle.risk(table)
    scores = pd.DataFrame({
        "subject_id": table["subject_id"].astype(str).to_numpy(),
        "risk": risk,
        "risk_sd": np.zeros(len(table)),
        "risk_group": np.where(risk > bundle.risk_cutoff, "high", "low"),
    })
    for col in ("time", "event"):
        if col in table.columns:
            scores[col] = table[col].to_numpy()
    return scores


def write_scores(scores: pd.DataFrame, path: str | Path, bundle: ModelBundle) -> None:
    """Write scores to parquet with the model's provenance in the metadata."""
    write_parquet(scores, path, {"model": bundle.model, "risk_cutoff": bundle.risk_cutoff,
                                 "train_table_sha256": bundle.info.get("train_table_sha256", "")})


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("biomarkers", "numpy", "pandas", "lifelines", "scikit-survival", "pyradiomics-bhklab", "SimpleITK"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out
