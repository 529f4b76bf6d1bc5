"""File names the stages agree on: where a subject's lesion mask lies in a masks folder."""
from __future__ import annotations

from pathlib import Path

from biomarkers.errors import InputError

#: A subject's lesion label image in a masks folder (``segment`` writes it, ``embed`` and
#: ``lesion-patches`` read it).
MASK_NAME = "{subject_id}_lesions.nii.gz"


def lesion_mask_path(masks: str | Path, subject_id: str) -> Path:
    """The lesion mask of ``subject_id``: ``masks`` formatted if it holds ``{subject_id}``, else
    ``masks / "<subject_id>_lesions.nii.gz"`` for a folder."""
    text = str(masks)
    if "{subject_id}" in text:
        return Path(text.format(subject_id=subject_id))
    if not Path(text).is_dir():
        raise InputError("masks must be a folder or a file pattern containing {subject_id}", path=text)
    return Path(text) / MASK_NAME.format(subject_id=subject_id)
