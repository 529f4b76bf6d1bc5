"""Training, saving and loading of the segmentation :class:`~biomarkers.deep.unet.UNet3D`.

Two kinds of network:

* **lesion-only** (the training cases have no organ masks): one lesion logit, loss soft Dice
  (over all voxels of the batch, so that patches without lesion do not make it undefined) plus
  binary cross-entropy;
* **organ-aware** (every training case has an organ mask, labels of
  :data:`biomarkers.segment.organs.ORGANS`): classes background, brain, liver, kidneys,
  bladder, heart and lesion (a lesion voxel inside an organ is lesion), softmax; loss
  cross-entropy plus ``1 - soft Dice`` of the lesion class plus ``1 - mean soft Dice`` of the
  organ classes. Knowing the anatomy is what lets the network tell a hot lesion from the
  physiological uptake beside it (the winning autoPET III entry trained with organ labels
  the same way).

With ``spacing_mm`` set, every case is resampled to that voxel spacing before patches are
drawn (:mod:`biomarkers.deep.spacing`), and inference resamples the same way, so the network
sees the same physical scale at every centre.

Training draws lesion-balanced, augmented patches (:mod:`biomarkers.deep.patches`) from a
numpy ``Generator`` seeded with ``seed`` and initialises weights and dropout from
``torch.manual_seed(seed)`` inside a forked RNG with deterministic kernels
(:func:`biomarkers.deep.training.seeded_deterministic`). On the CPU the same cases,
settings, seed, torch version and thread count give the same weights and a byte-identical
checkpoint; on CUDA the run is reproducible in distribution, not bit for bit. The optimiser is
AdamW.

Checkpoint layout (a ``torch.save`` dict, loadable with ``weights_only=True``)::

    format          "biomarkers.unet3d/2" (format 1, lesion-only on the native grid, still loads)
    state_dict      weights (CPU tensors)
    model_config    UNet3D constructor arguments (UNet3D.config())
    classes         output classes: ["lesion"] or ["background", organ names..., "lesion"]
    organ_labels    organ-image label of each organ class (empty for lesion-only networks)
    spacing_mm      [z, y, x] spacing the network works at, or None (each image's own grid)
    normalisation   biomarkers.deep.normalise.normalisation_record(with_ct)
    patch_size      [z, y, x] training patch (and inference window) size in voxels
    training        epochs, patches_per_epoch, batch_size, lr, weight_decay, seed,
                    lesion_fraction, hot_fraction, augmentation, n_cases, case_ids, device
    torch_version   torch.__version__ of the training run
    loss_history    mean training loss per epoch
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from biomarkers.deep.normalise import input_channels, normalisation_record
from biomarkers.deep.patches import PatchSampler
from biomarkers.deep.spacing import resample_channels, resample_labels, target_shape
from biomarkers.deep.unet import CHECKPOINT_FORMAT, UNet3D
from biomarkers.errors import InputError
from biomarkers.io.atomic import atomic_path
from biomarkers.segment.unet_settings import UNetTraining
from biomarkers.io.images import check_same_geometry, read_image, spacing_zyx_mm, to_array
from biomarkers.segment.organs import ORGANS, check_organ_labels
from biomarkers.deep.training import resolve_device, seeded_deterministic

#: Classes of the organ-aware network (output channel order).
ORGAN_AWARE_CLASSES = ("background", *ORGANS.values(), "lesion")

ArrayCase = tuple[np.ndarray, Union[np.ndarray, None], np.ndarray]
FileCase = tuple[Union[str, Path], Union[str, Path, None], Union[str, Path]]


@dataclass
class Case:
    """One training case on the PET grid: SUV, HU (or None), lesion label, organ labels (or None)."""

    suv: np.ndarray
    hu: np.ndarray | None
    lesions: np.ndarray
    organs: np.ndarray | None = None
    spacing_mm: tuple[float, float, float] | None = None
    case_id: str | None = None


def read_case(pet_path: str | Path, ct_path: str | Path | None, mask_path: str | Path,
              subject_id: str | None = None, organs_path: str | Path | None = None) -> Case:
    """SUV, HU (or None), binary lesion label and organ labels (or None) of one case, on the PET grid.

    Raises
    ------
    InputError
        A file is missing or unreadable, or the organ image has labels outside the convention
        of :mod:`biomarkers.segment.organs` (naming subject and file).
    GeometryError
        The CT, the mask or the organ image is not on the PET grid.
    """
    pet = read_image(pet_path, subject_id, "pet")

    def on_grid(path: str | Path, kind: str = "mask") -> np.ndarray:
        image = read_image(path, subject_id, kind)
        check_same_geometry(pet, image, pet_path, path, subject_id)
        return to_array(image)

    hu = None if ct_path is None else on_grid(ct_path, "ct")
    organs = None
    if organs_path is not None:
        organs = on_grid(organs_path)
        unknown = check_organ_labels(organs)
        if unknown:
            raise InputError(f"organ labels {unknown} are not among "
                             f"{', '.join(f'{k} {v}' for k, v in ORGANS.items())}", subject_id, organs_path)
    return Case(to_array(pet), hu, (on_grid(mask_path) > 0).view(np.uint8), organs, spacing_zyx_mm(pet), subject_id)


def class_image(case: Case, organ_aware: bool) -> np.ndarray:
    """Training target of a case: lesion 0/1, or organ labels with lesion as the last class."""
    lesions = np.asarray(case.lesions) > 0
    if not organ_aware:
        return lesions.view(np.uint8)
    out = np.asarray(case.organs).astype(np.uint8, copy=True)
    out[lesions] = len(ORGAN_AWARE_CLASSES) - 1
    return out


def _as_case(case: Case | ArrayCase | FileCase, i: int, case_id: str | None) -> Case:
    if isinstance(case, Case):
        return case if case_id is None else Case(case.suv, case.hu, case.lesions, case.organs, case.spacing_mm, case_id)
    pet, ct, mask = case
    if isinstance(pet, (str, Path)):
        case_id = case_id or Path(pet).name
        return read_case(pet, ct, mask, case_id)
    suv, hu, label = np.asarray(pet), None if ct is None else np.asarray(ct), np.asarray(mask)
    case_id = case_id or f"case-{i}"
    if label.shape != suv.shape:
        raise ValueError(f"{case_id}: label shape {label.shape} differs from PET shape {suv.shape}")
    return Case(suv, hu, label, None, None, case_id)


def _prepare(cases: Sequence[Case | ArrayCase | FileCase], case_ids: Sequence[str] | None,
             spacing_mm: Sequence[float] | None) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[str], bool, bool]:
    """Normalised channels and class images of every case (resampled to ``spacing_mm`` when set),
    the case IDs, whether CT is used and whether the network is organ-aware."""
    if not cases:
        raise ValueError("no training cases")
    if case_ids is not None and len(case_ids) != len(cases):
        raise ValueError(f"{len(case_ids)} case IDs for {len(cases)} cases")
    loaded = [_as_case(c, i, None if case_ids is None else str(case_ids[i])) for i, c in enumerate(cases)]
    if len({c.hu is not None for c in loaded}) != 1:
        raise ValueError("either every case or no case must have a CT")
    with_organs = {c.organs is not None for c in loaded}
    if len(with_organs) != 1:
        raise ValueError("either every case or no case must have an organ mask")
    organ_aware = with_organs.pop()
    n_classes = len(ORGAN_AWARE_CLASSES) if organ_aware else 2
    prepared = []
    for c in loaded:
        channels, labels = input_channels(c.suv, c.hu), class_image(c, organ_aware)
        if spacing_mm is not None:
            if c.spacing_mm is None:
                raise ValueError(f"{c.case_id}: resampling to {tuple(spacing_mm)} mm needs the case's voxel spacing")
            shape = target_shape(labels.shape, c.spacing_mm, spacing_mm)
            channels, labels = resample_channels(channels, shape), resample_labels(labels, shape, n_classes)
        prepared.append((channels, labels))
    return prepared, [str(c.case_id) for c in loaded], loaded[0].hu is not None, organ_aware


def dice_bce_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice loss over the whole batch plus mean binary cross-entropy (logits input)."""
    prob = torch.sigmoid(logits)
    overlap = (prob * target).sum()
    dice = (2.0 * overlap + smooth) / (prob.sum() + target.sum() + smooth)
    return (1.0 - dice) + F.binary_cross_entropy_with_logits(logits, target)


def organ_aware_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Cross-entropy plus ``1 - soft Dice`` of the lesion (last) class plus ``1 - mean soft Dice`` of
    the organ classes (between background and lesion); Dice over the whole batch.

    ``logits`` (N, C, z, y, x), ``target`` (N, z, y, x) class indices (int64).
    """
    n_classes = logits.shape[1]
    prob = torch.softmax(logits, dim=1)
    onehot = F.one_hot(target, n_classes).permute(0, 4, 1, 2, 3).to(prob.dtype)
    dims = (0, 2, 3, 4)
    dice = (2.0 * (prob * onehot).sum(dims) + smooth) / (prob.sum(dims) + onehot.sum(dims) + smooth)
    return F.cross_entropy(logits, target) + (1.0 - dice[-1]) + (1.0 - dice[1:-1].mean())


def train_unet(cases: Sequence[Case | ArrayCase | FileCase], out: str | Path | None,
               settings: UNetTraining = UNetTraining(), *, case_ids: Sequence[str] | None = None,
               progress: bool = True) -> list[float]:
    """Train a :class:`UNet3D` on lesion-balanced patches and write its checkpoint.

    Parameters
    ----------
    cases : sequence of Case, of (suv, hu or None, label) arrays, or of (pet, ct or None, mask) paths
        Training cases (z, y, x), CT on the PET grid; every case with CT or none, and every
        case with an organ mask (organ-aware network) or none (lesion-only).
    out : str or Path or None
        Checkpoint file written atomically (see the module docstring); None writes nothing.
    settings : UNetTraining
        Training length, optimiser, seed, device, patch size, network, patch sampling, voxel
        spacing and augmentation.
    case_ids : sequence of str, optional
        Recorded in the checkpoint; default the PET file names or ``case-<i>``.
    progress : bool
        Show a progress bar over epochs.

    Returns
    -------
    list of float
        Mean training loss per epoch.
    """
    patch_size, spacing_mm = settings.patch_size, settings.spacing_mm
    dev = resolve_device(settings.device)
    prepared, ids, with_ct, organ_aware = _prepare(cases, case_ids, spacing_mm)
    classes = list(ORGAN_AWARE_CLASSES) if organ_aware else ["lesion"]
    lesion_class = len(ORGAN_AWARE_CLASSES) - 1 if organ_aware else 1
    sampler = PatchSampler(prepared, patch_size, settings.lesion_fraction, settings.augmentation,
                           settings.hot_fraction, lesion_class=lesion_class,
                           organ_fraction=settings.organ_fraction if organ_aware else 0.0)
    rng = np.random.default_rng(settings.seed)
    history: list[float] = []
    patches_per_epoch, batch_size = settings.patches_per_epoch, settings.batch_size
    with seeded_deterministic(settings.seed, dev):
        model = UNet3D(2 if with_ct else 1, settings.base_channels, settings.depth, settings.dropout,
                       n_classes=len(classes) if organ_aware else 1).to(dev)
        optimiser = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
        bar = tqdm(range(settings.epochs), desc="U-Net training", unit="epoch", disable=not progress)
        for _ in bar:
            model.train()
            total = 0.0
            for start in range(0, patches_per_epoch, batch_size):
                images, labels, _ = sampler.batch(rng, min(batch_size, patches_per_epoch - start))
                x, y = torch.from_numpy(images).to(dev), torch.from_numpy(labels).to(dev)
                if organ_aware:
                    loss = organ_aware_loss(model(x), y[:, 0].long())
                else:
                    loss = dice_bce_loss(model(x), y)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(images)
            history.append(total / patches_per_epoch)
            bar.set_postfix(loss=f"{history[-1]:.4f}")
    if out is not None:
        training = {**settings.record(organ_aware), "n_cases": len(ids), "case_ids": ids,
                    "device": dev.type, "cpu_threads": torch.get_num_threads() if dev.type == "cpu" else None}
        write_checkpoint(model, out, patch_size, with_ct, training, history, classes=classes,
                         spacing_mm=spacing_mm)
    return history


def checkpoint_bytes(model: UNet3D, patch_size: Sequence[int], with_ct: bool, training: dict,
                     loss_history: Sequence[float], classes: Sequence[str] = ("lesion",),
                     spacing_mm: Sequence[float] | None = None) -> bytes:
    """The serialised checkpoint (see the module docstring).

    ``torch.save`` goes to a memory buffer: saving to a file would name the archive's records
    after that file, putting the atomic writer's random temporary name into the bytes.
    """
    state = {"format": CHECKPOINT_FORMAT,
             "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             "model_config": model.config(), "classes": [str(c) for c in classes],
             "organ_labels": [k for k, name in ORGANS.items() if name in classes],
             "spacing_mm": None if spacing_mm is None else [float(v) for v in spacing_mm],
             "normalisation": normalisation_record(with_ct),
             "patch_size": [int(p) for p in patch_size], "training": training,
             "torch_version": str(torch.__version__), "loss_history": [float(v) for v in loss_history]}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def write_checkpoint(model: UNet3D, path: str | Path, patch_size: Sequence[int], with_ct: bool,
                     training: dict, loss_history: Sequence[float], classes: Sequence[str] = ("lesion",),
                     spacing_mm: Sequence[float] | None = None) -> None:
    """Write :func:`checkpoint_bytes` atomically to ``path``."""
    data = checkpoint_bytes(model, patch_size, with_ct, training, loss_history, classes, spacing_mm)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
