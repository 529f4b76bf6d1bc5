"""The pretraining comparison of the end-to-end CNN (:mod:`biomarkers.survival.pretraining`) from
the cohorts' files: the training and validation tables and patch archives, and every archive the
encoder learns from without outcomes."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from biomarkers.deep.lesion_bags import read_bags
from biomarkers.io.atomic import write_json
from biomarkers.report.model_plots import pretraining_plot
from biomarkers.survival.bundle import read_feature_table
from biomarkers.survival.pretraining import PretrainingSettings, compare_pretraining
from biomarkers.survival.spec import ModelSpec


def pretraining_to_files(train_path: str | Path, train_patches: str | Path, validation_path: str | Path,
                         validation_patches: str | Path, pretrain_patches: Sequence[str | Path], spec: ModelSpec,
                         settings: PretrainingSettings, out: str | Path, plot: str | Path | None = None,
                         training_cohort: str = "train", label: str = "") -> dict:
    """:func:`compare_pretraining` from files; writes the JSON and an optional figure."""

    train = read_feature_table(train_path, training_cohort=training_cohort)
    validation = read_feature_table(validation_path)
    archives = [read_bags(p) for p in pretrain_patches]
    patches = np.concatenate([a.patches for a in archives])
    result = compare_pretraining(train, read_bags(train_patches), validation, read_bags(validation_patches), patches,
                                 spec, settings, progress=True)
    if plot is not None:
        pretraining_plot(result, plot, f"Pretrained encoder vs none, {label}".rstrip(", "))
    write_json(result, out)
    return result
