"""Parsing of the repeatable and comma-separated command-line values, and the options, shared by the verbs."""
from __future__ import annotations

from typing import Optional, Sequence

import typer

# Preprocessing options of `fit`, `cv` and `uncertainty-scores` (see :func:`pipeline_options`).
HARMONIZE = typer.Option(False, help="ComBat across the table's center column (fitted on training).")
NOT_HARMONIZED = typer.Option("", help="Comma-separated features ComBat leaves alone (clinical covariates).")
CORR_THRESHOLD = typer.Option(None, help="Drop one of two features with |Spearman r| above this.")
FDR_Q = typer.Option(None, help="Keep features whose univariate Cox BH q-value is below this.")
MAX_FEATURES = typer.Option(None, help="Keep at most this many features (best univariate p first).")
THREADS = typer.Option(0, help="CPU threads of torch (0: torch's default); networks are reproducible "
                               "bit for bit at the same thread count.")


def torch_threads(threads: int) -> None:
    """Pin torch's CPU threads (0 leaves torch's default); training is reproducible per thread count."""
    if threads < 0:
        raise ValueError(f"--threads must be 0 (default) or positive, got {threads}")
    if threads:
        import torch

        torch.set_num_threads(threads)


def split_list(value: str) -> list[str]:
    """``"a, b,,c"`` as ``["a", "b", "c"]``."""
    return [v.strip() for v in value.split(",") if v.strip()]


def key_values(items: Sequence[str], flag: str = "--set") -> dict[str, str]:
    """``["k=v", ...]`` (a repeatable ``flag``) as a dict; an item without ``=`` or key is an error."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def pipeline_options(table, include: str, harmonize: bool, not_harmonized: str, corr_threshold: Optional[float],
                     fdr_q: Optional[float], max_features: Optional[int]) -> dict:
    """Preprocessing options of `fit`, `cv` and `uncertainty-scores`
    (:data:`biomarkers.survival.bundle.PIPELINE_DEFAULTS`): ComBat on the included features but the
    ``not_harmonized`` ones, and the filters."""
    from biomarkers.survival.preprocess import select_features

    options: dict = {"corr_threshold": corr_threshold, "fdr_q": fdr_q, "max_features": max_features}
    if harmonize:
        keep = set(split_list(not_harmonized))
        options.update(harmonize=True,
                       combat_features=[f for f in select_features(table, split_list(include) or None) if f not in keep])
    return options
