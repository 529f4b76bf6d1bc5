"""One subject's lesion segmentation from files to a labelled mask file: what ``biomarkers
segment`` and ``biomarkers predict`` run, so that both write the same mask for the same inputs."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from biomarkers.errors import InputError
from biomarkers.segment.plausibility import Plausibility, check_segmentation


@dataclass(frozen=True)
class SegmentSettings:
    """How lesions are found: the method and its parameters (``biomarkers segment``'s flags)."""

    method: str = "relative"
    threshold: float = 2.5
    fraction: float = 0.41
    min_volume_ml: float = 0.5
    seed_radius_mm: float = 6.0
    liver_label: int = 2
    #: unet: checkpoint, lesion probability threshold, left-right test-time mirroring.
    model: Path | None = None
    probability: float = 0.5
    tta: bool = False
    max_total_ml: float = 1000.0


def segment_subject(pet: Path, out: Path, settings: SegmentSettings, *, ct: Path | None = None,
                    organs: Path | None = None, reference: Path | None = None, check_organs: Path | None = None,
                    organs_out: Path | None = None, subject_id: str | None = None) -> tuple[int, Plausibility]:
    """Segment one subject's lesions into ``out`` (written atomically); return the lesion count and
    the plausibility check (lesions in organs, implausible total volume) against ``check_organs``
    (default ``organs``).

    ``organs``: organ label image excluded by the threshold methods; ``reference``: the expert mask
    of ``method="reference"``; ``ct``/``organs_out``: the U-Net's CT input and predicted organs.
    """
    from biomarkers.io.images import check_same_geometry, like, read_image, read_image_pair, spacing_zyx_mm, to_array

    organ_array = None
    if settings.method == "unet":
        from biomarkers.segment.unet_run import segment_with_unet

        if settings.model is None:
            raise InputError("--method unet needs --model CHECKPOINT (from `biomarkers train-unet`)", subject_id, pet)
        segment_with_unet(pet, ct, settings.model, out, settings.probability, settings.min_volume_ml,
                          subject_id=subject_id, organs_out=organs_out, flips=[(2,)] if settings.tta else [])
        image, label_image = read_image_pair(pet, out, subject_id)
        labels = to_array(label_image)
    elif settings.method == "reference":
        from biomarkers.segment.reference import reference_lesions

        if reference is None:
            raise ValueError("--method reference needs --reference MASK (the expert lesion mask)")
        labels, image = reference_lesions(pet, reference, settings.min_volume_ml, subject_id)
        _write(like(labels, image), out)
    else:
        from biomarkers.segment.threshold import segment_lesions

        if organs is not None:
            image, organ_image = read_image_pair(pet, organs, subject_id)
            organ_array = to_array(organ_image)
        else:
            image = read_image(pet, subject_id, "pet")
        try:
            labels = segment_lesions(to_array(image).astype(np.float64), spacing_zyx_mm(image), settings.method,
                                     settings.threshold, settings.fraction, settings.min_volume_ml, organ_array,
                                     settings.liver_label, settings.seed_radius_mm)
        except ValueError as exc:
            raise InputError(str(exc), subject_id, pet) from None
        _write(like(labels, image), out)
    check_path = check_organs or organs
    if check_path is not None and (organ_array is None or check_path != organs):  # not read above
        check_image = read_image(check_path, subject_id, "mask")
        check_same_geometry(image, check_image, pet, check_path, subject_id)
        organ_array = to_array(check_image)
    check = check_segmentation(labels, spacing_zyx_mm(image), None if check_path is None else organ_array,
                               max_total_ml=settings.max_total_ml)
    return int(labels.max()), check


def _write(image, out: Path) -> None:
    from biomarkers.io.images import write_image

    write_image(image, out)
