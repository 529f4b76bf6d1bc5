"""Report figures: Kaplan-Meier curves by risk group, C-index intervals, model coefficients, feature ICC."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from biomarkers.io.atomic import atomic_path  # noqa: E402

_GROUP_COLOURS = {"low": "#1b7837", "high": "#b2182b"}


def save_figure(fig, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def km_plot(scores: pd.DataFrame, metrics: Mapping, path: str | Path, title: str) -> None:
    """Kaplan-Meier curves per risk group with numbers at risk and the log-rank p-value."""
    from lifelines import KaplanMeierFitter

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    fitters = []
    for group in ("low", "high"):
        sub = scores[scores["risk_group"] == group]
        if sub.empty:
            continue
        km = KaplanMeierFitter(label=f"{group} risk (n={len(sub)})").fit(sub["time"], sub["event"])
        km.plot_survival_function(ax=ax, ci_show=True, color=_GROUP_COLOURS[group], show_censors=True)
        fitters.append(km)
    groups = metrics.get("risk_groups", {})
    p = groups.get("logrank_p")
    hr = groups.get("hazard_ratio_high_vs_low")
    text = []
    if p is not None:
        text.append(f"log-rank p = {p:.2g}")
    if hr is not None:
        text.append(f"HR high vs low = {hr['estimate']:.2f} ({hr['ci95'][0]:.2f}-{hr['ci95'][1]:.2f})")
    c = metrics.get("harrell_c")
    if c is not None:
        text.append(f"Harrell's C = {c['estimate']:.3f} ({c['ci95'][0]:.3f}-{c['ci95'][1]:.3f})")
    _finish_km(fig, ax, fitters, text, title, path)


def _finish_km(fig, ax, fitters: list, text: list[str], title: str, path: str | Path) -> None:
    """Labels, the statistics box, numbers at risk; save."""
    from lifelines.plotting import add_at_risk_counts

    ax.text(0.98, 0.98, "\n".join(text), transform=ax.transAxes, ha="right", va="top", fontsize=8)
    ax.set_xlabel("time (days)")
    ax.set_ylabel("survival probability")
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    if fitters:
        add_at_risk_counts(*fitters, ax=ax, rows_to_show=["At risk"])
    save_figure(fig, path)


def cindex_plot(rows: pd.DataFrame, path: str | Path, title: str) -> None:
    """Point estimates and 95 % intervals, one line per row of ``rows``.

    ``rows`` has columns ``label``, ``estimate``, ``ci_low``, ``ci_high``.
    """
    fig, ax = plt.subplots(figsize=(6.4, 0.5 + 0.45 * len(rows)))
    y = range(len(rows))[::-1]
    ax.errorbar(rows["estimate"], list(y), xerr=[rows["estimate"] - rows["ci_low"], rows["ci_high"] - rows["estimate"]],
                fmt="o", color="#2166ac", capsize=3)
    ax.axvline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(list(y), rows["label"])
    ax.set_xlim(0.3, 1.0)
    ax.set_xlabel("C-index (95 % bootstrap interval); 0.5 = chance")
    ax.set_title(title)
    save_figure(fig, path)


def model_cindex_plot(metrics: pd.DataFrame, path: str | Path) -> None:
    """Harrell's C (95 % interval) of every model, one panel per cohort, with the oracle C of the
    true hazard (simulated cohorts) as a shaded band: how far each model is from what the data allow.

    ``metrics`` is the stacked metrics table (``model``, ``cohort``, ``metric``, ``estimate``,
    ``ci_low``, ``ci_high``) of :func:`biomarkers.validation.evaluate.headline_table`'s input.
    """
    cohorts = list(dict.fromkeys(metrics["cohort"].astype(str)))
    models = list(dict.fromkeys(metrics["model"].astype(str)))
    fig, axes = plt.subplots(1, max(1, len(cohorts)), figsize=(5.2 * max(1, len(cohorts)), 0.9 + 0.42 * len(models)),
                             sharey=True, squeeze=False)
    y = list(range(len(models)))[::-1]
    for ax, cohort in zip(axes[0], cohorts):
        part = metrics[metrics["cohort"].astype(str) == cohort]
        c = part[part["metric"] == "Harrell's C"].set_index("model").reindex(models)
        ax.errorbar(c["estimate"], y, xerr=[c["estimate"] - c["ci_low"], c["ci_high"] - c["estimate"]],
                    fmt="o", color="#2166ac", capsize=3)
        for yi, value in zip(y, c["estimate"]):
            if pd.notna(value):
                ax.annotate(f"{value:.3f}", (value, yi), textcoords="offset points", xytext=(0, 6), ha="center",
                            fontsize=8)
        oracle = part[part["metric"].str.startswith("oracle Harrell")]
        if len(oracle):
            row = oracle.iloc[0]
            ax.axvspan(row["ci_low"], row["ci_high"], color="#fdb863", alpha=0.3, label="oracle C (true hazard), 95 %")
            ax.axvline(row["estimate"], color="#e08214", linewidth=1)
            ax.legend(loc="upper left", fontsize=8)
        ax.axvline(0.5, color="grey", linestyle="--", linewidth=1)
        ax.set_xlim(0.3, 1.0)
        ax.set_ylim(-0.7, len(models) + 0.3)  # room for the legend above the first model
        ax.set_xlabel("Harrell's C (95 % bootstrap interval)")
        ax.set_title(f"{cohort} (n = {int(part['n'].iloc[0])})" if "n" in part and len(part) else cohort)
    axes[0][0].set_yticks(y, models)
    fig.tight_layout()
    save_figure(fig, path)


def coefficient_plot(summary: pd.DataFrame, path: str | Path, title: str) -> None:
    """Horizontal bars of standardised Cox coefficients (log hazard ratio per SD)."""
    s = summary.sort_values("coef")
    fig, ax = plt.subplots(figsize=(6.4, 0.6 + 0.3 * len(s)))
    colours = ["#b2182b" if c > 0 else "#2166ac" for c in s["coef"]]
    ax.barh(s["feature"], s["coef"], color=colours)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("log hazard ratio per standard deviation")
    ax.set_title(title)
    save_figure(fig, path)


def segmentation_quality_plot(cases: pd.DataFrame, path: str | Path, title: str) -> None:
    """Per-method Dice, false-positive and false-negative volume (autoPET metrics), as box plots."""
    methods = list(dict.fromkeys(cases["method"]))
    fig, axes = plt.subplots(1, 3, figsize=(12, 0.8 + 0.45 * len(methods)), sharey=True)
    for ax, (column, label) in zip(axes, [("dice", "Dice"), ("fp_volume_ml", "false-positive volume (mL)"),
                                          ("fn_volume_ml", "false-negative volume (mL)")]):
        data = [cases.loc[cases["method"] == m, column].dropna().to_numpy() for m in methods]
        ax.boxplot(data, vert=False, tick_labels=methods, showmeans=True)
        ax.set_xlabel(label)
        if column != "dice":  # volumes from 0 to litres (thresholds without organ masks): linear to 1 mL, then log
            ax.set_xscale("symlog", linthresh=1.0)
            ax.set_xlim(left=0)
            ax.set_xlabel(f"{label}; linear to 1, log above")
    axes[0].set_xlim(0, 1)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)


_PET_METRICS = ("suv_max", "suv_mean", "suv_peak", "suv_peak_global", "mtv_ml", "tlg")
_ICC_BANDS = ((0.0, 0.5, "#f4cccc", "poor"), (0.5, 0.75, "#fce5cd", "moderate"),
              (0.75, 0.9, "#d9ead3", "good"), (0.9, 1.0, "#b6d7a8", "excellent"))


def _icc_group(feature: str) -> str:
    """Row of the ICC plot: "PET metrics", or pyradiomics' image type family and feature class."""
    if feature in _PET_METRICS or feature.startswith("ivh_"):
        return "PET metrics"
    parts = feature.split("_")
    if len(parts) < 3:
        return "other"
    image_type = parts[0]
    if image_type.startswith("log-sigma-"):
        image_type = "LoG " + image_type[len("log-sigma-"):].replace("-mm-3D", " mm").replace("-", ".")
    elif image_type.startswith("wavelet-"):
        image_type = "wavelet"
    return f"{image_type} {parts[1]}"


def icc_plot(table: pd.DataFrame, path: str | Path, title: str) -> None:
    """Every feature's ICC as a dot, one row per image type and feature class, on Koo & Li's bands."""
    import numpy as np

    groups = table.assign(group=table["feature"].map(_icc_group)).dropna(subset=["icc"])
    order = list(dict.fromkeys(groups["group"]))
    fig, ax = plt.subplots(figsize=(7.0, 0.32 * len(order) + 1.4))
    for lo, hi, colour, name in _ICC_BANDS:
        ax.axvspan(lo, hi, color=colour, zorder=0)
        ax.text((lo + hi) / 2, -0.9, name, ha="center", va="bottom", fontsize=8)
    rng = np.random.default_rng(0)
    for row, group in enumerate(order):
        values = groups.loc[groups["group"] == group, "icc"].clip(lower=-0.05)
        ax.scatter(values, row + rng.uniform(-0.25, 0.25, len(values)), s=7, color="#1f4e79", alpha=0.6, zorder=2)
        ax.text(1.01, row, f"{(values >= 0.75).mean():.0%}", va="center", fontsize=7, transform=ax.get_yaxis_transform())
    ax.set_yticks(range(len(order)), [f"{g} ({(groups['group'] == g).sum()})" for g in order], fontsize=8)
    ax.set_ylim(len(order) - 0.5, -1.0)
    ax.set_xlim(-0.05, 1.0)
    ax.set_xlabel("intra-class correlation (right margin: share with ICC >= 0.75)")
    ax.set_title(title, fontsize=10, pad=16)
    save_figure(fig, path)


def subtype_km_plot(table: pd.DataFrame, subtype, stats: Mapping, path: str | Path, title: str) -> None:
    """Kaplan-Meier curves per imaging subtype with numbers at risk and the log-rank p-value."""
    from lifelines import KaplanMeierFitter

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    fitters = []
    for row in stats["subtypes"]:
        m = subtype == row["subtype"]
        km = KaplanMeierFitter(label=f"subtype {row['subtype']} (n={row['n']})").fit(table["time"][m], table["event"][m])
        km.plot_survival_function(ax=ax, ci_show=False, show_censors=True)
        fitters.append(km)
    text = [f"log-rank p = {stats['logrank_p']:.2g}"] if stats.get("logrank_p") is not None else []
    _finish_km(fig, ax, fitters, text, title, path)
