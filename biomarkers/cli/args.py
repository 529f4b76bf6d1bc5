"""Parsing of the repeatable and comma-separated command-line values, and the options, shared by the verbs."""
from __future__ import annotations

from typing import Optional, Sequence

import typer

# Preprocessing options of `fit`, `cv` and `uncertainty-choice` (see :func:`pipeline_options`).
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


SPEC = typer.Option(None, help="The model as JSON: {\"kind\": ..., \"params\": {...}, \"features\": [...], "
                               "\"log_features\": [...]} (instead of --model, --set, --include, --log-features).")


def model_spec(spec: Optional[str], model: Optional[str], sets: Sequence[str], include: str, log_features: str,
               shortcuts: Optional[dict] = None):
    """The :class:`~biomarkers.survival.spec.ModelSpec` of ``--spec JSON``, or of ``--model`` (default
    coxph), ``--set KEY=VALUE``, ``--include`` and ``--log-features``; not both. ``shortcuts``:
    hyperparameters given by their own flags (e.g. ``fit --penalizer``; None where not given)."""
    from biomarkers.survival.spec import ModelSpec

    given = {key: value for key, value in (shortcuts or {}).items() if value is not None}
    if spec is None:
        return ModelSpec(model or "coxph", split_list(include) or None, tuple(split_list(log_features)),
                         {**key_values(sets), **given})
    if model is not None or sets or include or log_features or given:
        raise ValueError("--spec names the model, its hyperparameters and features; give it without --model, "
                         "--set, --include, --log-features and hyperparameter flags")
    return parse_spec(spec)


def parse_spec(text: str, what: str = "--spec"):
    """The :class:`~biomarkers.survival.spec.ModelSpec` of a ``--spec`` JSON text (without preprocessing,
    which the verbs' own options give)."""
    from biomarkers.survival.spec import ModelSpec

    parsed = ModelSpec.from_json(text, what)
    if parsed.pipeline:
        raise ValueError(f"{what}: give the preprocessing by its own options (--harmonize, --corr-threshold, ...), "
                         "not as pipeline")
    return parsed


def pipeline_options(table, features: Optional[Sequence[str]], harmonize: bool, not_harmonized: str,
                     corr_threshold: Optional[float], fdr_q: Optional[float], max_features: Optional[int]) -> dict:
    """Preprocessing options of `fit`, `cv` and `uncertainty-choice`
    (:data:`biomarkers.survival.bundle.PIPELINE_DEFAULTS`): ComBat on ``features`` (default: every
    numeric column) but the ``not_harmonized`` ones, and the filters."""
    from biomarkers.survival.preprocess import select_features

    options: dict = {"corr_threshold": corr_threshold, "fdr_q": fdr_q, "max_features": max_features}
    if harmonize:
        keep = set(split_list(not_harmonized))
        options.update(harmonize=True,
                       combat_features=[f for f in select_features(table, features or None) if f not in keep])
    return options
