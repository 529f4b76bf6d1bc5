"""Nested cross-validation on the training cohort, for choosing a model without touching validation data.

The outer loop splits the training cohort into ``folds`` parts (stratified on the event,
seeded, optionally repeated); for each part, :func:`~biomarkers.survival.bundle.fit_bundle`
fits the whole pipeline (imputation, transforms, scaling, and the model's own inner choices
such as Coxnet's cross-validated alpha) on the other parts only, and the held-out part is
scored by that frozen bundle. Nothing of a held-out part enters any fitted statistic, so the
held-out C-indices estimate how each candidate generalises; the external cohort is then
evaluated once, by the bundle refitted on the whole training cohort.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import numpy as np
import pandas as pd
from tqdm import tqdm

from biomarkers.errors import FeatureTableError
from biomarkers.survival.bundle import fit_bundle, score_table
from biomarkers.survival.spec import ModelSpec
from biomarkers.stats import harrell_c, uno_c

if TYPE_CHECKING:
    from biomarkers.deep.lesion_bags import LesionBags


def cross_validate(table: pd.DataFrame, specs: Mapping[str, ModelSpec], folds: int = 5, repeats: int = 1,
                   seed: int = 0, tau_quantile: float = 0.8, progress: bool = False,
                   bags: "LesionBags | None" = None) -> pd.DataFrame:
    """Held-out C-indices of every candidate model, fold by fold.

    Parameters
    ----------
    table : DataFrame
        Training feature table (``subject_id``, ``time``, ``event``, features).
    specs : mapping
        Candidate name -> what to fit (:class:`~biomarkers.survival.spec.ModelSpec`), so that
        candidates can differ in model, hyperparameters, features (e.g. clinical covariates only
        against imaging plus clinical) and preprocessing.
    folds, repeats, seed : int
        Outer folds, repetitions with other shuffles, and the seed of the first repetition
        (repetition ``r`` uses ``seed + r``). Every model sees the same folds.
    tau_quantile : float
        Uno's C is truncated at this quantile of the held-out part's times.
    progress : bool
        Show a progress bar.
    bags : LesionBags, optional
        The training cohort's lesion patches, for ``cnn_survival`` candidates (fitting and scoring).

    Returns
    -------
    DataFrame
        ``model``, ``repeat``, ``fold``, ``n_test``, ``events_test``, ``harrell_c``, ``uno_c``.
    """
    from sklearn.model_selection import StratifiedKFold

    event = table["event"].to_numpy(int)
    if folds < 2 or event.sum() < 2 * folds:
        raise FeatureTableError(f"{folds}-fold cross-validation needs at least 2 events per fold; "
                                f"the training table has {int(event.sum())}")
    splits = [(r, k, train, test) for r in range(repeats)
              for k, (train, test) in enumerate(StratifiedKFold(folds, shuffle=True, random_state=seed + r)
                                                .split(np.zeros(len(table)), event))]
    rows = []
    work = [(name, split) for name in specs for split in splits]
    for name, (r, k, train, test) in tqdm(work, desc="cross-validation", disable=not progress):
        part, held = table.iloc[train].reset_index(drop=True), table.iloc[test].reset_index(drop=True)
        bundle, _ = fit_bundle(part, specs[name], bags=bags)
        risk = score_table(bundle, held, bags=bags)["risk"].to_numpy()
        t, e = held["time"].to_numpy(float), held["event"].to_numpy(int)
        rows.append({"model": name, "repeat": r, "fold": k, "n_test": len(held), "events_test": int(e.sum()),
                     "harrell_c": harrell_c(t, e, risk),
                     "uno_c": uno_c(t, e, risk, float(np.quantile(t, tau_quantile)))})
    return pd.DataFrame(rows)


def summarise(folds: pd.DataFrame) -> pd.DataFrame:
    """Mean, SD and standard error of the held-out C-indices per model, best first; ``chosen`` marks the best.

    The choice is the highest mean held-out Harrell's C (ties: the first model given).
    """
    order = list(dict.fromkeys(folds["model"]))
    stats = folds.groupby("model", sort=False).agg(
        folds=("fold", "size"), harrell_c_mean=("harrell_c", "mean"), harrell_c_sd=("harrell_c", "std"),
        uno_c_mean=("uno_c", "mean"), uno_c_sd=("uno_c", "std")).reindex(order).reset_index()
    stats["harrell_c_se"] = stats["harrell_c_sd"] / np.sqrt(stats["folds"])
    stats["chosen"] = False
    stats.loc[stats["harrell_c_mean"].idxmax(), "chosen"] = True
    return stats.sort_values("harrell_c_mean", ascending=False, kind="stable").reset_index(drop=True)
