"""Why the end-to-end CNN (:class:`~biomarkers.survival.cnn.LesionBagCox`) gives a patient its risk.

Three per-patient explanations, all of the deterministic score (dropout off):

attention weight
    The gated-attention weight ``a_i`` of every lesion (they sum to 1 over the patient's lesions):
    which lesion the attention pooling reads. The burden pooling sums over every lesion and has
    no weights, so attention alone is not the whole story; hence
leave-one-lesion-out
    ``risk(all lesions) - risk(without lesion i)``: how much lesion i adds to the log-hazard, through
    both poolings (Zeiler and Fergus-style occlusion at the level of the lesion);
occlusion map
    Within a lesion's patch, ``risk - risk(with a cube of side window replaced by the patch's own
    per-channel median)`` for non-overlapping cubes (Zeiler and Fergus 2014, ECCV): which part of the
    patch the score depends on, in the patch's voxels.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from biomarkers.survival.cnn import LesionBagCox


def _risk(net: LesionBagCox, patches: np.ndarray, clinical: np.ndarray) -> np.ndarray:
    """Deterministic log-hazard of one patient for each of a batch of lesion sets ``patches`` (B, n, C, D, H, W)."""
    b, n = patches.shape[:2]
    flat = torch.as_tensor(patches.reshape(b * n, *patches.shape[2:]), dtype=torch.float32)
    bag = torch.as_tensor(np.repeat(np.arange(b), n))
    clin = torch.as_tensor(np.repeat(np.asarray(clinical, np.float32).reshape(1, -1), b, axis=0))
    with torch.no_grad():
        return net(flat, bag, clin)[:, 0].numpy().astype(np.float64)


def attention_weights(net: LesionBagCox, patches: np.ndarray) -> np.ndarray:
    """Attention weight of each of one patient's lesions ``patches`` (n, C, D, H, W); sums to 1."""
    net.eval()
    if not len(patches):
        return np.zeros(0)
    with torch.no_grad():
        h = net.encoder(torch.as_tensor(patches, dtype=torch.float32))
        score = net.att_w(torch.tanh(net.att_v(h)) * torch.sigmoid(net.att_u(h)))[:, 0]
        return torch.softmax(score, dim=0).numpy().astype(np.float64)


def lesion_contributions(net: LesionBagCox, patches: np.ndarray, clinical: np.ndarray) -> np.ndarray:
    """``risk(all) - risk(without lesion i)`` for each lesion of one patient."""
    net.eval()
    n = len(patches)
    if not n:
        return np.zeros(0)
    full = _risk(net, patches[None], clinical)[0]
    out = np.empty(n)
    for i in range(n):
        rest = np.delete(patches, i, axis=0)
        if len(rest):
            out[i] = full - _risk(net, rest[None], clinical)[0]
        else:  # the patient's only lesion: against no lesion at all
            empty = torch.zeros((0, *patches.shape[1:]))
            with torch.no_grad():
                none = net(empty, torch.zeros(0, dtype=torch.long),
                           torch.as_tensor(np.asarray(clinical, np.float32).reshape(1, -1)))[0, 0].item()
            out[i] = full - none
    return out


def occlusion_map(net: LesionBagCox, patches: np.ndarray, clinical: np.ndarray, lesion: int,
                  window: int = 4) -> np.ndarray:
    """Risk drop when each ``window``-voxel cube of lesion ``lesion``'s patch is replaced by the patch's
    per-channel median; shape (D, H, W), every voxel of a cube holding that cube's drop."""
    net.eval()
    d, h, w = patches.shape[2:]
    fill = np.median(patches[lesion].reshape(patches.shape[1], -1), axis=1)[:, None, None, None]
    corners = [(z, y, x) for z in range(0, d, window) for y in range(0, h, window) for x in range(0, w, window)]
    full = _risk(net, patches[None], clinical)[0]
    batch = np.repeat(patches[None], len(corners), axis=0)
    for k, (z, y, x) in enumerate(corners):
        batch[k, lesion, :, z:z + window, y:y + window, x:x + window] = fill
    drops = full - np.concatenate([_risk(net, batch[s:s + 32], clinical) for s in range(0, len(corners), 32)])
    out = np.zeros((d, h, w))
    for (z, y, x), v in zip(corners, drops):
        out[z:z + window, y:y + window, x:x + window] = v
    return out


def explain_patients(net: LesionBagCox, bags: Sequence[np.ndarray], clinical: np.ndarray, subject_ids: Sequence[str],
                     lesion_ids: Sequence[Sequence[int]]) -> list[dict]:
    """Per lesion of every patient: ``subject_id``, ``lesion``, ``attention``, ``contribution``."""
    rows = []
    for sid, patches, clin, ids in zip(subject_ids, bags, np.asarray(clinical, np.float32), lesion_ids):
        for lesion, a, c in zip(ids, attention_weights(net, patches), lesion_contributions(net, patches, clin)):
            rows.append({"subject_id": str(sid), "lesion": int(lesion), "attention": float(a), "contribution": float(c)})
    return rows
