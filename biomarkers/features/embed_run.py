"""File-level entry points behind ``biomarkers embed`` and autoencoder training.

:func:`train_autoencoder_from_sheet` reads the lesion patches of every subject of one
(training) cohort of a subjects sheet and trains :mod:`biomarkers.deep.autoencoder` on them;
:func:`embed_to_parquet` writes one subject's ``deep_*`` lesion table. Inputs are checked
before any work, and a missing file or a mask on another grid raises
:class:`~biomarkers.errors.InputError` naming the subject and the file.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from biomarkers.deep.autoencoder import save_autoencoder, train_autoencoder, training_record
from biomarkers.deep.defaults import AutoencoderTraining
from biomarkers.deep.crops import PatchSpec
from biomarkers.features.embed import embed_lesions
from biomarkers.deep.lesion_bags import bags_from_sheet
from biomarkers.errors import InputError
from biomarkers.io.atomic import write_parquet


def train_autoencoder_from_sheet(subjects_path: str | Path, cohort: str, masks: str | Path, out: str | Path,
                                 patch: PatchSpec = PatchSpec(),
                                 settings: AutoencoderTraining = AutoencoderTraining()) -> dict:
    """Train the patch autoencoder on every lesion of one cohort and write its checkpoint.

    Parameters
    ----------
    subjects_path : str or Path
        Subjects sheet (``subject_id``, ``cohort``, ``pet``, and ``ct`` when the patch has it).
    cohort : str
        The training cohort; no other subject's image is read.
    masks : str or Path
        Folder of ``<subject_id>_lesions.nii.gz`` label images, or a pattern such as
        ``"seg/{subject_id}.nii.gz"``.
    out : str or Path
        Checkpoint to write (see :func:`biomarkers.deep.autoencoder.save_autoencoder`).
    patch : PatchSpec
        The patch: size, voxels and channels (:func:`biomarkers.deep.crops.lesion_patches`).
    settings : AutoencoderTraining
        How the autoencoder trains (:func:`biomarkers.deep.autoencoder.train_autoencoder`).

    Returns
    -------
    dict
        ``subjects`` (those with lesions), ``subjects_without_lesions``, ``n_patches``, ``history``.

    Raises
    ------
    SubjectsSheetError
        No subject in ``cohort``, or a column is missing.
    InputError
        A subject's PET, CT or mask file is missing, or an image is on another grid.
    """
    bags = bags_from_sheet(subjects_path, cohort, masks, patch, progress=False)
    with_lesions = set(bags.subject_id)
    used = [sid for sid in bags.subjects if sid in with_lesions]
    empty = [sid for sid in bags.subjects if sid not in with_lesions]
    if not used:
        raise InputError(f"no lesion in any mask of cohort {cohort!r}; nothing to train on", path=masks)
    x = bags.patches
    model, history = train_autoencoder(x, settings, patch.channels)
    training = training_record(settings, len(x))
    training.update(cohort=cohort, subjects_without_lesions=empty)
    save_autoencoder(model, out, patch, history, training, used)
    return {"subjects": used, "subjects_without_lesions": empty, "n_patches": int(len(x)), "history": history}


def embed_to_parquet(image: str | Path, ct: str | Path | None, mask: str | Path, subject_id: str,
                     checkpoint: str | Path, out: str | Path, device: str = "auto") -> pd.DataFrame:
    """Write :func:`biomarkers.features.embed.embed_lesions`'s table (and metadata) to ``out``.

    Parameters
    ----------
    image, ct, mask : str or Path
        PET (SUV), CT (HU; ``None`` for encoders without a CT channel) and lesion labels, one grid.
    subject_id : str
        Written to the table and named in errors.
    checkpoint : str or Path
        Autoencoder or U-Net checkpoint, or TorchScript archive.
    out : str or Path
        Parquet file, written atomically; its schema metadata holds the provenance.
    device : {"auto", "cpu", "cuda"}
        ``"cpu"`` gives tables bit-identical across machines.

    Returns
    -------
    DataFrame
        The table written.
    """
    for label, path in (("PET", image), ("lesion mask", mask), ("encoder checkpoint", checkpoint)):
        if not Path(path).is_file():
            raise InputError(f"{label} file does not exist", subject_id, path)
    if ct is not None and not Path(ct).is_file():
        raise InputError("CT file does not exist", subject_id, ct)
    table, metadata = embed_lesions(image, ct, mask, subject_id, checkpoint, device=device)
    write_parquet(table, out, metadata)
    return table
