"""A small 3D convolutional autoencoder of lesion patches, trained self-supervised.

The encoder (:class:`PatchEncoder3D`) maps a patch (N, C, D, H, W) through four 3x3x3
convolutions (the last three with stride 2, so 32^3 -> 4^3) and a linear layer to a
bottleneck vector of ``latent`` features; the decoder mirrors it with stride-2 transposed
convolutions. The loss is the mean squared error on the image channels (PET and CT; the
lesion-mask channel is an input only). The encoder's vector is the ``deep_*`` feature
vector of :mod:`biomarkers.features.embed`.

Training is seeded: weights are initialised on the CPU under ``torch.manual_seed(seed)``
inside :func:`biomarkers.deep.training.seeded_deterministic` (the caller's RNG state is
left alone), the batch order comes from a CPU ``torch.Generator`` seeded ``seed`` and the
flips from one seeded ``seed + 1``. On the CPU two runs with the same torch version and
thread count (recorded as ``cpu_threads``) give identical weights and checkpoint bytes; other
thread counts change the last bits. On CUDA runs agree in distribution (see
``seeded_deterministic``). Augmentation is random
flips along z, y and x only: flips keep the SUV and HU values (and so their clinical
meaning); no intensity scaling, no resampling.

Checkpoints (:func:`save_autoencoder`) are ``torch.save`` dictionaries written through a
buffer and an atomic rename, so the same weights give the same bytes.
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from biomarkers.deep.crops import IMAGE_CHANNELS, PatchSpec
from biomarkers.deep.defaults import AutoencoderTraining
from biomarkers.deep.normalise import normalisation_record
from biomarkers.errors import InputError, ModelBundleError
from biomarkers.io.atomic import atomic_path
from biomarkers.deep.training import batches, resolve_device, seeded_deterministic

#: ``format`` entry of the checkpoints written here.
CHECKPOINT_FORMAT = "biomarkers.deep.autoencoder"

CHECKPOINT_VERSION = 1
#: Augmentation, as recorded in checkpoints.
AUGMENTATION = "random flips along z, y and x (p = 0.5 each, per patch); no intensity changes"


class PatchEncoder3D(nn.Module):
    """Patches (N, C, *shape) -> feature vectors (N, latent); ``shape`` divisible by 8."""

    def __init__(self, in_channels: int, latent: int, width: int, shape: Sequence[int]) -> None:
        super().__init__()
        if any(int(s) % 8 for s in shape):
            raise ValueError(f"patch shape must be divisible by 8, got {tuple(shape)}")
        widths = [width, 2 * width, 4 * width, 8 * width]
        self.convs = nn.ModuleList([nn.Conv3d(in_channels, widths[0], 3, padding=1)] +
                                   [nn.Conv3d(a, b, 3, stride=2, padding=1) for a, b in zip(widths[:-1], widths[1:])])
        self.map_shape = (widths[-1], *(int(s) // 8 for s in shape))
        self.fc = nn.Linear(math.prod(self.map_shape), latent)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
        return self.fc(x.flatten(1))


class PatchDecoder3D(nn.Module):
    """Feature vectors (N, latent) -> image channels (N, out_channels, *shape)."""

    def __init__(self, out_channels: int, latent: int, width: int, shape: Sequence[int]) -> None:
        super().__init__()
        widths = [8 * width, 4 * width, 2 * width, width]
        self.map_shape = (widths[0], *(int(s) // 8 for s in shape))
        self.fc = nn.Linear(latent, math.prod(self.map_shape))
        self.ups = nn.ModuleList(nn.ConvTranspose3d(a, b, 2, stride=2) for a, b in zip(widths[:-1], widths[1:]))
        self.out = nn.Conv3d(widths[-1], out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.fc(z), 0.1).view(-1, *self.map_shape)
        for up in self.ups:
            x = F.leaky_relu(up(x), 0.1)
        return self.out(x)


class ConvAutoencoder3D(nn.Module):
    """Encoder + decoder; ``forward`` returns the reconstruction of the image channels.

    Parameters
    ----------
    in_channels : int
        Patch channels fed to the encoder (image channels, then the mask channel if any).
    out_channels : int
        Leading image channels reconstructed by the decoder.
    latent : int
        Length of the bottleneck (feature) vector.
    width : int
        Channels of the first convolution (doubled at each of the three downsamplings).
    shape : sequence of 3 int
        Patch voxels (z, y, x), each divisible by 8.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 2, latent: int = 32, width: int = 8,
                 shape: Sequence[int] = (32, 32, 32)) -> None:
        super().__init__()
        if not 1 <= out_channels <= in_channels:
            raise ValueError(f"out_channels must be in 1..in_channels, got {out_channels} of {in_channels}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.latent, self.width, self.shape = int(latent), int(width), tuple(int(s) for s in shape)
        self.encoder = PatchEncoder3D(self.in_channels, self.latent, self.width, self.shape)
        self.decoder = PatchDecoder3D(self.out_channels, self.latent, self.width, self.shape)

    def config(self) -> dict:
        """Constructor arguments (plain values), as stored in checkpoints."""
        return {"in_channels": self.in_channels, "out_channels": self.out_channels, "latent": self.latent,
                "width": self.width, "shape": list(self.shape)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def flip_batch(x: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Flip each patch of ``x`` (N, C, D, H, W) along the spatial axes where ``flips`` (N, 3) is true."""
    x = x.clone()
    for axis in range(3):
        rows = torch.nonzero(flips[:, axis].to(x.device)).flatten()
        if len(rows):
            x[rows] = x[rows].flip(axis + 2)
    return x




def train_autoencoder(patches: np.ndarray, settings: AutoencoderTraining = AutoencoderTraining(),
                      channels: Sequence[str] = ("pet", "ct", "mask")) -> tuple[ConvAutoencoder3D, dict]:
    """Train a :class:`ConvAutoencoder3D` on lesion patches (Adam, MSE on the image channels).

    Parameters
    ----------
    patches : ndarray (N, C, D, H, W)
        Patches from :func:`biomarkers.deep.crops.lesion_patches` (training cohort only).
    settings : AutoencoderTraining
        Bottleneck length, epochs, batch size, learning rate, seed, width and device.
    channels : sequence of str
        Names of the ``C`` patch channels; those in ``("pet", "ct")`` are reconstructed.

    Returns
    -------
    model : ConvAutoencoder3D
        Trained, in eval mode, on ``device``.
    history : dict
        ``{"train_loss": [mean loss of each epoch]}`` (flipped patches, weights as they changed).
    """
    x_np = np.asarray(patches, dtype=np.float32)
    if x_np.ndim != 5 or len(x_np) == 0:
        raise ValueError(f"patches must be a non-empty (N, C, D, H, W) array, got shape {x_np.shape}")
    if not np.isfinite(x_np).all():
        raise ValueError("patches contain NaN or infinite values")
    channels = list(channels)
    if len(channels) != x_np.shape[1]:
        raise ValueError(f"{x_np.shape[1]} patch channels but {len(channels)} channel names {channels}")
    n_image = sum(c in IMAGE_CHANNELS for c in channels)
    if channels[:n_image] != [c for c in channels if c in IMAGE_CHANNELS]:
        raise ValueError(f"image channels must come first, got {channels}")
    seed, epochs, batch_size = settings.seed, settings.epochs, settings.batch_size
    dev = resolve_device(settings.device)
    with seeded_deterministic(seed, dev):
        model = ConvAutoencoder3D(x_np.shape[1], n_image, settings.latent, settings.width, x_np.shape[2:]).to(dev)
        x = torch.from_numpy(x_np).to(dev)
        order_gen = torch.Generator().manual_seed(int(seed))
        flip_gen = torch.Generator().manual_seed(int(seed) + 1)
        optimiser = torch.optim.Adam(model.parameters(), lr=settings.lr)
        history: dict = {"train_loss": []}
        model.train()
        for _ in range(int(epochs)):
            total = 0.0
            for idx in batches(len(x), int(batch_size), order_gen):
                flips = torch.rand(len(idx), 3, generator=flip_gen) < 0.5
                xb = flip_batch(x[idx.to(dev)], flips)
                loss = F.mse_loss(model(xb), xb[:, :n_image])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(idx)
            history["train_loss"].append(total / len(x))
    return model.eval(), history


def training_record(settings: AutoencoderTraining, n_patches: int) -> dict:
    """How a checkpoint was trained (plain values), for :func:`save_autoencoder`."""
    dev = resolve_device(settings.device).type
    return {"epochs": int(settings.epochs), "batch_size": int(settings.batch_size), "lr": float(settings.lr),
            "seed": int(settings.seed),
            "device": dev, "cpu_threads": torch.get_num_threads() if dev == "cpu" else None,
            "n_patches": int(n_patches), "optimiser": "Adam",
            "loss": "MSE on the image channels", "augmentation": AUGMENTATION, "torch": str(torch.__version__)}


def save_autoencoder(model: ConvAutoencoder3D, path: str | Path, spec: PatchSpec, history: dict,
                     training: dict, subjects: Sequence[str]) -> None:
    """Write a checkpoint (atomic; the same weights and records give the same bytes).

    The file holds ``format``, ``version``, ``config`` (constructor arguments), ``weights``
    (CPU state dict), ``channels``, ``normalisation`` (:func:`normalisation_record`),
    ``patch`` (:meth:`PatchSpec.record`), ``training`` (:func:`training_record`),
    ``subjects`` (training subject IDs) and ``history``.
    """
    if list(spec.shape) != list(model.shape) or len(spec.channels) != model.in_channels:
        raise ValueError(f"patch spec {spec} does not fit the model {model.config()}")
    state = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": model.config(),
             "weights": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             "channels": list(spec.channels), "normalisation": normalisation_record(spec.with_ct),
             "patch": spec.record(), "training": dict(training), "subjects": [str(s) for s in subjects],
             "history": {k: [float(v) for v in vals] for k, vals in history.items()}}
    buffer = io.BytesIO()  # torch.save would name the archive after the temporary file
    torch.save(state, buffer)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(buffer.getvalue())


def load_autoencoder(path: str | Path, device: str = "cpu") -> tuple[ConvAutoencoder3D, dict]:
    """Read a checkpoint of :func:`save_autoencoder`: the model (eval mode) and its records.

    Raises
    ------
    InputError
        If the file does not exist or is not a torch checkpoint.
    ModelBundleError
        If it is not an autoencoder checkpoint, or was made with another normalisation.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("encoder checkpoint does not exist", path=path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign files
        raise InputError(f"cannot read encoder checkpoint ({type(exc).__name__})", path=path) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ModelBundleError(f"{path}: not a biomarkers autoencoder checkpoint")
    spec = PatchSpec.from_record(state["patch"])
    if state["normalisation"] != normalisation_record(spec.with_ct):
        raise ModelBundleError(f"{path}: trained with normalisation {state['normalisation']}, but this "
                               f"version uses {normalisation_record(spec.with_ct)}")
    model = ConvAutoencoder3D(**state["config"])
    model.load_state_dict(state["weights"])
    info = {k: v for k, v in state.items() if k != "weights"}
    return model.to(resolve_device(device)).eval(), info


def load_encoder(path: str | Path, device: str = "cpu") -> tuple[PatchEncoder3D, dict]:
    """The encoder of an autoencoder checkpoint (eval mode) and the checkpoint's records."""
    model, info = load_autoencoder(path, device)
    return model.encoder.eval(), info
