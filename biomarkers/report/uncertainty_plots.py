"""Report figure of the uncertainty evaluation: selective prediction, detection AUROCs, conformal bound."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from biomarkers.report.plots import save_figure  # noqa: E402

_COLOURS = {"mc_dropout": "#1b9e77", "ensemble": "#d95f02", "distance": "#7570b3", "conformal": "#e7298a"}
_SHIFT_MARKERS = {"none": ("o", "#999999"), "scanner": ("s", "#d95f02"), "bulky": ("^", "#7570b3"),
                  "faint": ("v", "#1b9e77")}


def _point(ax, y: float, est: Mapping, colour: str, label: str | None = None) -> None:
    if est.get("estimate") is None:
        return
    lo, hi = est["ci95"]
    x = est["estimate"]
    ax.errorbar([x], [y], xerr=[[x - lo], [hi - x]] if lo is not None else None, fmt="o", color=colour,
                capsize=3, label=label)


def uncertainty_evaluation_plot(evaluation: Mapping, scores: pd.DataFrame, coverage: Mapping, path: str | Path,
                                title: str, chosen: str | None = None) -> None:
    """Three panels: C-index as the most uncertain are rejected (one line per method); the area gain,
    misprediction AUROC and OOD AUROC of each method with 95 % bootstrap intervals; and the conformal
    lower bound against the observed time (events filled, censored open, shifted subjects marked)."""
    methods = evaluation["methods"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    ax = axes[0]
    for name, entry in methods.items():
        curve = pd.DataFrame(entry["curve"])
        tag = " (chosen on training CV)" if name == chosen else ""
        ax.plot(curve["rejected"], curve["harrell_c"], marker=".", color=_COLOURS.get(name), label=name + tag)
    ax.axhline(evaluation["harrell_c_all"], color="grey", linestyle="--", linewidth=1, label="all patients")
    ax.set_xlabel("fraction rejected (most uncertain first)")
    ax.set_ylabel("Harrell's C of the retained")
    ax.set_title("selective prediction")
    ax.legend(fontsize=8)

    ax = axes[1]
    rows = [("selective area - C(all)", "gain"), ("misprediction AUROC", "misprediction_auroc"),
            ("OOD AUROC", "ood_auroc")]
    rows = [row for row in rows if any(row[1] in entry for entry in methods.values())]
    k = len(methods)
    for r, (label, key) in enumerate(rows):
        for j, (name, entry) in enumerate(methods.items()):
            if key in entry:
                _point(ax, r + (j - (k - 1) / 2) * 0.15, entry[key], _COLOURS.get(name, "k"))
    ax.set_yticks(range(len(rows)), [label for label, _ in rows])
    ax.axvline(0.5, color="grey", linestyle=":", linewidth=1)
    ax.axvline(0.0, color="grey", linestyle=":", linewidth=1)
    ax.invert_yaxis()
    ax.set_xlabel("estimate (95 % bootstrap CI); 0.5 = chance AUROC, 0 = no gain")
    ax.set_title(f"n = {evaluation['n']}, {evaluation['n_mispredicted']} mispredicted"
                 + (f", {evaluation['n_ood']} OOD" if "n_ood" in evaluation else ""))

    ax = axes[2]
    shift = scores["shift"] if "shift" in scores.columns else pd.Series("none", index=scores.index)
    for kind, (marker, colour) in _SHIFT_MARKERS.items():
        for ev, fill in ((1, colour), (0, "none")):
            m = (shift == kind).to_numpy() & (scores["event"].to_numpy() == ev)
            if m.any():
                ax.scatter(scores["lower_bound"][m], scores["time"][m], marker=marker, facecolors=fill,
                           edgecolors=colour, s=28, label=f"{kind}, {'event' if ev else 'censored'}")
    top = float(max(scores["time"].max(), scores["lower_bound"].max()))
    ax.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("conformal lower bound on survival time (days)")
    ax.set_ylabel("observed time (days)")
    text = f"coverage {coverage['estimate']:.2f} (IPCW; target {1 - coverage['alpha']:.2f})"
    if coverage.get("true") is not None:
        text += f"\ntrue coverage {coverage['true']:.2f} (latent times)"
    ax.set_title(text, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)
