"""Score several segmentation methods against the reference masks of a cohort.

Threshold methods are run here; any other method (the 3D U-Net, another tool) is scored from
its predicted label images, one file per subject named by a pattern with ``{subject}``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from biomarkers.errors import InputError, SubjectsSheetError
from biomarkers.io.images import check_same_geometry, read_image, spacing_zyx_mm, to_array
from biomarkers.io.masks import read_mask
from biomarkers.io.subjects import check_subject_files, read_subjects
from biomarkers.segment.quality import autopet_metrics
from biomarkers.segment.threshold import METHODS, segment_lesions


#: Suffix of a threshold method's name when it ran without the organ masks.
NO_ORGANS = " -organs"


def parse_method(spec: str) -> tuple[str, dict]:
    """``fixed:4.0`` -> ("fixed", {"threshold_suv": 4.0}); ``relative:0.41``,
    ``relative-maxima:0.5`` set the fraction; ``percist`` takes no value."""
    name, _, value = spec.partition(":")
    if name not in METHODS:
        raise ValueError(f"unknown segmentation method {name!r} in {spec!r}; choose one of {', '.join(METHODS)}")
    if name == "percist":
        if value:
            raise ValueError(f"percist takes no value, got {spec!r}")
        return name, {}
    if not value:
        raise ValueError(f"{spec!r}: give the {'threshold' if name == 'fixed' else 'fraction'}, e.g. {name}:"
                         f"{'2.5' if name == 'fixed' else '0.41'}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{spec!r}: {value!r} is not a number") from None
    return name, {"threshold_suv": number} if name == "fixed" else {"fraction": number}


def compare_methods(subjects_path: str | Path, cohort: str, methods: Sequence[str], threshold_suv: float = 2.5,
                    min_volume_ml: float = 0.5, exclude_organs: bool = True, progress: bool = False,
                    predicted: Mapping[str, str] | None = None, without_organs: bool = False) -> pd.DataFrame:
    """autoPET metrics of every method on every subject of ``cohort`` with a reference ``mask``.

    With ``exclude_organs`` the threshold methods drop the uptake inside the sheet's organ
    masks; ``without_organs`` adds each threshold method run without them, named
    ``<spec>`` + :data:`NO_ORGANS` (what a threshold gives where no organ segmentation exists),
    except PERCIST, whose threshold needs the liver.

    The reference may be a label image on the PET grid, a DICOM-SEG or an RTSTRUCT.
    ``predicted`` maps a method name to a path pattern of its label images with ``{subject}``
    (e.g. ``results/unet/{subject}_lesions.nii.gz``); each must lie on the PET grid.

    Returns one row per subject and method: ``subject_id``, ``center``, ``method``, then the
    columns of :func:`biomarkers.segment.quality.autopet_metrics`.
    """
    from tqdm import tqdm

    parsed = [(spec, *parse_method(spec)) for spec in methods]
    sheet = read_subjects(subjects_path)
    members = sheet[sheet["cohort"] == cohort]
    if members.empty:
        raise SubjectsSheetError(f"no subject has cohort {cohort!r}", path=subjects_path)
    check_subject_files(members, ["pet", "mask"] + (["organs"] if exclude_organs else []), subjects_path)
    rows = []
    for _, subj in tqdm(members.iterrows(), total=len(members), desc=f"segmentation quality {cohort}",
                        disable=not progress):
        sid = subj["subject_id"]
        pet = read_image(subj["pet"], sid)
        ref = read_mask(subj["mask"], pet, sid, reference_path=subj["pet"])  # any format, on the PET grid
        organs = None
        if exclude_organs:
            organ_image = read_image(subj["organs"], sid)
            check_same_geometry(pet, organ_image, subj["pet"], subj["organs"], sid)
            organs = to_array(organ_image)
        suv, reference, spacing = to_array(pet).astype(np.float64), to_array(ref), spacing_zyx_mm(pet)
        runs = [(spec, organs) for spec in parsed]
        if without_organs and exclude_organs:
            # PERCIST's threshold is taken in the liver, which only the organ masks give
            runs += [((spec + NO_ORGANS, name, kwargs), None) for spec, name, kwargs in parsed if name != "percist"]
        for (spec, name, kwargs), organ_array in runs:
            options = {"threshold_suv": threshold_suv, **kwargs}
            labels = segment_lesions(suv, spacing, name, min_volume_ml=min_volume_ml, organs=organ_array, **options)
            rows.append({"subject_id": sid, "center": subj["center"], "method": spec,
                         **autopet_metrics(labels, reference, spacing)})
        for name, pattern in (predicted or {}).items():
            path = Path(pattern.replace("{subject}", str(sid)))
            if not path.is_file():
                raise InputError(f"no {name} segmentation", sid, path)
            image = read_image(path, sid)
            check_same_geometry(pet, image, subj["pet"], path, sid)
            rows.append({"subject_id": sid, "center": subj["center"], "method": name,
                         **autopet_metrics(to_array(image), reference, spacing)})
    return pd.DataFrame(rows)
