"""Reference (expert) lesion masks used as the segmentation.

A study with expert lesion masks can take them as its segmentation for features and models
(``segmentation.method: reference``): the sheet's ``mask`` (label image, DICOM-SEG or RTSTRUCT)
is brought onto the PET grid and its connected components become the lesions, numbered like
every other method's (raster order of each lesion's first voxel, components under
``min_volume_ml`` dropped).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from biomarkers.io.images import read_image, spacing_zyx_mm, to_array
from biomarkers.imaging.masks import read_mask
from biomarkers.segment.threshold import label_components


def reference_lesions(pet_path: str | Path, mask_path: str | Path, min_volume_ml: float = 0.0,
                      subject_id: str | None = None) -> tuple[np.ndarray, sitk.Image]:
    """Labelled lesions (uint16, 1..n) of a reference mask on the PET grid, and the PET image."""
    pet = read_image(pet_path, subject_id, "pet")
    mask = read_mask(mask_path, pet, subject_id, reference_path=pet_path)
    return label_components(to_array(mask) > 0, spacing_zyx_mm(pet), min_volume_ml), pet
