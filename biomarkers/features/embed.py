"""CNN-derived lesion features: lesion patches through a 3D encoder -> ``deep_*`` columns.

One interface serves three kinds of encoder checkpoint (:func:`load_patch_encoder`); each
becomes a module mapping patches (N, C, D, H, W) to vectors (N, F), feature maps being
reduced by global average pooling:

``autoencoder``
    A checkpoint of :func:`biomarkers.deep.autoencoder.save_autoencoder`; its bottleneck
    vector is used. Patch size, shape and channels come from the checkpoint.
``unet``
    A :mod:`biomarkers.segment.unet_train` checkpoint of the segmentation U-Net; the pooled
    bottleneck map (``UNet3D.encode``) is used. Channels follow the U-Net's input (PET, or PET
    and CT; no mask channel). The U-Net was trained on native voxels, so by default the patch
    is sampled at 4 mm (96 mm, 24^3 voxels), near the 3-5 mm of typical PET grids; pass
    ``size_mm``/``shape`` to match another training voxel size.
``torchscript``
    A user's own pretrained network saved with ``torch.jit.save`` (transfer learning). It
    receives float32 patches (N, C, D, H, W) built exactly as
    :func:`biomarkers.deep.crops.lesion_patches` builds them: a cube of ``size_mm`` centred on
    the lesion centroid, ``shape`` voxels, channels in the order ``pet`` (log1p(max(SUV, 0)) /
    log1p(20)), ``ct`` (clip(HU, -1000, 1000) / 1000), ``mask`` (the lesion's own mask, 0..1),
    and must return (N, F) vectors or (N, F, ...) maps. Defaults: 64 mm, 32^3, ``pet`` and
    ``ct``; a JSON file ``biomarkers.json`` saved in the archive (``torch.jit.save(m, path,
    _extra_files={"biomarkers.json": '{"size_mm": [..], "shape": [..], "channels": [..]}'})``)
    or the arguments of :func:`load_patch_encoder` override them.

Embedding runs in eval mode under ``torch.no_grad`` with deterministic kernels, one lesion per
forward pass (so a lesion's vector does not depend on the other lesions of the subject) and,
on the CPU, on one thread (so it does not depend on the core count); the same checkpoint,
inputs and device give the same table, bit for bit (on CPUs of one instruction set).
"""
from __future__ import annotations

import json
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from biomarkers.deep.autoencoder import CHECKPOINT_FORMAT, load_encoder, resolve_device
from biomarkers.deep.crops import PatchSpec, subject_patches
from biomarkers.deep.normalise import normalisation_record
from biomarkers.deep.unet import load_unet
from biomarkers.errors import InputError, ModelBundleError
from biomarkers.io.provenance import file_record
from biomarkers.deep.training import seeded_deterministic

KINDS = ("autoencoder", "unet", "torchscript")
#: Default lesion patch of U-Net encoders (4 mm voxels, a multiple of 2**depth up to depth 3).
UNET_PATCH = PatchSpec((96.0, 96.0, 96.0), (24, 24, 24), ("pet", "ct"))
#: Default lesion patch of TorchScript encoders.
TORCHSCRIPT_PATCH = PatchSpec((64.0, 64.0, 64.0), (32, 32, 32), ("pet", "ct"))
TORCHSCRIPT_SPEC_FILE = "biomarkers.json"


class PooledEncoder(nn.Module):
    """Patches (N, C, D, H, W) -> vectors (N, F): ``net(x)`` or ``net.encode(x)``, maps averaged."""

    def __init__(self, net: nn.Module, use_encode: bool = False) -> None:
        super().__init__()
        self.net, self.use_encode = net, bool(use_encode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net.encode(x) if self.use_encode else self.net(x)
        return out.flatten(2).mean(dim=2) if out.dim() > 2 else out


@dataclass
class PatchEncoder:
    """A loaded encoder and what it must be fed.

    Attributes
    ----------
    module : torch.nn.Module
        Maps patches (N, C, *spec.shape) to vectors (N, F); in eval mode on ``device``.
    spec : PatchSpec
        Patch size, shape and channels.
    kind : str
        One of :data:`KINDS`.
    record : dict
        Provenance written into the feature table's metadata.
    device : torch.device
    """

    module: nn.Module
    spec: PatchSpec
    kind: str
    record: dict
    device: torch.device


def checkpoint_kind(path: str | Path) -> str:
    """Which of :data:`KINDS` the file at ``path`` is (TorchScript archives hold ``code/``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("encoder checkpoint does not exist", path=path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile:
        raise InputError("not a torch checkpoint or TorchScript archive (not a zip file)", path=path) from None
    if any("/code/" in name for name in names):
        return "torchscript"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign files
        raise InputError(f"cannot read encoder checkpoint ({type(exc).__name__})", path=path) from None
    fmt = str(state.get("format", "")) if isinstance(state, dict) else ""
    if fmt == CHECKPOINT_FORMAT:
        return "autoencoder"
    if fmt.startswith("biomarkers.unet3d"):
        return "unet"
    raise ModelBundleError(f"{path}: unknown checkpoint format {fmt!r}; expected a biomarkers autoencoder "
                           "or U-Net checkpoint, or a TorchScript archive")


def _spec(default: PatchSpec, size_mm: Sequence[float] | None, shape: Sequence[int] | None,
          channels: Sequence[str] | None) -> PatchSpec:
    return PatchSpec(default.size_mm if size_mm is None else tuple(size_mm),
                     default.shape if shape is None else tuple(shape),
                     default.channels if channels is None else tuple(channels))


def load_unet_encoder(path: str | Path, device: str = "cpu", size_mm: Sequence[float] | None = None,
                      shape: Sequence[int] | None = None) -> tuple[nn.Module, PatchSpec, dict]:
    """Pooled bottleneck of a U-Net checkpoint: (module, patch spec, checkpoint records)."""
    net, info = load_unet(path, device)
    channels = ("pet", "ct") if net.config()["in_channels"] == 2 else ("pet",)
    spec = _spec(UNET_PATCH, size_mm, shape, channels)
    if any(s % net.size_multiple for s in spec.shape):
        warnings.warn(f"patch shape {spec.shape} is not a multiple of {net.size_multiple}; the U-Net pads it",
                      stacklevel=2)
    return PooledEncoder(net, use_encode=True), spec, info


def load_torchscript_encoder(path: str | Path, device: str = "cpu", size_mm: Sequence[float] | None = None,
                             shape: Sequence[int] | None = None,
                             channels: Sequence[str] | None = None) -> tuple[nn.Module, PatchSpec, dict]:
    """A TorchScript network (module docstring): (pooled module, patch spec, embedded spec)."""
    extra = {TORCHSCRIPT_SPEC_FILE: ""}
    with warnings.catch_warnings():  # torch >= 2.9 deprecates TorchScript in favour of torch.export
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*torch.jit.*")
        try:
            net = torch.jit.load(str(path), map_location=resolve_device(device), _extra_files=extra)
        except RuntimeError as exc:
            first = (str(exc).strip().splitlines() or ["unreadable"])[0]
            raise InputError(f"cannot load TorchScript encoder ({first})", path=path) from None
    embedded = json.loads(extra[TORCHSCRIPT_SPEC_FILE] or "{}")
    default = _spec(TORCHSCRIPT_PATCH, embedded.get("size_mm"), embedded.get("shape"), embedded.get("channels"))
    spec = _spec(default, size_mm, shape, channels)
    return PooledEncoder(net), spec, embedded


def load_patch_encoder(path: str | Path, kind: str = "auto", device: str = "auto",
                       size_mm: Sequence[float] | None = None, shape: Sequence[int] | None = None,
                       channels: Sequence[str] | None = None) -> PatchEncoder:
    """Load any of the three encoder kinds behind one interface.

    Parameters
    ----------
    path : str or Path
        Checkpoint or TorchScript archive.
    kind : {"auto", "autoencoder", "unet", "torchscript"}
        ``"auto"`` tells them apart by content (:func:`checkpoint_kind`).
    device : {"auto", "cpu", "cuda"}
        ``"auto"`` uses CUDA when available (pass ``"cpu"`` for tables bit-identical across machines).
    size_mm, shape, channels : optional
        Override the patch (U-Net and TorchScript only; an autoencoder is fed what it was trained on).

    Returns
    -------
    PatchEncoder
    """
    kind = checkpoint_kind(path) if kind == "auto" else kind
    dev = resolve_device(device)
    if kind == "autoencoder":
        if size_mm is not None or shape is not None or channels is not None:
            raise ValueError("an autoencoder's patch comes from its checkpoint; do not override it")
        module, info = load_encoder(path, str(dev))
        spec, pooling = PatchSpec.from_record(info["patch"]), "none (bottleneck vector)"
        extra = {"training_subjects": len(info["subjects"]), "training": info["training"]}
    elif kind == "unet":
        if channels is not None:
            raise ValueError("a U-Net's channels come from its checkpoint; do not override them")
        module, spec, info = load_unet_encoder(path, str(dev), size_mm, shape)
        pooling, extra = "global average of the bottleneck map", {"model_config": info["model_config"]}
    elif kind == "torchscript":
        module, spec, embedded = load_torchscript_encoder(path, str(dev), size_mm, shape, channels)
        pooling, extra = "global average where the network returns a map", {"embedded_spec": embedded}
    else:
        raise ValueError(f"kind must be 'auto' or one of {', '.join(KINDS)}, got {kind!r}")
    record = {"kind": kind, "file": file_record(path), "patch": spec.record(), "pooling": pooling,
              "normalisation": normalisation_record(spec.with_ct), "device": dev.type, **extra}
    return PatchEncoder(module.to(dev).eval(), spec, kind, record, dev)


def encode_patches(encoder: PatchEncoder, patches: np.ndarray) -> np.ndarray:
    """Feature vectors (n, F) as float32, one forward pass per patch.

    On the CPU the passes run on one thread (restored afterwards), so that the vectors do not
    depend on the machine's core count.

    Raises
    ------
    ModelBundleError
        If the network rejects the patches or does not return one vector per patch.
    """
    patches = np.asarray(patches, dtype=np.float32)
    expected = (len(encoder.spec.channels), *encoder.spec.shape)
    if patches.ndim != 5 or patches.shape[1:] != expected:
        raise ValueError(f"patches must have shape (n, {', '.join(map(str, expected))}), got {patches.shape}")
    rows = patches if len(patches) else np.zeros((1, *expected), dtype=np.float32)  # to learn F
    module = encoder.module.eval()
    threads = torch.get_num_threads()
    if encoder.device.type == "cpu":  # CPU results depend (in the last bits) on the thread count
        torch.set_num_threads(1)
    try:
        vectors = _forward_each(module, rows, encoder, expected)
    finally:
        torch.set_num_threads(threads)
    return vectors[:len(patches)]


def _forward_each(module: nn.Module, rows: np.ndarray, encoder: PatchEncoder, expected: tuple) -> np.ndarray:
    out = []
    with seeded_deterministic(0, encoder.device), torch.no_grad():
        for patch in rows:
            try:
                vec = module(torch.from_numpy(patch[None]).to(encoder.device))
            except RuntimeError as exc:
                first = (str(exc).strip().splitlines() or ["error"])[0]
                raise ModelBundleError(f"{encoder.record['file']['name']}: encoder rejects patches of shape "
                                       f"{(1, *expected)} (channels {list(encoder.spec.channels)}): {first}") from None
            if vec.dim() != 2 or vec.shape[0] != 1:
                raise ModelBundleError(f"{encoder.record['file']['name']}: encoder returned shape "
                                       f"{tuple(vec.shape)}, expected (1, F)")
            out.append(vec.float().cpu().numpy())
    return np.concatenate(out)


def feature_columns(n_features: int) -> list[str]:
    """``deep_000`` ... (zero-padded to at least three digits)."""
    width = max(3, len(str(n_features - 1)))
    return [f"deep_{i:0{width}d}" for i in range(n_features)]


def embed_lesions(image_path: str | Path, ct_path: str | Path | None, mask_path: str | Path, subject_id: str,
                  encoder_checkpoint: str | Path | PatchEncoder, device: str = "auto") -> tuple[pd.DataFrame, dict]:
    """One row per lesion label: ``subject_id``, ``lesion_id``, ``deep_000`` ... ``deep_{F-1}``.

    Parameters
    ----------
    image_path : str or Path
        PET in SUV.
    ct_path : str or Path or None
        CT in HU on the PET grid; needed when the encoder has a CT channel, else ignored.
    mask_path : str or Path
        Lesion label image on the PET grid (0 background, one label per lesion).
    subject_id : str
        Written to the table and used in error messages.
    encoder_checkpoint : str, Path or PatchEncoder
        A file for :func:`load_patch_encoder` (kind detected), or an encoder already loaded
        (to embed many subjects without reloading).
    device : str
        Used when ``encoder_checkpoint`` is a file.

    Returns
    -------
    table : DataFrame
        Lesions in increasing label order; features as float64.
    metadata : dict
        Inputs (name and SHA-256) and the encoder record.
    """
    encoder = encoder_checkpoint if isinstance(encoder_checkpoint, PatchEncoder) else \
        load_patch_encoder(encoder_checkpoint, device=device)
    patches, ids = subject_patches(image_path, ct_path, mask_path, subject_id, encoder.spec)
    vectors = encode_patches(encoder, patches).astype(np.float64)
    if not np.isfinite(vectors).all():
        raise ModelBundleError(f"{encoder.record['file']['name']}: encoder returned NaN or infinite features "
                               f"for subject {subject_id}")
    table = pd.DataFrame(vectors, columns=feature_columns(vectors.shape[1]))
    table.insert(0, "lesion_id", np.asarray(ids, dtype=np.int64))
    table.insert(0, "subject_id", subject_id)
    metadata = {"subject_id": subject_id, "image": file_record(image_path),
                "ct": file_record(ct_path) if encoder.spec.with_ct else None, "mask": file_record(mask_path),
                "encoder": encoder.record, "n_features": int(vectors.shape[1])}
    return table, metadata
