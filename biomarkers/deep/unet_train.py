"""Training, saving and loading of the lesion-segmentation :class:`~biomarkers.deep.unet.UNet3D`.

Training draws lesion-balanced, augmented patches (:mod:`biomarkers.deep.patches`) from a
numpy ``Generator`` seeded with ``seed`` and initialises weights and dropout from
``torch.manual_seed(seed)`` inside a forked RNG with deterministic kernels
(:func:`biomarkers.survival.deep_train.seeded_deterministic`). On the CPU the same cases,
settings, seed, torch version and thread count give the same weights and a byte-identical
checkpoint; on CUDA the run is reproducible in distribution, not bit for bit.

The loss is soft Dice (over all voxels of the batch, so that patches without lesion do not
make it undefined) plus binary cross-entropy on the logits; the optimiser is AdamW.

Checkpoint layout (a ``torch.save`` dict, loadable with ``weights_only=True``)::

    format          "biomarkers.unet3d/1"
    state_dict      weights (CPU tensors)
    model_config    UNet3D constructor arguments (UNet3D.config())
    normalisation   biomarkers.deep.normalise.normalisation_record(with_ct)
    patch_size      [z, y, x] training patch (and inference window) size in voxels
    training        epochs, patches_per_epoch, batch_size, lr, weight_decay, seed,
                    lesion_fraction, hot_fraction, augmentation, n_cases, case_ids, device
    torch_version   torch.__version__ of the training run
    loss_history    mean training loss per epoch
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from biomarkers.deep.normalise import input_channels, normalisation_record
from biomarkers.deep.patches import Augmentation, PatchSampler
from biomarkers.deep.unet import UNet3D
from biomarkers.errors import InputError, ModelBundleError
from biomarkers.io.atomic import atomic_path
from biomarkers.io.images import check_same_geometry, read_image, to_array
from biomarkers.survival.deep_train import resolve_device, seeded_deterministic

#: Checkpoint format tag; bump when the layout changes.
CHECKPOINT_FORMAT = "biomarkers.unet3d/1"

ArrayCase = tuple[np.ndarray, Union[np.ndarray, None], np.ndarray]
FileCase = tuple[Union[str, Path], Union[str, Path, None], Union[str, Path]]




def read_case(pet_path: str | Path, ct_path: str | Path | None, mask_path: str | Path,
              subject_id: str | None = None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """SUV, HU (or None) and binary lesion label arrays (z, y, x) of one case, on the PET grid.

    Raises
    ------
    InputError
        A file is missing or unreadable (naming subject and file).
    GeometryError
        The CT or the mask is not on the PET grid.
    """
    pet = read_image(pet_path, subject_id)
    hu = None
    if ct_path is not None:
        ct = read_image(ct_path, subject_id)
        check_same_geometry(pet, ct, pet_path, ct_path, subject_id)
        hu = to_array(ct)
    mask = read_image(mask_path, subject_id)
    check_same_geometry(pet, mask, pet_path, mask_path, subject_id)
    return to_array(pet), hu, (to_array(mask) > 0).view(np.uint8)


def _prepare(cases: Sequence[ArrayCase | FileCase], case_ids: Sequence[str] | None
             ) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[str], bool]:
    """Normalised channels and labels of every case, the case IDs and whether CT is used."""
    if not cases:
        raise ValueError("no training cases")
    if case_ids is not None and len(case_ids) != len(cases):
        raise ValueError(f"{len(case_ids)} case IDs for {len(cases)} cases")
    prepared, ids, with_ct = [], [], set()
    for i, (pet, ct, mask) in enumerate(cases):
        case_id = str(case_ids[i]) if case_ids is not None else None
        if isinstance(pet, (str, Path)):
            case_id = case_id or Path(pet).name
            suv, hu, label = read_case(pet, ct, mask, case_id)
        else:
            suv, hu, label = np.asarray(pet), None if ct is None else np.asarray(ct), np.asarray(mask)
            case_id = case_id or f"case-{i}"
            if label.shape != suv.shape:
                raise ValueError(f"{case_id}: label shape {label.shape} differs from PET shape {suv.shape}")
        prepared.append((input_channels(suv, hu), (label > 0).view(np.uint8)))
        ids.append(case_id)
        with_ct.add(hu is not None)
    if len(with_ct) != 1:
        raise ValueError("either every case or no case must have a CT")
    return prepared, ids, with_ct.pop()


def dice_bce_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice loss over the whole batch plus mean binary cross-entropy (logits input)."""
    prob = torch.sigmoid(logits)
    overlap = (prob * target).sum()
    dice = (2.0 * overlap + smooth) / (prob.sum() + target.sum() + smooth)
    return (1.0 - dice) + F.binary_cross_entropy_with_logits(logits, target)


def train_unet(cases: Sequence[ArrayCase | FileCase], out: str | Path | None, epochs: int,
               patches_per_epoch: int, batch_size: int, lr: float, seed: int, device: str = "auto",
               patch_size: Sequence[int] = (48, 48, 48), *, base_channels: int = 8, depth: int = 3,
               dropout: float = 0.0, weight_decay: float = 1e-4, lesion_fraction: float = 0.5,
               hot_fraction: float = 0.0, augmentation: Augmentation = Augmentation(),
               case_ids: Sequence[str] | None = None, progress: bool = True) -> list[float]:
    """Train a :class:`UNet3D` on lesion-balanced patches and write its checkpoint.

    Parameters
    ----------
    cases : sequence of (suv, hu or None, label) arrays, or of (pet, ct or None, mask) paths
        Training cases (z, y, x), CT on the PET grid; every case with CT or none.
    out : str or Path or None
        Checkpoint file written atomically (see the module docstring); None writes nothing.
    epochs, patches_per_epoch, batch_size : int
        Training length: ``patches_per_epoch`` patches per epoch, in batches of ``batch_size``.
    lr, weight_decay : float
        AdamW settings.
    seed : int
        Seeds patch sampling, augmentation, weight initialisation and dropout.
    device : {"auto", "cpu", "cuda"}
        ``"auto"`` trains on CUDA when available.
    patch_size : sequence of int
        Patch size in voxels (z, y, x); each a multiple of ``2**depth``.
    base_channels, depth, dropout
        :class:`UNet3D` arguments.
    lesion_fraction : float
        Share of patches centred on a lesion voxel.
    hot_fraction : float
        Share of the other patches centred on a hot (SUV >= 2.5) non-lesion voxel
        (:class:`~biomarkers.deep.patches.PatchSampler`); 0 samples them uniformly.
    augmentation : Augmentation
        Patch augmentation (``Augmentation.none()`` disables it).
    case_ids : sequence of str, optional
        Recorded in the checkpoint; default the PET file names or ``case-<i>``.
    progress : bool
        Show a progress bar over epochs.

    Returns
    -------
    list of float
        Mean training loss per epoch.
    """
    patch_size = tuple(int(p) for p in patch_size)
    if epochs < 1 or patches_per_epoch < 1 or batch_size < 1:
        raise ValueError("epochs, patches_per_epoch and batch_size must be positive")
    if len(patch_size) != 3 or any(p < 1 or p % 2**depth for p in patch_size):
        raise ValueError(f"patch_size {patch_size} must be three multiples of 2**depth = {2**depth}")
    dev = resolve_device(device)
    prepared, ids, with_ct = _prepare(cases, case_ids)
    sampler = PatchSampler(prepared, patch_size, lesion_fraction, augmentation, hot_fraction)
    rng = np.random.default_rng(seed)
    history: list[float] = []
    with seeded_deterministic(seed, dev):
        model = UNet3D(2 if with_ct else 1, base_channels, depth, dropout).to(dev)
        optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        bar = tqdm(range(epochs), desc="U-Net training", unit="epoch", disable=not progress)
        for _ in bar:
            model.train()
            total = 0.0
            for start in range(0, patches_per_epoch, batch_size):
                images, labels, _ = sampler.batch(rng, min(batch_size, patches_per_epoch - start))
                x, y = torch.from_numpy(images).to(dev), torch.from_numpy(labels).to(dev)
                loss = dice_bce_loss(model(x), y)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(images)
            history.append(total / patches_per_epoch)
            bar.set_postfix(loss=f"{history[-1]:.4f}")
    if out is not None:
        training = {"epochs": int(epochs), "patches_per_epoch": int(patches_per_epoch),
                    "batch_size": int(batch_size), "lr": float(lr), "weight_decay": float(weight_decay),
                    "seed": int(seed), "lesion_fraction": float(lesion_fraction),
                    "hot_fraction": float(hot_fraction),
                    "augmentation": augmentation.record(), "n_cases": len(ids), "case_ids": ids,
                    "device": dev.type, "cpu_threads": torch.get_num_threads() if dev.type == "cpu" else None}
        write_checkpoint(model, out, patch_size, with_ct, training, history)
    return history


def checkpoint_bytes(model: UNet3D, patch_size: Sequence[int], with_ct: bool, training: dict,
                     loss_history: Sequence[float]) -> bytes:
    """The serialised checkpoint (see the module docstring).

    ``torch.save`` goes to a memory buffer: saving to a file would name the archive's records
    after that file, putting the atomic writer's random temporary name into the bytes.
    """
    state = {"format": CHECKPOINT_FORMAT,
             "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             "model_config": model.config(), "normalisation": normalisation_record(with_ct),
             "patch_size": [int(p) for p in patch_size], "training": training,
             "torch_version": str(torch.__version__), "loss_history": [float(v) for v in loss_history]}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def write_checkpoint(model: UNet3D, path: str | Path, patch_size: Sequence[int], with_ct: bool,
                     training: dict, loss_history: Sequence[float]) -> None:
    """Write :func:`checkpoint_bytes` atomically to ``path``."""
    data = checkpoint_bytes(model, patch_size, with_ct, training, loss_history)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def load_unet(path: str | Path, device: str = "cpu") -> tuple[UNet3D, dict]:
    """Load a checkpoint written by :func:`train_unet` onto ``device`` (eval mode).

    Loads with ``map_location`` and ``weights_only=True``, so a checkpoint trained on a GPU
    loads on a CPU-only machine and no arbitrary code is unpickled.

    Returns
    -------
    model : UNet3D
    info : dict
        The checkpoint without ``state_dict`` (patch size, normalisation, training record, ...).

    Raises
    ------
    InputError
        The file does not exist.
    ModelBundleError
        The file is not a U-Net checkpoint of this format, or its normalisation differs from
        the one this version of the pipeline applies.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("U-Net checkpoint does not exist", path=path)
    dev = resolve_device(device)
    try:
        state = torch.load(path, map_location=dev, weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged or foreign file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelBundleError(f"{path}: not a readable U-Net checkpoint ({first})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ModelBundleError(f"{path}: not a U-Net checkpoint of format {CHECKPOINT_FORMAT}")
    config = state["model_config"]
    expected = normalisation_record(config["in_channels"] == 2)
    if state["normalisation"] != expected:
        raise ModelBundleError(f"{path}: checkpoint normalisation {state['normalisation']} differs from "
                               f"this pipeline's {expected}; retrain or use the matching version")
    model = UNet3D(**config)
    model.load_state_dict(state["state_dict"])
    model.to(dev).eval()
    return model, {k: v for k, v in state.items() if k != "state_dict"}
