"""Report figure of the end-to-end model's explanations: each lesion's PET with its occlusion map."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from biomarkers.report.plots import save_figure  # noqa: E402

MAX_LESIONS = 4


def explanation_plot(cases: Sequence[dict], path: str | Path, title: str) -> None:
    """One row per patient (highest risks first, then lowest): for up to 4 lesions (largest contribution
    first) the PET patch's axial maximum projection in grey with the occlusion map's axial maximum
    overlaid (red: covering this part lowers the risk), titled with the attention weight and the
    leave-one-out contribution to the log-hazard."""
    rows = max(1, len(cases))
    fig, axes = plt.subplots(rows, MAX_LESIONS, figsize=(2.6 * MAX_LESIONS, 2.6 * rows), squeeze=False)
    for r, case in enumerate(cases):
        order = np.argsort(-case["contribution"], kind="stable")[:MAX_LESIONS]
        for c in range(MAX_LESIONS):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(order):
                ax.axis("off")
                continue
            k = order[c]
            pet = case["patches"][k][0].max(axis=0)
            occ = case["maps"][k].max(axis=0)
            ax.imshow(pet, cmap="gray_r", origin="lower")
            limit = max(float(np.abs(case["maps"][k]).max()), 1e-9)
            ax.imshow(occ, cmap="Reds", origin="lower", alpha=0.45, vmin=0, vmax=limit)
            ax.set_title(f"lesion {case['lesions'][k]}: a={case['attention'][k]:.2f}, "
                         f"\u0394={case['contribution'][k]:+.2f}", fontsize=7)
        kind = "high" if case["top"] else "low"
        axes[r, 0].set_ylabel(f"{case['subject_id']}\n{kind} risk {case['risk']:+.2f}", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)
