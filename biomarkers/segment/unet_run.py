"""Bodies of the U-Net command-line verbs: train from a subjects sheet, segment one volume.

Plain functions with typed arguments; the CLI parses flags and calls them. User mistakes
raise :class:`biomarkers.errors.InputError` (or a subclass) naming the subject and the file.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

from biomarkers.deep.patches import Augmentation
from biomarkers.segment.unet_infer import LESION_MARGIN_MM, label_lesions, organ_labels, unet_predict
from biomarkers.deep.training import resolve_device
from biomarkers.deep.unet import load_unet
from biomarkers.segment.unet_train import read_case, train_unet
from biomarkers.errors import InputError, SubjectsSheetError
from biomarkers.io.images import check_same_geometry, like, read_image, spacing_zyx_mm, to_array, write_image
from biomarkers.io.subjects import check_subject_files, read_subjects


def train_unet_from_sheet(subjects_path: str | Path, cohort: str, out: str | Path, epochs: int,
                          patches_per_epoch: int, seed: int, use_ct: bool = True, *, batch_size: int = 2,
                          lr: float = 1e-3, device: str = "auto", patch_size: Sequence[int] = (48, 48, 48),
                          base_channels: int = 8, depth: int = 3, dropout: float = 0.0,
                          lesion_fraction: float = 0.5, hot_fraction: float = 0.0,
                          progress: bool = True, use_organs: bool | None = None,
                          spacing_mm: Sequence[float] | None = None, organ_fraction: float = 0.0,
                          blur_fwhm_mm: float = 0.0, blur_probability: float = 0.5) -> list[float]:
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
    epochs, patches_per_epoch, seed, batch_size, lr, device, patch_size, base_channels, depth,
    dropout, lesion_fraction, hot_fraction, organ_fraction, progress
        See :func:`biomarkers.segment.unet_train.train_unet`.
    use_ct : bool
        Train on PET and CT (two channels) or on PET alone.
    use_organs : bool, optional
        Train the organ-aware network on the sheet's ``organs`` masks as well; None (default)
        does so when the sheet has an ``organs`` column, False trains on the lesions alone.
    spacing_mm : sequence of float, optional
        Voxel spacing (z, y, x) the network works at; None: each image's own grid.
    blur_fwhm_mm, blur_probability : float
        Resolution augmentation: this share of the patches has its PET blurred by a Gaussian of
        FWHM up to ``blur_fwhm_mm`` per axis (:class:`~biomarkers.deep.patches.Augmentation`), so
        that a centre with a coarser scanner than the training centres' is segmented as well;
        0 (default) does not blur. Needs ``spacing_mm``.

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
    if blur_fwhm_mm < 0:
        raise ValueError(f"blur_fwhm_mm must be non-negative, got {blur_fwhm_mm}")
    augmentation = Augmentation()
    if blur_fwhm_mm > 0:
        if spacing_mm is None:
            raise ValueError("the blur augmentation (blur_fwhm_mm) needs the network's voxel spacing (spacing_mm)")
        augmentation = replace(augmentation, blur_probability=blur_probability,
                               max_blur_fwhm_voxels=tuple(blur_fwhm_mm / float(s) for s in spacing_mm))
    check_subject_files(members, columns, subjects_path)
    cases = [read_case(row.pet, row.ct if use_ct else None, row.mask, row.subject_id,
                       row.organs if use_organs else None)
             for row in members.itertuples(index=False)]
    return train_unet(cases, out, epochs, patches_per_epoch, batch_size, lr, seed, device, patch_size,
                      base_channels=base_channels, depth=depth, dropout=dropout,
                      lesion_fraction=lesion_fraction, hot_fraction=hot_fraction,
                      case_ids=list(members["subject_id"]), progress=progress, spacing_mm=spacing_mm,
                      organ_fraction=organ_fraction, augmentation=augmentation)


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
