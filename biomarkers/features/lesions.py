"""Per-lesion feature table of one subject: PET metrics plus pyradiomics."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from biomarkers.features.pet import pet_metrics
from biomarkers.features.radiomics import make_extractor, radiomics_features
from biomarkers.imaging.masks import label_array
from biomarkers.io.images import read_image_pair, spacing_zyx_mm, to_array
from biomarkers.io.provenance import file_record


#: What :func:`image_lesion_features` does with a lesion pyradiomics cannot use.
UNUSABLE = ("missing", "drop", "raise")


def lesion_features(image_path: str | Path, mask_path: str | Path, subject_id: str,
                    params_path: str | Path | None = None, progress: bool = False,
                    image_kind: str = "pet", unusable: str = "missing") -> tuple[pd.DataFrame, dict]:
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
    image_kind : {"pet", "ct"}
        What the image holds, for the checks of :func:`biomarkers.io.images.read_image`.
    unusable : {"missing", "drop", "raise"}
        A lesion pyradiomics cannot use (see :func:`image_lesion_features`); by default its
        PET metrics stay and its texture is missing.

    Returns
    -------
    table : DataFrame
        PET metrics (:data:`biomarkers.features.pet.PET_COLUMNS`), intensity-volume histogram
        features (:data:`biomarkers.features.ivh.IVH_COLUMNS`, 0.1 SUV bins), lesion centroids in mm,
        then pyradiomics' columns.
    metadata : dict
        Provenance for the parquet file (inputs, pyradiomics settings).
    """
    image, mask = read_image_pair(image_path, mask_path, subject_id, image_kind)
    table, settings = image_lesion_features(image, mask, subject_id, params_path, mask_path, progress, unusable)
    metadata: dict = {"subject_id": subject_id, "image": file_record(image_path), "mask": file_record(mask_path)}
    metadata.update(settings)
    return table, metadata


def image_lesion_features(image: sitk.Image, mask: sitk.Image, subject_id: str,
                          params_path: str | Path | None = None, mask_path: str | Path | None = None,
                          progress: bool = False, unusable: str = "missing") -> tuple[pd.DataFrame, dict]:
    """:func:`lesion_features` on images in memory that share one voxel grid.

    Parameters
    ----------
    image, mask : SimpleITK.Image
        SUV image and lesion label image on the same grid (not checked here).
    subject_id : str
        Written to the table and used in error messages.
    params_path : str or Path, optional
        pyradiomics parameter file; without it only the PET metrics are computed.
    mask_path : str or Path, optional
        The mask's file, for error messages.
    unusable : {"missing", "drop", "raise"}
        A lesion pyradiomics refuses (too small for the parameter file's resampling, a single
        voxel, a line of voxels): ``missing`` (default) keeps its PET metrics and leaves its
        pyradiomics columns missing (NaN), recording the reason under ``texture_missing``;
        ``drop`` leaves the lesion out, listed under ``unusable_lesions`` (the stability
        analysis, which compares the same lesions across conditions); ``raise`` raises
        :class:`InputError` naming the label.

    Returns
    -------
    table : DataFrame
        ``subject_id``, ``lesion_id``, PET metrics, centroids, pyradiomics' columns.
    settings : dict
        ``{"radiomics": pyradiomics settings}`` when pyradiomics ran, with ``texture_missing``
        (``{label: reason}``) or ``unusable_lesions``; empty otherwise.
    """
    if unusable not in UNUSABLE:
        raise ValueError(f"unusable must be one of {', '.join(UNUSABLE)}, not {unusable!r}")
    suv = to_array(image).astype(np.float64)
    labels = label_array(mask, subject_id, mask_path)

    def index_to_mm(index_zyx: np.ndarray) -> tuple[float, float, float]:
        return mask.TransformContinuousIndexToPhysicalPoint([float(i) for i in index_zyx[::-1]])

    table = pet_metrics(suv, labels, spacing_zyx_mm(image), index_to_mm)
    settings: dict = {}
    if params_path is not None and len(table):
        make_extractor(params_path)  # a bad parameter file is an error, not an unusable lesion
        refused: dict[int, str] | None = None if unusable == "raise" else {}
        rad, settings["radiomics"] = radiomics_features(image, mask, table["lesion_id"], params_path,
                                                        subject_id, mask_path, progress, refused)
        if unusable == "drop":
            settings["unusable_lesions"] = sorted(refused)
            table = table[~table["lesion_id"].isin(refused)].reset_index(drop=True)
        elif unusable == "missing":
            settings["texture_missing"] = {str(k): v for k, v in sorted(refused.items())}
        table = table.merge(rad, on="lesion_id", how="left", validate="one_to_one")
    table.insert(0, "subject_id", subject_id)
    return table, settings
