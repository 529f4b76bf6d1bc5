"""Feature tables as the models read them: the layout check, the feature columns, the survival
horizons, and the check that a cohort to score matches the training table."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from biomarkers.errors import FeatureTableError
from biomarkers.io.atomic import read_parquet_metadata
from biomarkers.io.subjects import check_outcome
from biomarkers.survival.preprocess import select_features

OUTCOME = ("subject_id", "time", "event")


def read_feature_table(path: str | Path, need_outcome: bool = True,
                       training_cohort: str | None = None) -> pd.DataFrame:
    """Read a feature table and check the ``subject_id``/``time``/``event`` layout.

    ``training_cohort``: a table whose metadata names another cohort (``aggregate`` records it)
    is refused, so that no model is fitted on a validation cohort by mistake.
    """
    path = Path(path)
    if not path.is_file():
        raise FeatureTableError("feature table does not exist", path=path)
    if training_cohort is not None:
        cohort = read_parquet_metadata(path).get("cohort")
        if cohort is not None and str(cohort) != training_cohort:
            raise FeatureTableError(f"feature table of cohort {cohort!r}, not of the training cohort "
                                    f"{training_cohort!r}; fit on the training cohort's table, or pass "
                                    f"--training-cohort {cohort} if it is the one meant", path=path)
    table = pd.read_parquet(path)
    need = list(OUTCOME) if need_outcome else ["subject_id"]
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise FeatureTableError(f"feature table lacks column(s) {', '.join(missing)}", path=path)
    if table["subject_id"].duplicated().any():
        sid = table.loc[table["subject_id"].duplicated(), "subject_id"].iloc[0]
        raise FeatureTableError(f"subject {sid} appears more than once", path=path)
    if need_outcome:
        check_outcome(table, path, FeatureTableError)
    return table


def feature_columns(table: pd.DataFrame) -> list[str]:
    """Numeric columns other than the outcome: what a feature table offers a model."""
    return select_features(table, None)


def default_horizons(time: np.ndarray, event: np.ndarray) -> list[float]:
    """Quartiles of the training event times, in whole days: the survival horizons scored."""
    return sorted({float(np.round(q)) for q in np.quantile(time[event == 1], [0.25, 0.5, 0.75])})


def _first(names: list[str], n: int = 5) -> str:
    """The first ``n`` names, and how many more (an error message stays one readable line)."""
    shown = ", ".join(names[:n])
    return shown if len(names) <= n else f"{shown} and {len(names) - n} more ({len(names)} in all)"


def check_scoring_table(bundle: Any, table: pd.DataFrame, path: str | Path = "feature table") -> None:
    """Refuse a table whose feature columns differ from the training table's, or that shares
    some (but not all) subjects with the training cohort (``bundle``: a
    :class:`~biomarkers.survival.bundle.ModelBundle`).

    Raises
    ------
    FeatureTableError
        Naming the missing and the unexpected columns, or the first shared subject.
    """
    expected, found = bundle.info["feature_columns"], feature_columns(table)
    missing = [c for c in expected if c not in found]
    extra = [c for c in found if c not in expected]
    if missing or extra:
        parts = ([f"lacks the training table's column(s) {_first(missing)}"] if missing else []) + \
                ([f"has column(s) the training table had not: {_first(extra)}"] if extra else [])
        raise FeatureTableError("; ".join(parts) + " (build every cohort's table the same way)", path=path)
    train = set(bundle.info["train_subjects"])
    ids = set(table["subject_id"].astype(str))
    shared = sorted(ids & train)
    if shared and ids != train:
        raise FeatureTableError(f"subject {shared[0]} ({len(shared)} in all) is also in the training cohort; "
                                "a validation cohort must be independent", path=path)
