"""Speed of the deep survival models: our training loop and batched MC dropout.

Usage: python bench/deep_survival.py [--epochs 50] [--patients 10000] [--samples 100] [--seed 0]

Prints
1. DeepSurv seconds per epoch of our torch loop against pycox/torchtuples' ``CoxPH.fit`` of the
   same network (same initial weights, batch size, AdamW settings, GBSG2 training part, a
   fixed number of epochs, no early stopping), and the ratio ours/pycox. If torchtuples
   fails on this torch version the exception is printed instead of a ratio.
2. MC-dropout scoring of synthetic patients (GBSG2's number of features) with T samples,
   for ``--patients`` and for a cohort-sized 200: batched forward passes (``predict_risk``)
   against a Python loop of T passes with the same masks, split into mask drawing and
   forward passes, and a naive loop with ``nn.Dropout`` in train mode for context.
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from sksurv.column import encode_categorical
from sksurv.datasets import load_gbsg2

from biomarkers.survival.deep import DeepSurvivalModel, _mc_outputs_loop
from biomarkers.deep.training import MLP, draw_masks, mc_forward_batched, mc_forward_loop

BATCH_SIZE, LR, WEIGHT_DECAY = 64, 1e-3, 1e-3


def gbsg2_train(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardised 70 % training part of GBSG2 (features, time, event)."""
    x, y = load_gbsg2()
    x = encode_categorical(x).to_numpy(dtype=float)
    train = np.random.default_rng(seed).permutation(len(x))[: int(0.7 * len(x))]
    x = x[train]
    return (x - x.mean(axis=0)) / x.std(axis=0), y["time"][train], y["cens"][train].astype(int)


def time_ours(x: np.ndarray, t: np.ndarray, e: np.ndarray, epochs: int, seed: int) -> float:
    start = time.perf_counter()
    DeepSurvivalModel("deepsurv", device="cpu").fit(x, t, e, seed=seed, max_epochs=epochs, batch_size=BATCH_SIZE,
                                                    lr=LR, weight_decay=WEIGHT_DECAY, val_fraction=0.0)
    return (time.perf_counter() - start) / epochs


def time_pycox(x: np.ndarray, t: np.ndarray, e: np.ndarray, epochs: int, seed: int) -> float:
    from pycox.models import CoxPH

    torch.manual_seed(seed)  # same initial weights as our fit with this seed
    net = MLP(x.shape[1], (32, 32), 1, 0.1, False)
    optimiser = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    model = CoxPH(net, optimiser, device="cpu")
    target = (t.astype(np.float32), e.astype(np.float32))
    start = time.perf_counter()
    model.fit(x.astype(np.float32), target, batch_size=BATCH_SIZE, epochs=epochs, verbose=False)
    return (time.perf_counter() - start) / epochs


def bench_training(epochs: int, seed: int) -> None:
    x, t, e = gbsg2_train(seed)
    time_ours(x, t, e, 2, seed)  # warm-up
    ours = time_ours(x, t, e, epochs, seed)
    print(f"1. DeepSurv training, GBSG2 training part ({len(x)} patients, {x.shape[1]} features), "
          f"MLP [32, 32], batch {BATCH_SIZE}, AdamW, {epochs} epochs, {torch.get_num_threads()} threads")
    print(f"   ours:   {1000 * ours:8.2f} ms/epoch")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            time_pycox(x, t, e, 2, seed)
            theirs = time_pycox(x, t, e, epochs, seed)
    except Exception as exc:  # torchtuples is known to break on newer torch; report why
        print(f"   pycox:  failed, no ratio ({type(exc).__name__}: {str(exc).strip().splitlines()[0]})")
        return
    print(f"   pycox:  {1000 * theirs:8.2f} ms/epoch (torchtuples CoxPH.fit)")
    print(f"   ratio ours/pycox: {ours / theirs:.2f}")


def _best_of(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_mc_dropout(patients: int, samples: int, seed: int) -> None:
    x, t, e = gbsg2_train(seed)
    model = DeepSurvivalModel("deepsurv", device="cpu").fit(x, t, e, seed=seed, max_epochs=40, val_fraction=0.0)
    net = model.net_
    print(f"2. MC dropout, synthetic patients x {x.shape[1]} features, T = {samples} (best of 3 runs)")
    for n in (patients, 200):
        z = np.random.default_rng(seed).standard_normal((n, x.shape[1]))
        batched = _best_of(lambda: model.predict_risk(z, mc_samples=samples, seed=seed))
        loop = _best_of(lambda: model._risk(_mc_outputs_loop(model, z, samples, seed)))
        mean, sd = model.predict_risk(z, mc_samples=samples, seed=seed)
        risk = model._risk(_mc_outputs_loop(model, z, samples, seed))
        diff = max(np.abs(mean - risk.mean(axis=0)).max(), np.abs(sd - risk.std(axis=0, ddof=1)).max())

        # the same split into mask drawing and forward passes
        masks = draw_masks(seed, z, samples, model.hidden, model.dropout)
        draw = _best_of(lambda: draw_masks(seed, z, samples, model.hidden, model.dropout))
        xt = torch.as_tensor(z, dtype=torch.float32)
        step = max(1, 2**14 // samples)
        fwd_batched = _best_of(lambda: [mc_forward_batched(net, xt[i:i + step], [m[i:i + step] for m in masks])
                                        for i in range(0, n, step)])
        fwd_loop = _best_of(lambda: mc_forward_loop(net, xt, masks))

        def naive() -> None:  # the usual recipe: nn.Dropout in train mode, global RNG
            with torch.no_grad(), torch.random.fork_rng():
                torch.manual_seed(seed)
                net.train()
                torch.stack([net(xt)[:, 0] for _ in range(samples)])
            net.eval()

        plain = _best_of(naive)
        print(f"   {n} patients:")
        print(f"     batched predict_risk (chunks of {step} patients):  {batched:7.3f} s")
        print(f"     loop of {samples} passes, same masks:            {loop:7.3f} s   "
              f"ratio batched/loop {batched / loop:.2f}   max |difference| {diff:.1e}")
        print(f"       of which drawing the masks: {draw:.3f} s; forward passes only: batched {fwd_batched:.3f} s, "
              f"loop {fwd_loop:.3f} s (ratio {fwd_batched / fwd_loop:.2f})")
        print(f"     naive loop, nn.Dropout in train mode:      {plain:7.3f} s   (masks from the global RNG)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    bench_training(args.epochs, args.seed)
    bench_mc_dropout(args.patients, args.samples, args.seed)


if __name__ == "__main__":
    main()
