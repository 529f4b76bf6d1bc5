"""Network, training loop, devices and dropout masks behind the survival networks
(:mod:`biomarkers.survival.deep`, :mod:`biomarkers.survival.cnn`) and the other trainings.

The loop is plain torch (torchtuples' data loader breaks on torch >= 2.6); pycox is used
only for its losses (:mod:`biomarkers.survival.losses`) and label transforms. Everything stochastic is seeded:
weight initialisation and training dropout from ``torch.manual_seed`` inside a forked RNG
(the caller's global RNG state is left untouched), batch order from a local
``torch.Generator``, the validation split from a numpy ``Generator`` and MC-dropout masks
from per-patient, per-layer ``torch.Generator`` streams keyed by the patient's inputs
(:func:`draw_masks`).
"""
from __future__ import annotations

import hashlib
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

# loss(output, *targets) -> scalar loss, or None when the batch carries no information
LossFn = Callable[..., "torch.Tensor | None"]


class MLP(nn.Module):
    """Linear -> ReLU -> [BatchNorm] -> Dropout per hidden layer, then a linear output.

    ``forward(x, masks)`` replaces the dropout draws by explicit, already scaled keep-masks
    (one per hidden layer, shape ``(rows, width)``, see :func:`draw_masks`), which is how MC
    dropout is made reproducible and identical between the batched and the looped
    implementation.
    """

    def __init__(self, n_in: int, hidden: Sequence[int], n_out: int, dropout: float,
                 batch_norm: bool) -> None:
        super().__init__()
        widths = [n_in, *hidden]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(b) for b in hidden) if batch_norm else nn.ModuleList()
        self.out = nn.Linear(widths[-1], n_out)
        self.dropout = float(dropout)

    def forward(self, x: torch.Tensor, masks: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        for i, linear in enumerate(self.hidden):
            h = F.relu(linear(x))
            if len(self.norms):
                h = self.norms[i](h)
            if masks is None:
                x = F.dropout(h, self.dropout, training=self.training)
            else:  # inverted dropout with a given scaled keep-mask
                x = h * masks[i]
        return self.out(x)


def draw_masks(seed: int, rows: np.ndarray, n_samples: int, widths: Sequence[int],
               p: float) -> list[torch.Tensor]:
    """Scaled keep-masks for ``n_samples`` dropout passes over the patients whose network inputs
    are ``rows`` (one row per patient).

    Each mask has shape (patients, T, width) and holds 0 (dropped) or ``1 / (1 - p)`` (kept,
    inverted-dropout scaling as in ``F.dropout``). A patient's masks of layer ``l`` come from a
    CPU generator seeded by ``seed``, ``l`` and the SHA-256 of the patient's input row, so that
    they depend on nothing else: not on the other patients of the batch, not on the patient's
    position in it, not on how the batch is chunked. A patient scored alone (a new patient
    through a frozen signature) gets the masks, and so the MC-dropout samples, the cohort gave.
    """
    keyed = np.ascontiguousarray(torch.as_tensor(rows).detach().cpu().numpy(), dtype=np.float64)
    masks = [torch.empty(len(keyed), n_samples, w) for w in widths]
    for i, row in enumerate(keyed):
        digest = hashlib.sha256(row.tobytes()).digest()
        for layer, mask in enumerate(masks):
            key = hashlib.sha256(digest + f"|{int(seed)}|{layer}".encode()).digest()
            generator = torch.Generator().manual_seed(int.from_bytes(key[:8], "little") >> 1)
            torch.rand(mask.shape[1:], generator=generator, out=mask[i])
    for mask in masks:  # in place: one buffer per layer
        mask.ge_(p).mul_(1.0 / (1.0 - p))
    return masks


def resolve_device(name: str) -> torch.device:
    """``"auto"`` (CUDA when available, else the CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {name!r}")
    return torch.device(name)


@contextmanager
def seeded_deterministic(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch and enforce deterministic kernels; restore RNG state and settings on exit.

    On CUDA, cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG`` for bitwise determinism; there the
    setting only warns, so GPU training is reproducible in distribution, not bit for bit.
    """
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=bool(cuda))
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def stratified_split(event: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation row indices, the same share of events in each part."""
    n = len(event)
    if val_fraction <= 0:
        return np.arange(n), np.arange(0)
    if not 0 < val_fraction < 0.5:
        raise ValueError(f"val_fraction must be in [0, 0.5), got {val_fraction}")
    rng = np.random.default_rng(seed)
    val = []
    for stratum in (np.flatnonzero(event == 1), np.flatnonzero(event != 1)):
        k = int(round(val_fraction * len(stratum)))
        val.append(rng.permutation(stratum)[:k])
    val_idx = np.sort(np.concatenate(val))
    return np.setdiff1d(np.arange(n), val_idx), val_idx


def batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Shuffled row indices cut into ``max(1, n // batch_size)`` near-equal batches.

    No batch is smaller than ``batch_size`` (unless ``n`` is): the remainder is spread over
    the others instead of forming a tiny last batch, whose Cox partial likelihood (risk sets
    inside the batch) would be very noisy and which batch-norm cannot handle.
    """
    order = torch.randperm(n, generator=generator)
    return list(torch.tensor_split(order, max(1, n // batch_size)))


@dataclass
class TrainResult:
    """What :func:`train` reports: per-epoch losses and the epoch whose weights were kept."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0
    skipped_batches: int = 0


def train(net: MLP, loss_fn: LossFn, x: torch.Tensor, targets: Sequence[torch.Tensor],
          train_idx: np.ndarray, val_idx: np.ndarray, *, seed: int, max_epochs: int, batch_size: int,
          lr: float, weight_decay: float, patience: int) -> TrainResult:
    """AdamW mini-batch training with early stopping on the validation loss.

    The weights of the epoch with the lowest validation loss are restored at the end
    (without a validation part, the last epoch's weights are kept). Batches for which
    ``loss_fn`` returns ``None`` (a Cox batch without events) are skipped.
    """
    device = x.device
    tr = torch.as_tensor(train_idx, dtype=torch.long, device=device)
    va = torch.as_tensor(val_idx, dtype=torch.long, device=device)
    optimiser = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    shuffle = torch.Generator().manual_seed(int(seed))
    result, best, best_state, stale = TrainResult(), math.inf, None, 0
    for epoch in range(max_epochs):
        net.train()
        losses = []
        for rows in batches(len(tr), batch_size, shuffle):
            idx = tr[rows.to(device)]
            loss = loss_fn(net(x[idx]), *(t[idx] for t in targets))
            if loss is None:
                result.skipped_batches += 1
                continue
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
        result.train_loss.append(float(np.mean(losses)) if losses else math.nan)
        if len(va) == 0:
            result.val_loss.append(math.nan)
            result.best_epoch = epoch
            continue
        net.eval()
        with torch.no_grad():
            val = loss_fn(net(x[va]), *(t[va] for t in targets))
        val = math.nan if val is None else float(val)
        result.val_loss.append(val)
        if val < best:
            best, stale, result.best_epoch = val, 0, epoch
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            stale += 1
            if stale >= patience:
                break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return result


def mc_forward_loop(net: MLP, x: torch.Tensor, masks: Sequence[torch.Tensor]) -> torch.Tensor:
    """Reference MC dropout: one forward pass per sample, stacked to (T, rows, outputs)."""
    net.eval()
    with torch.no_grad():
        return torch.stack([net(x, [m[:, t] for m in masks]) for t in range(masks[0].shape[1])])


def mc_forward_batched(net: MLP, x: torch.Tensor, masks: Sequence[torch.Tensor]) -> torch.Tensor:
    """MC dropout as one forward pass over every (patient, sample) row; returns (T, rows, outputs).

    Rows are patient-major (``x`` repeated T times per patient), matching the layout of
    :func:`draw_masks`, so the masks are reshaped without a copy.
    """
    rows, n_samples = masks[0].shape[:2]
    net.eval()
    with torch.no_grad():
        out = net(x.repeat_interleave(n_samples, dim=0), [m.reshape(rows * n_samples, -1) for m in masks])
    return out.reshape(rows, n_samples, -1).transpose(0, 1)
