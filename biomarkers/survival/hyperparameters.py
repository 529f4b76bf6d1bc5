"""Every survival model's hyperparameters and their defaults, the one source for `fit`, `cv` and the
workflow.

Deliberately free of torch, scikit-learn and lifelines: the workflow reads it while it parses, and
a dry run should not pay for importing them.
"""
from __future__ import annotations

from typing import Any

#: Hyperparameters of every model and their defaults (``biomarkers fit --set KEY=VALUE``).
DEFAULTS: dict[str, dict[str, Any]] = {
    "coxph": {"penalizer": 0.1, "l1_ratio": 0.0},
    "coxnet": {"l1_ratio": 0.5, "n_alphas": 50, "alpha_min_ratio": 0.01, "cv_folds": 5, "one_se": False,
               "seed": 0},
    "rsf": {"n_estimators": 300, "min_samples_leaf": 10, "max_features": "sqrt", "seed": 0},
    "deepsurv": {"hidden": "32,32", "dropout": 0.1, "max_epochs": 200, "patience": 15, "val_fraction": 0.2,
                 "batch_size": 64, "lr": 1e-3, "weight_decay": 1e-3, "mc_samples": 100, "seed": 0},
}
DEFAULTS["logistic_hazard"] = {**DEFAULTS["deepsurv"], "n_durations": 10}
DEFAULTS["deephit"] = {**DEFAULTS["deepsurv"], "n_durations": 10, "alpha": 0.2, "sigma": 0.1}
DEFAULTS["cnn_survival"] = {"latent": 8, "width": 4, "hidden": 16, "dropout": 0.2, "max_epochs": 100, "patience": 15,
                            "val_fraction": 0.2, "batch_size": 32, "lr": 1e-3, "weight_decay": 1e-2,
                            "mc_samples": 100, "seed": 0}
MODELS = tuple(DEFAULTS)


def hyperparameters(model: str, given: dict[str, Any] | None = None) -> dict[str, Any]:
    """``model``'s defaults updated with ``given``, each value cast to its default's type.

    Raises
    ------
    ValueError
        Unknown model, unknown hyperparameter, or a value of the wrong type.
    """
    if model not in DEFAULTS:
        raise ValueError(f"unknown model {model!r}; available: {', '.join(MODELS)}")
    params = dict(DEFAULTS[model])
    for key, value in (given or {}).items():
        if key not in params:
            raise ValueError(f"model {model} has no hyperparameter {key!r}; it has {', '.join(params)}")
        kind = type(params[key])
        try:
            if kind is bool and isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                value = value.lower() in ("true", "1", "yes")
            params[key] = kind(value)
        except (TypeError, ValueError):
            raise ValueError(f"{model} hyperparameter {key} must be a {kind.__name__}, got {value!r}") from None
    return params


def is_stochastic(params: dict[str, Any]) -> bool:
    """Whether a model with these hyperparameters scores by MC dropout (``risk_sd`` > 0): passes
    and a dropout rate both above 0. The one rule the models and the workflow use."""
    return float(params.get("mc_samples", 0)) > 0 and float(params.get("dropout", 0)) > 0
