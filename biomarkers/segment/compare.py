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
from biomarkers.imaging.masks import read_mask
from biomarkers.io.subjects import check_subject_files, read_subjects
from biomarkers.segment.organs import organ_dice
from biomarkers.segment.plausibility import check_segmentation
from biomarkers.segment.quality import autopet_metrics
from biomarkers.segment.threshold import METHODS, segment_lesions


#: Suffix of a threshold method's name when it ran without the organ masks.
NO_ORGANS = " -organs"
#: Suffix of a threshold method's name when it ran with the organs predicted by method NAME.
PREDICTED_ORGANS = " +{name}-organs"


def _predicted_image(name: str, pattern: str, sid: str, pet, pet_path) -> np.ndarray:
    """One subject's label image of a predicted method (lesions or organs), on the PET grid."""
    path = Path(pattern.replace("{subject}", str(sid)))
    if not path.is_file():
        raise InputError(f"no {name} segmentation", sid, path)
    image = read_image(path, sid, "mask")
    check_same_geometry(pet, image, pet_path, path, sid)
    return to_array(image)


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
                    predicted: Mapping[str, str] | None = None, without_organs: bool = False,
                    predicted_organs: Mapping[str, str] | None = None) -> pd.DataFrame:
    """autoPET metrics of every method on every subject of ``cohort`` with a reference ``mask``.

    With ``exclude_organs`` the threshold methods drop the uptake inside the sheet's organ
    masks; ``without_organs`` adds each threshold method run without them, named
    ``<spec>`` + :data:`NO_ORGANS` (what a threshold gives where no organ segmentation exists),
    except PERCIST, whose threshold needs the liver.

    The reference may be a label image on the PET grid, a DICOM-SEG or an RTSTRUCT.
    ``predicted`` maps a method name to a path pattern of its label images with ``{subject}``
    (e.g. ``results/unet/{subject}_lesions.nii.gz``); each must lie on the PET grid.
    ``predicted_organs`` maps a method name to a pattern of its organ label images: every
    threshold method (PERCIST included: the liver is predicted too) runs once more excluding
    those organs, named ``<spec>`` + :data:`PREDICTED_ORGANS`.

    Returns one row per subject and method: ``subject_id``, ``center``, ``method``, ``organs``
    (what the method knew of the anatomy: ``oracle`` = the sheet's organ masks, ``none``,
    ``predicted``, or ``learnt`` for a predicted segmentation), the columns of
    :func:`biomarkers.segment.quality.autopet_metrics`, then ``organ_share`` and ``flagged`` of
    :func:`biomarkers.segment.plausibility.check_segmentation` (measured against the sheet's
    organ masks when they are used).
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
        pet = read_image(subj["pet"], sid, "pet")
        ref = read_mask(subj["mask"], pet, sid, reference_path=subj["pet"])  # any format, on the PET grid
        organs = None
        if exclude_organs:
            organ_image = read_image(subj["organs"], sid, "mask")
            check_same_geometry(pet, organ_image, subj["pet"], subj["organs"], sid)
            organs = to_array(organ_image)
        suv, reference, spacing = to_array(pet).astype(np.float64), to_array(ref), spacing_zyx_mm(pet)
        runs = [(spec, organs, "oracle" if exclude_organs else "none") for spec in parsed]
        if without_organs and exclude_organs:
            # PERCIST's threshold is taken in the liver, which only the organ masks give
            runs += [((spec + NO_ORGANS, name, kwargs), None, "none")
                     for spec, name, kwargs in parsed if name != "percist"]
        for organ_name, pattern in (predicted_organs or {}).items():
            guess = _predicted_image(organ_name, pattern, sid, pet, subj["pet"])
            runs += [((spec + PREDICTED_ORGANS.format(name=organ_name), name, kwargs), guess, "predicted")
                     for spec, name, kwargs in parsed]
        outcomes = []
        for (spec, name, kwargs), organ_array, knew in runs:
            options = {"threshold_suv": threshold_suv, **kwargs}
            try:
                labels = segment_lesions(suv, spacing, name, min_volume_ml=min_volume_ml, organs=organ_array,
                                         **options)
            except ValueError as exc:
                if knew != "predicted":
                    raise
                # e.g. PERCIST where the predicted organs hold no liver: the method finds nothing here
                # and is scored so (Dice 0, every lesion missed), not left out of the means
                tqdm.write(f"{sid}: {spec}: {exc}; scored as an empty segmentation")
                labels = np.zeros(suv.shape, np.uint16)
            outcomes.append((spec, knew, labels))
        for name, pattern in (predicted or {}).items():
            outcomes.append((name, "learnt", _predicted_image(name, pattern, sid, pet, subj["pet"])))
        for spec, knew, labels in outcomes:
            check = check_segmentation(labels, spacing, organs)
            rows.append({"subject_id": sid, "center": subj["center"], "method": spec, "organs": knew,
                         **autopet_metrics(labels, reference, spacing),
                         "organ_share": check.organ_share, "flagged": check.flagged})
    return pd.DataFrame(rows)


def organ_scores(subjects_path: str | Path, cohort: str, name: str, pattern: str) -> pd.DataFrame:
    """Dice of each organ of a method's predicted organ images against the sheet's organ masks.

    Returns one row per subject of ``cohort``: ``subject_id``, ``center``, ``method``, then one
    column per organ of :data:`biomarkers.segment.organs.ORGANS`.
    """
    sheet = read_subjects(subjects_path, required=["subject_id", "cohort", "center", "pet", "organs"])
    members = sheet[sheet["cohort"] == cohort]
    if members.empty:
        raise SubjectsSheetError(f"no subject has cohort {cohort!r}", path=subjects_path)
    check_subject_files(members, ["pet", "organs"], subjects_path)
    rows = []
    for _, subj in members.iterrows():
        sid = subj["subject_id"]
        pet = read_image(subj["pet"], sid, "pet")
        truth = read_image(subj["organs"], sid, "mask")
        check_same_geometry(pet, truth, subj["pet"], subj["organs"], sid)
        guess = _predicted_image(name, pattern, sid, pet, subj["pet"])
        rows.append({"subject_id": sid, "center": subj["center"], "method": name,
                     **organ_dice(guess, to_array(truth))})
    return pd.DataFrame(rows)
