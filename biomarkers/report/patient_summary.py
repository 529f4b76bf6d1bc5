"""One page per new patient: where the lesions are, and where the patient's risk falls."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def patient_summary(pet_path: str | Path, lesions_path: str | Path, score: dict, training_risk: Sequence[float],
                    cutoff: float, out: str | Path, model: str, signature_sha256: str) -> None:
    """Write the patient's one-page summary (PNG, or PDF by the file's extension).

    Left: coronal and sagittal maximum-intensity projections of the SUV with the segmented lesions
    outlined. Right: the training cohort's risk distribution with the risk-group cut-off, the
    patient's risk and its 95 % interval (MC dropout; a line for deterministic models), and the
    numbers: risk group, abstention, survival at each horizon, lesions, total MTV.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from biomarkers.io.atomic import atomic_path
    from biomarkers.io.images import read_image_pair, spacing_zyx_mm, to_array

    image, mask = read_image_pair(pet_path, lesions_path, str(score["subject_id"]))
    suv, labels = to_array(image).astype(np.float64), to_array(mask) > 0
    dz, dy, dx = spacing_zyx_mm(image)
    fig = plt.figure(figsize=(11, 6.5))
    grid = fig.add_gridspec(2, 3, width_ratios=[1, 1, 1.6], height_ratios=[3, 1.2])
    top = max(float(np.percentile(suv, 99.9)), 1.0)
    for k, (axis, aspect, name) in enumerate([(1, dz / dx, "coronal"), (2, dz / dy, "sagittal")]):
        ax = fig.add_subplot(grid[0, k])
        ax.imshow(suv.max(axis=axis)[::-1], cmap="gray_r", vmin=0, vmax=min(top, 10.0), aspect=aspect,
                  interpolation="nearest")
        if labels.any():
            ax.contour(labels.max(axis=axis)[::-1].astype(float), levels=[0.5], colors="red", linewidths=0.8)
        ax.set_title(f"SUV MIP, {name}", fontsize=9)
        ax.set_axis_off()
    ax = fig.add_subplot(grid[0, 2])
    train = np.asarray(training_risk, dtype=np.float64)
    ax.hist(train, bins=min(30, max(5, len(train) // 4)), color="0.75", label=f"training cohort (n = {len(train)})")
    ax.axvline(cutoff, color="0.3", ls="--", lw=1, label="risk-group cut-off")
    low, high = float(score["risk_low"]), float(score["risk_high"])
    if high > low:
        ax.axvspan(low, high, color="tab:red", alpha=0.2, label="95 % interval")
    ax.axvline(float(score["risk"]), color="tab:red", lw=2, label="this patient")
    ax.set_xlabel(f"risk ({model}; higher = worse prognosis)")
    ax.set_ylabel("patients")
    ax.legend(fontsize=8, loc="upper right")
    text = fig.add_subplot(grid[1, :])
    text.set_axis_off()
    surv = [f"S({k[5:]} d) = {score[k]:.2f}" for k in score if k.startswith("surv_") and k.count("_") == 1]
    lines = [
        f"Patient {score['subject_id']}   centre {score['center']}   risk {score['risk']:.3f} "
        + (f"(95 % interval {low:.3f} to {high:.3f}; " if high > low else "(deterministic model; ")
        + f"percentile {score['risk_percentile']:.0f} of training)",
        f"Risk group: {str(score['risk_group']).upper()}" + ("   ABSTAIN: uncertain, refer for further tests"
                                                             if bool(score["abstain"]) else "   (no abstention)"),
        f"{int(score['lesion_count'])} lesion(s), total MTV {score['total_mtv_ml']:.1f} mL   " + "   ".join(surv),
        f"Signature SHA-256 {signature_sha256}",
    ]
    text.text(0.0, 0.9, "\n".join(lines), va="top", fontsize=10, family="monospace")
    fig.suptitle(f"Prognostic signature: patient {score['subject_id']}", fontsize=12)
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format=out.suffix.lstrip(".") or "png")
    plt.close(fig)
