"""End-to-end deep survival: a 3D CNN over a subject's lesion patches, with clinical covariates.

Network (:class:`LesionBagCox`), for one subject with lesion patches ``p_1 .. p_n``
(:mod:`biomarkers.deep.lesion_bags`) and standardised clinical covariates ``c``:

1. every patch goes through the same 3D convolutional encoder
   (:class:`biomarkers.deep.autoencoder.PatchEncoder3D`) to a vector ``h_i``;
2. the bag of vectors is pooled in two permutation-invariant ways: gated attention
   (Ilse, Tomczak & Welling 2018, "Attention-based deep multiple instance learning", ICML),
   a weighted mean ``sum a_i h_i`` with ``a = softmax(w . (tanh(V h_i) * sigmoid(U h_i)))``,
   which can single out the lesion that matters; and a *burden* pooling
   ``log1p(sum_i softplus(B h_i))``, a log of sums, which can express total tumour burden
   (e.g. log total MTV), which a mean cannot. A subject without lesions pools to zeros;
3. ``[attention, burden, c]`` goes through one hidden layer (ReLU, dropout) to the
   log-hazard ratio.

Training minimises the negative Cox partial log-likelihood (pycox ``CoxPHLoss``, Breslow
ties, risk sets within each mini-batch of subjects, as DeepSurv does) with AdamW, random
flips of the patches along z, y and x (flips keep the SUV and HU values), and early stopping
on a stratified held-out share of the training subjects
(:func:`biomarkers.deep.training.train`).

MC dropout: dropout acts on the head's hidden layer only, so at scoring the encoder and the
pooling run once (deterministic) and the head runs once per dropout sample with explicit
keep-masks (:func:`biomarkers.deep.training.draw_masks`, seeded): the samples are
reproducible and do not depend on how subjects are batched. Survival curves use a Breslow
baseline from the training subjects' deterministic risks.

Everything is seeded (weights, batch order, validation split, flips, dropout); on the CPU the
same inputs, seed, torch version and thread count give identical weights.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, fields
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from biomarkers.deep.autoencoder import PatchEncoder3D
from biomarkers.survival.breslow import breslow_baseline
from biomarkers.survival.hyperparameters import DEFAULTS
from biomarkers.survival.losses import cox_loss
from biomarkers.deep.training import (MLP, TrainResult, draw_masks, mc_forward_batched, resolve_device,
                                            seeded_deterministic, stratified_split, train)

#: Burden channels of the pooling (sums over lesions).
BURDEN = 2


class LesionBagCox(nn.Module):
    """Lesion patches of a batch of subjects (+ clinical covariates) -> log-hazard ratios.

    Parameters
    ----------
    in_channels : int
        Patch channels (PET, [CT], [mask]).
    shape : sequence of 3 int
        Patch voxels, each divisible by 8.
    n_clinical : int
        Clinical covariates appended after pooling (0 for images alone).
    latent, width : int
        Encoder output length and first convolution's channels.
    hidden : int
        Width of the head's hidden layer.
    dropout : float
        Dropout on the head's hidden layer (training and MC dropout).
    """

    def __init__(self, in_channels: int, shape: Sequence[int], n_clinical: int, latent: int = 8, width: int = 4,
                 hidden: int = 16, dropout: float = 0.2) -> None:
        super().__init__()
        self.in_channels, self.shape, self.n_clinical = int(in_channels), tuple(int(s) for s in shape), int(n_clinical)
        self.latent, self.width, self.hidden, self.dropout = int(latent), int(width), int(hidden), float(dropout)
        self.encoder = PatchEncoder3D(self.in_channels, self.latent, self.width, self.shape)
        self.att_v = nn.Linear(self.latent, self.hidden)
        self.att_u = nn.Linear(self.latent, self.hidden)
        self.att_w = nn.Linear(self.hidden, 1)
        self.burden = nn.Linear(self.latent, BURDEN)
        self.head = MLP(self.latent + BURDEN + self.n_clinical, [self.hidden], 1, self.dropout, batch_norm=False)

    def config(self) -> dict:
        """Constructor arguments (plain values), as stored in model files."""
        return {"in_channels": self.in_channels, "shape": list(self.shape), "n_clinical": self.n_clinical,
                "latent": self.latent, "width": self.width, "hidden": self.hidden, "dropout": self.dropout}

    def pooled(self, patches: torch.Tensor, bag: torch.Tensor, clinical: torch.Tensor) -> torch.Tensor:
        """Subject representations (n_subjects, latent + 2 + n_clinical) before the head.

        ``patches`` (n_lesions, C, D, H, W) with ``bag`` (n_lesions,) the row of ``clinical``
        (n_subjects, n_clinical) each lesion belongs to.
        """
        n = clinical.shape[0]
        dtype, device = clinical.dtype, clinical.device
        if len(patches):
            h = self.encoder(patches)
            score = self.att_w(torch.tanh(self.att_v(h)) * torch.sigmoid(self.att_u(h)))[:, 0]
            top = torch.full((n,), -torch.inf, dtype=dtype, device=device).scatter_reduce(0, bag, score, "amax")
            weight = torch.exp(score - top[bag])
            total = torch.zeros(n, dtype=dtype, device=device).index_add(0, bag, weight)
            weight = weight / total[bag]
            attention = torch.zeros(n, self.latent, dtype=dtype, device=device).index_add(0, bag, weight[:, None] * h)
            burden = torch.zeros(n, BURDEN, dtype=dtype, device=device).index_add(0, bag, F.softplus(self.burden(h)))
        else:
            attention = torch.zeros(n, self.latent, dtype=dtype, device=device)
            burden = torch.zeros(n, BURDEN, dtype=dtype, device=device)
        return torch.cat([attention, torch.log1p(burden), clinical], dim=1)

    def forward(self, patches: torch.Tensor, bag: torch.Tensor, clinical: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooled(patches, bag, clinical))


def flatten_bags(bags: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack bags to (patches, subject row of each patch, start offset of each subject)."""
    sizes = np.array([len(b) for b in bags], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    shapes = {b.shape[1:] for b in bags if len(b)}
    if len(shapes) > 1:
        raise ValueError(f"lesion patches of several shapes: {sorted(shapes)}")
    patches = np.concatenate([b for b in bags if len(b)]) if sizes.sum() else np.zeros((0, 1, 1, 1, 1), np.float32)
    return patches.astype(np.float32), np.repeat(np.arange(len(bags)), sizes), offsets


class _Cohort(nn.Module):
    """Training view: ``forward(rows)`` scores the subjects ``rows`` of a fixed cohort.

    Holds the cohort's patches and covariates as plain tensors (not parameters) so that the
    generic loop of :func:`biomarkers.deep.training.train` can index subjects like table
    rows; in training mode each patch is flipped at random along z, y and x.
    """

    def __init__(self, net: LesionBagCox, patches: torch.Tensor, offsets: np.ndarray, clinical: torch.Tensor,
                 flips: torch.Generator) -> None:
        super().__init__()
        self.net, self.data, self.offsets, self.clinical, self.flips = net, patches, offsets, clinical, flips

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        rows_np = rows.cpu().numpy()
        index = [np.arange(self.offsets[r], self.offsets[r + 1]) for r in rows_np]
        bag = torch.as_tensor(np.repeat(np.arange(len(rows_np)), [len(i) for i in index]), device=rows.device)
        lesions = torch.as_tensor(np.concatenate(index) if index else np.zeros(0, np.int64), device=rows.device)
        patches = self.data[lesions]  # advanced indexing: a copy, flipped in place below
        if self.training and len(patches):
            draws = torch.rand(len(patches), 3, generator=self.flips) < 0.5
            for axis in range(3):
                chosen = torch.nonzero(draws[:, axis]).flatten().to(patches.device)
                if len(chosen):
                    patches[chosen] = patches[chosen].flip(axis + 2)
        return self.net(patches, bag, self.clinical[rows])


@dataclass
class FitResult:
    """A trained :class:`LesionBagCox`, its Breslow baseline and the training record."""

    net: LesionBagCox
    baseline_time: np.ndarray
    baseline_cumhaz: np.ndarray
    history: TrainResult


_DEFAULTS = DEFAULTS["cnn_survival"]


@dataclass(frozen=True)
class CnnTraining:
    """How :func:`fit_lesion_bag_cox` trains the network: its size (``latent``, ``width``, ``hidden``,
    ``dropout``) and training (``max_epochs``, ``patience``, ``val_fraction``, ``batch_size`` in
    subjects, ``lr``, ``weight_decay``, ``seed``: as :class:`biomarkers.survival.deep.DeepSurvivalModel`).
    The defaults are the ``cnn_survival`` model's (:data:`~biomarkers.survival.hyperparameters.DEFAULTS`)."""

    latent: int = _DEFAULTS["latent"]
    width: int = _DEFAULTS["width"]
    hidden: int = _DEFAULTS["hidden"]
    dropout: float = _DEFAULTS["dropout"]
    max_epochs: int = _DEFAULTS["max_epochs"]
    patience: int = _DEFAULTS["patience"]
    val_fraction: float = _DEFAULTS["val_fraction"]
    batch_size: int = _DEFAULTS["batch_size"]
    lr: float = _DEFAULTS["lr"]
    weight_decay: float = _DEFAULTS["weight_decay"]
    seed: int = _DEFAULTS["seed"]

    @classmethod
    def from_hyperparameters(cls, params: Mapping[str, Any]) -> "CnnTraining":
        """The training settings among a ``cnn_survival`` model's hyperparameters (the rest, e.g.
        ``mc_samples``, are the scoring's)."""
        return cls(**{f.name: params[f.name] for f in fields(cls) if f.name in params})


def fit_lesion_bag_cox(bags: Sequence[np.ndarray], clinical: np.ndarray, time: np.ndarray, event: np.ndarray,
                       settings: CnnTraining = CnnTraining(), *, device: str = "cpu",
                       encoder_state: dict | None = None, freeze_encoder: bool = False) -> FitResult:
    """Train the network on a cohort's lesion bags and clinical covariates (module docstring).

    Parameters
    ----------
    bags : sequence of ndarray (n_i, C, D, H, W)
        Lesion patches of each subject (n_i may be 0).
    clinical : ndarray (n_subjects, p)
        Standardised clinical covariates (p may be 0).
    time, event : ndarray (n_subjects,)
        Follow-up and event indicator.
    settings : CnnTraining
        Network size and training.
    device : {"cpu", "cuda", "auto"}
        Where it trains.
    encoder_state : dict, optional
        Pretrained weights of the patch encoder (transfer learning: e.g. the encoder of an
        autoencoder trained on patches without outcomes, :mod:`biomarkers.survival.pretraining`);
        the rest of the network starts from the seed's initialisation.
    freeze_encoder : bool
        Keep the pretrained encoder fixed and train only the pooling and the head.
    """
    s = settings
    clinical = np.asarray(clinical, dtype=np.float32).reshape(len(bags), -1)
    time, event = np.asarray(time, np.float64), np.asarray(event).astype(np.int64)
    if not len(bags) == len(clinical) == len(time) == len(event):
        raise ValueError("bags, clinical, time and event must have one entry per subject")
    if not np.isfinite(clinical).all():
        raise ValueError("clinical covariates contain NaN or infinite values; impute and standardise first")
    if event.sum() < 2:
        raise ValueError(f"need at least 2 events to fit a survival model, got {event.sum()}")
    patches, _, offsets = flatten_bags(bags)
    if not len(patches):
        raise ValueError("no lesion patch in the training cohort")
    dev = resolve_device(device)
    train_idx, val_idx = stratified_split(event, s.val_fraction, s.seed)
    with seeded_deterministic(s.seed, dev):
        net = LesionBagCox(patches.shape[1], patches.shape[2:], clinical.shape[1], s.latent, s.width, s.hidden,
                           s.dropout).to(dev)
        if encoder_state is not None:
            net.encoder.load_state_dict(encoder_state)
        if freeze_encoder:
            if encoder_state is None:
                raise ValueError("freeze_encoder needs a pretrained encoder_state")
            net.encoder.requires_grad_(False)
        cohort = _Cohort(net, torch.as_tensor(patches, device=dev), offsets,
                         torch.as_tensor(clinical, device=dev), torch.Generator().manual_seed(int(s.seed) + 1))
        rows = torch.arange(len(bags), device=dev)
        targets = [torch.as_tensor(time, dtype=torch.float32, device=dev),
                   torch.as_tensor(event, dtype=torch.float32, device=dev)]
        history = train(cohort, cox_loss, rows, targets, train_idx, val_idx, seed=s.seed, max_epochs=s.max_epochs,
                        batch_size=s.batch_size, lr=s.lr, weight_decay=s.weight_decay, patience=s.patience)
    net.eval()
    risk = risk_samples(net, bags, clinical, 0)[0]
    baseline_time, baseline_cumhaz = breslow_baseline(time, event, risk)
    return FitResult(net, baseline_time, baseline_cumhaz, history)


def subject_representations(net: LesionBagCox, bags: Sequence[np.ndarray], clinical: np.ndarray,
                            chunk: int = 64) -> torch.Tensor:
    """Pooled representations of every subject (eval mode, no gradient), ``chunk`` subjects at a time."""
    device = next(net.parameters()).device
    clinical = np.asarray(clinical, dtype=np.float32).reshape(len(bags), -1)
    net.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(bags), chunk):
            part = bags[start:start + chunk]
            if not len(part):
                continue
            patches, bag, _ = flatten_bags(part)
            if not len(patches):
                patches = np.zeros((0, net.in_channels, *net.shape), np.float32)
            out.append(net.pooled(torch.as_tensor(patches, device=device), torch.as_tensor(bag, device=device),
                                  torch.as_tensor(clinical[start:start + chunk], device=device)))
    width = net.latent + BURDEN + net.n_clinical
    return torch.cat(out) if out else torch.zeros(0, width, device=device)


def risk_samples(net: LesionBagCox, bags: Sequence[np.ndarray], clinical: np.ndarray, mc_samples: int,
                 seed: int = 0) -> np.ndarray:
    """Log-hazard ratios (T, n_subjects): T = 1 without dropout (``mc_samples`` 0), else T MC-dropout samples."""
    z = subject_representations(net, bags, clinical)
    with torch.no_grad():
        if mc_samples <= 0 or net.dropout == 0.0:
            return net.head(z).cpu().numpy().astype(np.float64)[None, :, 0]
        masks = draw_masks(seed, z, mc_samples, [net.hidden], net.dropout)
        out = mc_forward_batched(net.head, z, [m.to(z.device) for m in masks])
    return out[:, :, 0].cpu().numpy().astype(np.float64)


def network_bytes(net: LesionBagCox) -> bytes:
    """``torch.save`` of the configuration and weights through a buffer (same weights, same bytes)."""
    buffer = io.BytesIO()
    torch.save({"config": net.config(), "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}},
               buffer)
    return buffer.getvalue()


def load_network(data: bytes | str, device: str = "cpu") -> LesionBagCox:
    """Inverse of :func:`network_bytes` (from the bytes or a file path), in eval mode on ``device``."""
    dev = resolve_device(device)
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    state = torch.load(source, map_location=dev, weights_only=True)
    net = LesionBagCox(**state["config"])
    net.load_state_dict(state["state_dict"])
    return net.to(dev).eval()
