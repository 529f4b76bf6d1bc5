"""Paired bootstrap comparison of several models' scores on the same cohort.

Every model is scored on the same bootstrap resamples (the subjects are resampled once,
and every model's C-index is computed on that resample), so the difference of two models
keeps the correlation between them. The two-sided bootstrap p-value for "no difference" is

    p = min(1, 2 * min(1 + #{d* <= 0}, 1 + #{d* >= 0}) / (B + 1))

over the ``B`` usable resampled differences ``d*`` (the +1 keeps p above 0 with finitely
many resamples, Davison and Hinkley 1997, ch. 4); p < 0.05 matches, up to that +1, a 95 %
percentile interval that excludes 0.
"""
from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from biomarkers.errors import FeatureTableError
from biomarkers.stats import bootstrap_values, harrell_c, num, uno_c


def align_scores(scores: Mapping[str, pd.DataFrame]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Align several scores tables by ``subject_id``.

    Parameters
    ----------
    scores : mapping of str to DataFrame
        Model name -> scores table with ``subject_id`` and ``risk``; ``time`` and ``event``
        in at least one table (where several have them they must agree).

    Returns
    -------
    time, event : ndarray
        Outcome, in the order of the first table's subjects.
    risk : dict of str to ndarray
        Each model's risk in that order.
    """
    if len(scores) < 2:
        raise FeatureTableError(f"need at least 2 models to compare, got {len(scores)}")
    names = list(scores)
    for name in names:
        missing = [c for c in ("subject_id", "risk") if c not in scores[name].columns]
        if missing:
            raise FeatureTableError(f"scores of model {name!r} lack column(s) {', '.join(missing)}")
        dup = scores[name]["subject_id"][scores[name]["subject_id"].duplicated()]
        if len(dup):
            raise FeatureTableError(f"scores of model {name!r} list subject {dup.iloc[0]} more than once")
    ref = scores[names[0]]["subject_id"].astype(str)
    order = pd.Index(ref)
    for name in names[1:]:
        ids = pd.Index(scores[name]["subject_id"].astype(str))
        only_a, only_b = order.difference(ids), ids.difference(order)
        if len(only_a) or len(only_b):
            what = [f"{len(only_a)} only in {names[0]!r} (e.g. {only_a[0]})" if len(only_a) else "",
                    f"{len(only_b)} only in {name!r} (e.g. {only_b[0]})" if len(only_b) else ""]
            raise FeatureTableError(f"models {names[0]!r} and {name!r} were scored on different subjects: "
                                    + "; ".join(w for w in what if w) + "; score the same cohort with both")
    aligned = {n: scores[n].assign(subject_id=scores[n]["subject_id"].astype(str)).set_index("subject_id").loc[order]
               for n in names}
    with_outcome = [n for n in names if {"time", "event"} <= set(aligned[n].columns)]
    if not with_outcome:
        raise FeatureTableError("no scores table has time and event columns (score a cohort with outcomes)")
    first = aligned[with_outcome[0]]
    time, event = first["time"].to_numpy(float), first["event"].to_numpy(int)
    for n in with_outcome[1:]:
        if not (np.array_equal(aligned[n]["time"].to_numpy(float), time)
                and np.array_equal(aligned[n]["event"].to_numpy(int), event)):
            raise FeatureTableError(f"models {with_outcome[0]!r} and {n!r} disagree on time/event of the same subjects")
    return time, event, {n: aligned[n]["risk"].to_numpy(float) for n in names}


def bootstrap_p(differences: np.ndarray) -> float | None:
    """Two-sided bootstrap p-value of a zero difference (see the module docstring)."""
    d = np.asarray(differences, dtype=float)
    if d.size == 0:
        return None
    tail = min(1 + int(np.sum(d <= 0)), 1 + int(np.sum(d >= 0)))
    return float(min(1.0, 2.0 * tail / (d.size + 1)))


def compare_models(scores: Mapping[str, pd.DataFrame], n_boot: int = 1000, seed: int = 0,
                   tau_quantile: float = 0.8) -> pd.DataFrame:
    """Paired bootstrap differences of Harrell's and Uno's C between every pair of models.

    Parameters
    ----------
    scores : mapping of str to DataFrame
        Model name -> scores table (``subject_id``, ``risk``; ``time``, ``event`` in at least
        one). Subject sets must be identical; rows are aligned by ``subject_id``.
    n_boot, seed : int
        Bootstrap resamples and seed: the same resamples for every model, every pair and
        both metrics (and the same as :func:`~biomarkers.validation.metrics.evaluate_scores`
        with that seed on the same row order as the first table).
    tau_quantile : float
        Uno's C is truncated at this quantile of the observed times; its censoring
        distribution is the Kaplan-Meier estimate on the whole cohort, as in ``evaluate_scores``.

    Returns
    -------
    DataFrame
        One row per pair (in the order given) and metric: ``model_a``, ``model_b``,
        ``metric`` ("harrell_c" or "uno_c"), ``c_a``, ``c_b``, ``difference`` (a - b),
        ``ci_low``, ``ci_high`` (95 % percentile), ``p`` and ``n_boot_used``.
    """
    time, event, risk = align_scores(scores)
    if event.sum() < 2:
        raise FeatureTableError(f"only {int(event.sum())} event(s) in the compared cohort; nothing to compare")
    n = len(time)
    tau = float(np.quantile(time, tau_quantile))
    metric = {"harrell_c": lambda r, i: harrell_c(time[i], event[i], r[i]),
              "uno_c": lambda r, i: uno_c(time[i], event[i], r[i], tau, time, event)}
    # Each model's C on each resample once (NaN where undefined, the same resamples for every
    # model); a pair's difference is then the same number as computing both on that resample,
    # and a resample on which either model is undefined is skipped for that pair.
    full = np.arange(n)
    values = {(m, name): (c(r, full), bootstrap_values(lambda i, c=c, r=r: c(r, i), n, n_boot, seed))
              for m, r in risk.items() for name, c in metric.items()}
    rows = []
    for a, b in combinations(list(risk), 2):
        for name in metric:
            (ca, boot_a), (cb, boot_b) = values[a, name], values[b, name]
            boot = boot_a - boot_b
            boot = boot[np.isfinite(boot)]
            lo, hi = np.percentile(boot, [2.5, 97.5]) if len(boot) else (None, None)
            rows.append({"model_a": a, "model_b": b, "metric": name, "c_a": ca, "c_b": cb,
                         "difference": ca - cb, "ci_low": num(lo), "ci_high": num(hi),
                         "p": bootstrap_p(boot), "n_boot_used": int(len(boot))})
    return pd.DataFrame(rows)


def compare_files(paths: Mapping[str, str | Path], out: str | Path, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """:func:`compare_models` of the scores files ``{model name: path}`` of one cohort; writes the TSV."""
    from biomarkers.errors import InputError
    from biomarkers.io.atomic import write_tsv

    tables = {}
    for name, path in paths.items():
        if not Path(path).is_file():
            raise InputError("scores file does not exist", path=path)
        tables[name] = pd.read_parquet(path)
    if len(tables) < 2:
        raise ValueError("compare needs the scores of at least two models")
    result = compare_models(tables, n_boot, seed)
    write_tsv(result, out, float_format="%.4g")
    return result
