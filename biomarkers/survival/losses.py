"""Training losses of the survival networks: pycox's, called on our tensors.

Shared by the tabular networks (:mod:`biomarkers.survival.deep`) and the end-to-end CNN
(:mod:`biomarkers.survival.cnn`).
"""
from __future__ import annotations

import torch


def cox_loss(log_h: torch.Tensor, time: torch.Tensor, event: torch.Tensor) -> torch.Tensor | None:
    """pycox's Cox partial-likelihood loss of log-hazards (n, 1); None for a batch without events."""
    from pycox.models.loss import CoxPHLoss
    if not bool(event.any()):
        return None
    return CoxPHLoss()(log_h[:, 0], time, event)


def logistic_hazard_loss(phi: torch.Tensor, idx: torch.Tensor, event: torch.Tensor) -> torch.Tensor:
    """pycox's negative log-likelihood of the discrete-time logistic hazard (Gensheimer and Narasimhan 2019)."""
    from pycox.models.loss import NLLLogistiHazardLoss
    return NLLLogistiHazardLoss()(phi, idx, event)


def deephit_loss(phi: torch.Tensor, idx: torch.Tensor, event: torch.Tensor, alpha: float,
                  sigma: float) -> torch.Tensor:
    """pycox's DeepHit single-risk loss (Lee et al. 2018): likelihood and ranking, weighted by ``alpha``."""
    from pycox.models.data import pair_rank_mat
    from pycox.models.loss import DeepHitSingleLoss
    rank = torch.as_tensor(pair_rank_mat(idx.cpu().numpy(), event.cpu().numpy()), device=phi.device)
    return DeepHitSingleLoss(alpha, sigma)(phi, idx, event, rank)
