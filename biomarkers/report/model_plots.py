"""The figure of a fitted model: what it learnt, in the form that suits the model.

Linear Cox models: standardised coefficients. Random survival forest: permutation importance
(drop in the training cohort's Harrell's C when one feature is shuffled). Networks: training and
early-stopping loss per epoch.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from biomarkers.report.plots import save_figure, coefficient_plot, plt


def permutation_importance(bundle, table: pd.DataFrame, repeats: int = 5, seed: int = 0) -> pd.DataFrame:
    """Mean and SD over ``repeats`` of the drop in Harrell's C when each feature is permuted."""
    from biomarkers.stats import harrell_c

    x = bundle.design(table)
    time, event = table["time"].to_numpy(float), table["event"].to_numpy(int)

    def c_of(design: np.ndarray) -> float:
        return harrell_c(time, event, bundle.estimator.risk_samples(design, bundle.info["score_seed"]).mean(axis=0))

    base = c_of(x)
    rng = np.random.default_rng(seed)
    rows = []
    for j, name in enumerate(bundle.preprocessor.selected_):
        drops = []
        for _ in range(repeats):
            shuffled = x.copy()
            shuffled[:, j] = rng.permutation(shuffled[:, j])
            drops.append(base - c_of(shuffled))
        rows.append({"feature": name, "importance": float(np.mean(drops)), "sd": float(np.std(drops, ddof=1))})
    return pd.DataFrame(rows)


def model_plot(bundle, summary: pd.DataFrame | None, table: pd.DataFrame, path: str | Path, title: str) -> None:
    """Coefficients (linear), permutation importance (forest) or loss curves (networks)."""
    if summary is not None:
        coefficient_plot(summary, path, title)
        return
    if bundle.model == "rsf":
        imp = permutation_importance(bundle, table).sort_values("importance")
        fig, ax = plt.subplots(figsize=(6.4, 0.6 + 0.3 * len(imp)))
        ax.barh(imp["feature"], imp["importance"], xerr=imp["sd"], color="#4d7ea8")
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_xlabel("drop in training Harrell's C when the feature is permuted (mean, SD of 5)")
    else:
        # the end-to-end network keeps its history itself, the tabular ones in their DeepSurvivalModel
        fitted = bundle.estimator if bundle.model == "cnn_survival" else bundle.estimator.net_
        history = fitted.history_
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        ax.plot(history["epoch"], history["train_loss"], label="training part")
        if history["val_loss"].notna().any():
            ax.plot(history["epoch"], history["val_loss"], label="early-stopping part")
        ax.axvline(fitted.best_epoch_, color="grey", linestyle="--", label="kept weights")
        ax.set_xlabel("epoch")
        cox = bundle.model in ("deepsurv", "cnn_survival")
        ax.set_ylabel("loss (negative log partial likelihood)" if cox else "loss (NLL)")
        ax.legend()
    ax.set_title(title)
    save_figure(fig, path)


def pretraining_plot(result: dict, path: str | Path, title: str) -> None:
    """Validation C of each variant per seed (dots), their mean with the bootstrap 95 % interval, and the
    paired difference to training from scratch."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    names = list(result["variants"])
    for j, name in enumerate(names):
        entry = result["variants"][name]
        per_seed = entry["harrell_c_per_seed"]
        ax.scatter(per_seed, np.full(len(per_seed), j) + 0.12, s=14, color="grey", zorder=3)
        lo, hi = entry["ci95"]
        m = entry["harrell_c_mean"]
        ax.errorbar([m], [j], xerr=[[m - lo], [hi - m]], fmt="o", color="#2166ac", capsize=3)
        text = f"{m:.3f}"
        if "minus_scratch" in entry:
            d = entry["minus_scratch"]
            text += f"  ({d['estimate']:+.3f}, {d['ci95'][0]:+.3f} to {d['ci95'][1]:+.3f}, p={d['p']:.2f})"
        ax.text(hi + 0.005, j, text, va="center", fontsize=8)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel(f"Harrell's C on validation (mean of {len(result['seeds'])} seeds; grey: each seed)")
    ax.set_title(title)
    save_figure(fig, path)
