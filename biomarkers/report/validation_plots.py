"""Report figures of the extended validation: calibration at a horizon, uncertainty checks."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from biomarkers.report.plots import save_figure  # noqa: E402


def calibration_plot(cal_table: pd.DataFrame, curve: Mapping, path: str | Path, title: str) -> None:
    """Predicted vs observed event probability at a horizon.

    Parameters
    ----------
    cal_table : DataFrame
        :func:`biomarkers.validation.calibration.calibration_table` (``predicted``,
        ``observed``, ``observed_low``, ``observed_high``); groups without a Kaplan-Meier
        estimate at the horizon are left out.
    curve : mapping
        ``predicted`` and ``observed`` (the smoothed curve on a grid), optional ``ici``.
    path : str or Path
        PNG to write (atomically).
    title : str
        Figure title.
    """
    fig, ax = plt.subplots(figsize=(5.2, 5.2))
    pred = np.asarray(curve["predicted"], dtype=float)
    obs = np.asarray(curve["observed"], dtype=float)
    ici = curve.get("ici")
    label = "smoothed (Austin et al. 2020)" + (f", ICI = {ici:.3f}" if ici is not None else "")
    ax.plot(pred, obs, color="#b2182b", label=label)
    tab = cal_table.dropna(subset=["observed"])
    if len(tab):
        y = tab["observed"].to_numpy(float)
        err = [y - tab["observed_low"].to_numpy(float), tab["observed_high"].to_numpy(float) - y]
        ax.errorbar(tab["predicted"].to_numpy(float), y, yerr=err, fmt="o", color="#2166ac", capsize=3,
                    label=f"Kaplan-Meier by group ({len(cal_table)} groups, 95 % CI)")
    top = float(np.nanmax(np.r_[pred, obs, tab["observed_high"].to_numpy(float) if len(tab) else []]))
    top = min(1.0, top + 0.05)
    ax.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("predicted event probability by the horizon")
    ax.set_ylabel("observed event probability")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title)
    save_figure(fig, path)


def message_plot(path: str | Path, title: str, text: str) -> None:
    """A figure that says why the figure it stands for could not be drawn."""
    import textwrap

    fig, ax = plt.subplots(figsize=(5.5, 2.2))
    ax.axis("off")
    ax.text(0.5, 0.5, "\n".join(textwrap.wrap(text, 60)), ha="center", va="center", fontsize=9)
    ax.set_title(title)
    save_figure(fig, path)


def _interval_rows(checks: Mapping) -> list[tuple[str, dict]]:
    names = {1: "risk_sd tertile 1 (lowest)", 2: "risk_sd tertile 2", 3: "risk_sd tertile 3 (highest)"}
    rows = [(names[t["tertile"]], t["harrell_c"]) for t in checks["risk_sd_tertiles"]]
    ab = checks.get("abstention")
    if ab:
        rows += [("all", ab["all"]), (f"retained (n={ab['n_retained']})", ab["retained"]),
                 (f"abstained (n={ab['n_abstained']})", ab["abstained"])]
        if "nearest_cutoff" in ab:
            rows.append((f"control: {ab['n_abstained']} nearest the cut-off out", ab["nearest_cutoff"]))
    return [(label, est) for label, est in rows if est.get("estimate") is not None]


def uncertainty_plot(scores: pd.DataFrame, path: str | Path, title: str, checks: Mapping) -> None:
    """Per-subject discordance against ``risk_sd``, and Harrell's C by tertile and abstention.

    Parameters
    ----------
    scores : DataFrame
        ``risk``, ``risk_sd``, ``time``, ``event`` (optional ``abstain``).
    path : str or Path
        PNG to write (atomically).
    title : str
        Figure title.
    checks : mapping
        Output of :func:`biomarkers.validation.uncertainty.uncertainty_checks` (e.g. the
        ``uncertainty`` entry of the metrics).
    """
    from biomarkers.stats import discordance_rate

    rate = discordance_rate(scores["time"].to_numpy(float), scores["event"].to_numpy(int),
                            scores["risk"].to_numpy(float))
    sd = scores["risk_sd"].to_numpy(float)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.0, 4.4), gridspec_kw={"wspace": 0.65})
    colour = np.where(scores["abstain"].to_numpy(bool), "#b2182b", "#2166ac") if "abstain" in scores else "#2166ac"
    left.scatter(sd, rate, s=10, c=colour, alpha=0.6)
    rho = checks["discordance_spearman"]
    if rho.get("estimate") is not None:
        lo, hi = rho["ci95"]
        ci = f" ({lo:.2f} to {hi:.2f})" if lo is not None else ""
        left.text(0.02, 0.98, f"Spearman rho = {rho['estimate']:.2f}{ci}", transform=left.transAxes,
                  ha="left", va="top", fontsize=8)
    left.set_xlabel("risk_sd (MC-dropout spread)")
    left.set_ylabel("discordance rate of the subject's comparable pairs")
    left.set_ylim(-0.02, 1.02)
    if "abstain" in scores:
        left.set_title("red: abstained", fontsize=8)
    rows = _interval_rows(checks)
    y = np.arange(len(rows))[::-1]
    if rows:
        est = np.array([r[1]["estimate"] for r in rows], dtype=float)
        lo = np.array([np.nan if r[1]["ci95"][0] is None else r[1]["ci95"][0] for r in rows], dtype=float)
        hi = np.array([np.nan if r[1]["ci95"][1] is None else r[1]["ci95"][1] for r in rows], dtype=float)
        right.errorbar(est, y, xerr=[np.nan_to_num(est - lo), np.nan_to_num(hi - est)], fmt="o",
                       color="#2166ac", capsize=3)
        right.set_yticks(list(y), [r[0] for r in rows])
    right.axvline(0.5, color="grey", linestyle="--", linewidth=1)
    right.set_xlim(0.3, 1.0)
    right.set_xlabel("Harrell's C (95 % bootstrap interval)")
    fig.suptitle(title)
    save_figure(fig, path)
