"""Bodies of the U-Net command-line verbs: train from a subjects sheet, segment one volume.

Plain functions with typed arguments; the CLI parses flags and calls them. User mistakes
raise :class:`biomarkers.errors.InputError` (or a subclass) naming the subject and the file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from biomarkers.segment.unet_infer import LESION_MARGIN_MM, label_lesions, organ_labels, unet_predict
from biomarkers.deep.training import resolve_device
from biomarkers.deep.unet import load_unet
from biomarkers.segment.unet_settings import UNetTraining
from biomarkers.segment.unet_train import read_case, train_unet
from biomarkers.errors import InputError, SubjectsSheetError
from biomarkers.io.images import check_same_geometry, like, read_image, spacing_zyx_mm, to_array, write_image
from biomarkers.io.subjects import check_subject_files, read_subjects


def train_unet_from_sheet(subjects_path: str | Path, cohort: str, out: str | Path,
                          settings: UNetTraining = UNetTraining(), *, use_ct: bool = True,
                          use_organs: bool | None = None, progress: bool = True) -> list[float]:
    """Train the U-Net on the reference lesion masks of one cohort of a subjects sheet.

    Parameters
    ----------
    subjects_path : str or Path
        Subjects sheet with columns ``subject_id``, ``cohort``, ``pet``, ``mask`` (reference
        lesion labels, non-zero = lesion) and, with ``use_ct``, ``ct``; paths relative to the sheet.
    cohort : str
        Value of the ``cohort`` column whose subjects are trained on (e.g. ``train``).
    out : str or Path
        Checkpoint file (see :mod:`biomarkers.segment.unet_train`).
    settings : UNetTraining
        How the network is trained (:func:`biomarkers.segment.unet_train.train_unet`).
    use_ct : bool
        Train on PET and CT (two channels) or on PET alone.
    use_organs : bool, optional
        Train the organ-aware network on the sheet's ``organs`` masks as well; None (default)
        does so when the sheet has an ``organs`` column, False trains on the lesions alone.
    progress : bool
        Show a progress bar over epochs.

    Returns
    -------
    list of float
        Mean training loss per epoch.

    Raises
    ------
    SubjectsSheetError
        Missing column, or no subject in ``cohort``.
    InputError
        A subject's file is missing or unreadable, or its CT or mask is on another grid.
    """
    columns = ["pet", "mask"] + (["ct"] if use_ct else [])
    sheet = read_subjects(subjects_path, required=["subject_id", "cohort", *columns])
    if use_organs is None:
        use_organs = "organs" in sheet.columns
    if use_organs:
        if "organs" not in sheet.columns:
            raise SubjectsSheetError("the organ-aware U-Net needs an organs column (organ masks); "
                                     "add it or train on the lesions alone", path=subjects_path)
        columns.append("organs")
    members = sheet[sheet["cohort"] == cohort]
    if members.empty:
        found = ", ".join(sorted(sheet["cohort"].dropna().unique())) or "none"
        raise SubjectsSheetError(f"no subject in cohort {cohort!r} (cohorts: {found})", path=subjects_path)
    check_subject_files(members, columns, subjects_path)
    cases = [read_case(row.pet, row.ct if use_ct else None, row.mask, row.subject_id,
                       row.organs if use_organs else None)
             for row in members.itertuples(index=False)]
    return train_unet(cases, out, settings, case_ids=list(members["subject_id"]), progress=progress)


def segment_with_unet(pet_path: str | Path, ct_path: str | Path | None, model_path: str | Path,
                      out_path: str | Path, threshold: float = 0.5, min_volume_ml: float = 0.5, *,
                      device: str = "auto", overlap: float = 0.5, batch_size: int = 2,
                      subject_id: str | None = None, organs_out: str | Path | None = None,
                      flips: Sequence[Sequence[int]] = ()) -> int:
    """Segment lesions of one PET (and CT) volume with a trained U-Net; write the label image.

    Parameters
    ----------
    pet_path : str or Path
        SUV volume.
    ct_path : str or Path or None
        CT in HU on the PET grid; required by models trained with CT, refused by PET-only ones.
    model_path : str or Path
        Checkpoint written by :func:`biomarkers.segment.unet_train.train_unet`.
    out_path : str or Path
        Labelled lesion mask (uint16, 1..n, 0 background) on the PET grid, written atomically.
    threshold : float
        Lesion probability threshold.
    min_volume_ml : float
        Smaller components are dropped.
    device : {"auto", "cpu", "cuda"}
        Where to run the network.
    overlap, batch_size
        Sliding-window settings (:func:`biomarkers.segment.unet_infer.sliding_window_probabilities`).
    subject_id : str, optional
        Used in error messages.
    organs_out : str or Path, optional
        Also write the predicted organ label image (labels of :mod:`biomarkers.segment.organs`,
        0 on the lesions and within :data:`~biomarkers.segment.unet_infer.LESION_MARGIN_MM` of them, stray
        pieces tidied by :func:`~biomarkers.segment.unet_infer.tidy_organs`); the network must be organ-aware.
    flips : sequence of sequence of int
        Test-time mirroring (:func:`biomarkers.segment.unet_infer.sliding_window_probabilities`).

    Returns
    -------
    int
        Number of lesions written.
    """
    model, info = load_unet(model_path, str(resolve_device(device)))
    if organs_out is not None and not info["organ_labels"]:
        raise InputError("this U-Net was trained on lesions alone and predicts no organs; train it on a sheet "
                         "with an organs column, or leave out the organ output", subject_id, model_path)
    needs_ct = model.in_channels == 2
    if needs_ct and ct_path is None:
        raise InputError(f"the U-Net in {model_path} was trained on PET and CT; give the CT", subject_id, pet_path)
    if not needs_ct and ct_path is not None:
        raise InputError(f"the U-Net in {model_path} was trained on PET alone; leave out the CT",
                         subject_id, ct_path)
    pet = read_image(pet_path, subject_id, "pet")
    hu = None
    if needs_ct:
        ct = read_image(ct_path, subject_id, "ct")
        check_same_geometry(pet, ct, pet_path, ct_path, subject_id)
        hu = to_array(ct)
    spacing = spacing_zyx_mm(pet)
    lesion, classes = unet_predict(to_array(pet), hu, spacing, model, info, overlap=overlap,
                                   batch_size=batch_size, flips=flips)
    labels = label_lesions(lesion, spacing, threshold, min_volume_ml)
    if organs_out is not None:
        organs = organ_labels(classes, labels, info["organ_labels"], spacing, LESION_MARGIN_MM, tidy=True)
        write_image(like(organs, pet), organs_out)
    write_image(like(labels, pet), out_path)
    return int(labels.max())
