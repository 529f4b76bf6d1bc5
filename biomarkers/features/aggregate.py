"""From lesion rows to one row per subject, and the feature table for fit/score.

Aggregation rule (documented for users):

* burden: ``lesion_count``, ``total_mtv_ml`` (sum), ``total_tlg`` (sum);
* intensity: ``suv_max`` and ``suv_peak`` of the hottest lesion (maximum over lesions);
* spread: ``dissemination_mm``, the largest distance between two lesion centroids
  (0 with fewer than two lesions);
* texture and every other per-lesion feature, by one of three rules (``texture``), the
  rule's name being the columns' prefix:

  - ``largest`` (default): the value of the largest lesion by MTV, the lesion that
    dominates the burden and whose texture is estimated from the most voxels;
  - ``hottest``: the value of the lesion with the highest SUVmax (the most aggressive
    lesion; in lymphoma the site of transformation);
  - ``weighted``: the MTV-weighted mean over all lesions, every voxel of disease counting
    once (small lesions' noisy textures weigh little).

  Ties (equal MTV or SUVmax) go to the lowest lesion label. Subjects with no lesion have
  0 burden and missing (NaN) intensity and texture values, which the model's imputation
  handles.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.spatial.distance import pdist

from biomarkers.errors import FeatureTableError, SubjectsSheetError

_BOOKKEEPING = ("subject_id", "lesion_id", "centroid_x_mm", "centroid_y_mm", "centroid_z_mm")
TEXTURE_RULES = ("largest", "hottest", "weighted")


def aggregate_subject(lesions: pd.DataFrame, texture: str = "largest") -> dict[str, float]:
    """Subject-level features from one subject's lesion rows (see the module docstring)."""
    if texture not in TEXTURE_RULES:
        raise ValueError(f"texture aggregation must be one of {', '.join(TEXTURE_RULES)}, got {texture!r}")
    out: dict[str, float] = {
        "lesion_count": float(len(lesions)),
        "total_mtv_ml": float(lesions["mtv_ml"].sum()) if len(lesions) else 0.0,
        "total_tlg": float(lesions["tlg"].sum()) if len(lesions) else 0.0,
        "suv_max": float(lesions["suv_max"].max()) if len(lesions) else np.nan,
        "suv_peak": float(lesions["suv_peak"].max()) if len(lesions) else np.nan,
        "dissemination_mm": 0.0,
    }
    if len(lesions) >= 2:
        centroids = lesions[["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]].to_numpy(float)
        out["dissemination_mm"] = float(pdist(centroids).max())
    per_lesion = [c for c in lesions.columns if c not in _BOOKKEEPING]
    values = lesions.sort_values("lesion_id")[per_lesion].to_numpy(np.float64)
    if not len(lesions):
        picked = np.full(len(per_lesion), np.nan)
    elif texture == "weighted":
        weights = lesions.sort_values("lesion_id")["mtv_ml"].to_numpy(np.float64)
        picked = weights @ values / weights.sum()
    else:
        key = per_lesion.index("mtv_ml" if texture == "largest" else "suv_max")
        picked = values[np.argmax(values[:, key])]  # first maximum: the lowest label
    out.update({f"{texture}_{col}": float(v) for col, v in zip(per_lesion, picked)})
    return out


def feature_table(subjects: pd.DataFrame, lesions: pd.DataFrame, covariates: Sequence[str] = (),
                  categorical: Mapping[str, Sequence[str]] | None = None, sheet_path: str = "subjects.tsv",
                  texture: str = "largest") -> pd.DataFrame:
    """Build the feature table: ``subject_id``, ``time``, ``event`` (when the sheet has them),
    ``center`` (when the sheet has it), covariates, features.

    Parameters
    ----------
    subjects : DataFrame
        Rows of the subjects sheet for the subjects to include.
    lesions : DataFrame
        Lesion rows of those subjects (any subject may have none).
    covariates : sequence of str
        Numeric sheet columns copied as they are.
    categorical : mapping of str to sequence of str
        Categorical sheet columns and their levels; the first level is the reference and
        every other level gets a 0/1 column ``<name>_<level>``. Unknown levels are errors.
    texture : str
        Rule for per-lesion features of subjects with several lesions (module docstring).
    """
    categorical = dict(categorical or {})
    missing = [c for c in [*covariates, *categorical] if c not in subjects.columns]
    if missing:
        raise SubjectsSheetError(f"covariate column(s) {', '.join(missing)} not in subjects sheet", path=sheet_path)
    extra = set(lesions["subject_id"]) - set(subjects["subject_id"]) if len(lesions) else set()
    if extra:
        raise FeatureTableError(f"lesion rows for subject(s) not in the sheet: {', '.join(sorted(extra))}")
    rows = []
    groups = dict(tuple(lesions.groupby("subject_id", sort=False))) if len(lesions) else {}
    empty = lesions.iloc[0:0]
    for _, subj in subjects.iterrows():
        sid = subj["subject_id"]
        row: dict = {"subject_id": sid}
        if "time" in subjects.columns:  # new patients scored by a signature have no outcome yet
            row.update(time=float(subj["time"]), event=int(subj["event"]))
        if "center" in subjects.columns:
            row["center"] = str(subj["center"])  # not a feature: for ComBat harmonisation
        for col in covariates:
            value = pd.to_numeric(subj[col], errors="coerce")
            if not np.isfinite(value):
                raise SubjectsSheetError(f"covariate {col} is not a number ({subj[col]!r})", sid, sheet_path)
            row[col] = float(value)
        for col, levels in categorical.items():
            if subj[col] not in levels:
                raise SubjectsSheetError(f"{col}={subj[col]!r} is not one of the levels {list(levels)}", sid, sheet_path)
            for level in levels[1:]:
                row[f"{col}_{level}"] = float(subj[col] == level)
        row.update(aggregate_subject(groups.get(sid, empty), texture))
        rows.append(row)
    return pd.DataFrame(rows)
