"""The organ label convention of physiological-uptake masks, and organ overlap scores.

An ``organs`` image labels the organs whose FDG uptake is physiological, never tumour:

======  =========
label   organ
======  =========
1       brain
2       liver
3       kidneys
4       bladder
5       heart (myocardium)
======  =========

The simulator writes this convention, the threshold methods exclude every non-zero label,
PERCIST takes its reference in label 2, and the organ-aware U-Net learns and writes it.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

#: Organ label -> name.
ORGANS: dict[int, str] = {1: "brain", 2: "liver", 3: "kidneys", 4: "bladder", 5: "heart"}
#: PERCIST's reference organ.
LIVER_LABEL = 2


def organ_dice(predicted: np.ndarray, reference: np.ndarray,
               labels: Sequence[int] = tuple(ORGANS)) -> dict[str, float]:
    """Dice of each organ label between two organ images (NaN where both lack the organ)."""
    out = {}
    for label in labels:
        p, r = predicted == label, reference == label
        denominator = int(p.sum()) + int(r.sum())
        out[ORGANS.get(label, str(label))] = 2.0 * float((p & r).sum()) / denominator if denominator else float("nan")
    return out


def check_organ_labels(organs: np.ndarray) -> list[int]:
    """Labels of an organ image outside :data:`ORGANS` (0 is background)."""
    present = np.unique(organs)
    return [int(v) for v in present if v != 0 and int(v) not in ORGANS]
