"""Per-lesion feature table of one subject: PET metrics plus pyradiomics."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from biomarkers.errors import InputError
from biomarkers.features.pet import pet_metrics
from biomarkers.features.radiomics import radiomics_features
from biomarkers.io.provenance import file_record
from biomarkers.io.images import read_image_pair, spacing_zyx_mm, to_array


def lesion_features(image_path: str | Path, mask_path: str | Path, subject_id: str,
                    params_path: str | Path | None = None, progress: bool = False) -> tuple[pd.DataFrame, dict]:
    """One row per lesion label of ``mask_path``: ``subject_id``, ``lesion_id``, features.

    Parameters
    ----------
    image_path : str or Path
        SUV image.
    mask_path : str or Path
        Label image on the same grid (0 background, one label per lesion).
    subject_id : str
        Written to the table and used in error messages.
    params_path : str or Path, optional
        pyradiomics parameter file; without it only the PET metrics are computed.

    Returns
    -------
    table : DataFrame
        PET metrics (:data:`biomarkers.features.pet.PET_COLUMNS`), lesion centroids in mm,
        then pyradiomics' columns.
    metadata : dict
        Provenance for the parquet file (inputs, pyradiomics settings).
    """
    image, mask = read_image_pair(image_path, mask_path, subject_id)
    suv = to_array(image).astype(np.float64)
    labels = to_array(mask)
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.mod(labels, 1) == 0):
            raise InputError("mask is not a label image (non-integer values)", subject_id, mask_path)
        labels = labels.astype(np.int64)
    if labels.min() < 0:
        raise InputError("mask has negative labels", subject_id, mask_path)

    def index_to_mm(index_zyx: np.ndarray) -> tuple[float, float, float]:
        return mask.TransformContinuousIndexToPhysicalPoint([float(i) for i in index_zyx[::-1]])

    table = pet_metrics(suv, labels, spacing_zyx_mm(image), index_to_mm)
    metadata: dict = {"subject_id": subject_id, "image": file_record(image_path), "mask": file_record(mask_path)}
    if params_path is not None and len(table):
        rad, settings = radiomics_features(image, mask, table["lesion_id"], params_path, subject_id,
                                           mask_path, progress)
        table = table.merge(rad, on="lesion_id", how="left", validate="one_to_one")
        metadata["radiomics"] = settings
    table.insert(0, "subject_id", subject_id)
    return table, metadata
