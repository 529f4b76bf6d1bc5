"""Speed of the 3D U-Net: sliding-window inference per volume and training per epoch.

Usage: python bench/unet.py [--subjects SHEET --cohort validation] [--volumes 2] [--epochs 3]
                            [--patches 16] [--batch-size 2] [--patch 48] [--threads N] [--seed 0]

Prints, on the CPU and, when ``torch.cuda.is_available()``, on the GPU:

1. inference seconds per volume: sliding window (training patch size, 50 % overlap, Gaussian
   blending, ``--batch-size`` windows per pass) over demo-sized synthetic volumes of
   120 x 86 x 213 voxels (x, y, z; a body cylinder with hot spheres), or over the first
   ``--volumes`` subjects of ``--cohort`` in ``--subjects``;
2. training seconds per epoch of ``--patches`` patches in batches of ``--batch-size``
   (patch sampling and augmentation included): after a warm-up run, the time of a
   ``1 + --epochs`` epoch run minus that of a 1-epoch run, divided by ``--epochs``, so that case
   preparation and start-up drop out.

The network is ``UNet3D(2, --base-channels, --depth)`` with random (seeded) weights: speed does
not depend on the weights. On shared cores, CPU figures depend on the load, which is printed.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from biomarkers.segment.unet_infer import sliding_window_probabilities
from biomarkers.deep.normalise import input_channels
from biomarkers.deep.unet import UNet3D
from biomarkers.segment.unet_settings import UNetTraining
from biomarkers.segment.unet_train import read_case, train_unet
from biomarkers.io.subjects import read_subjects

DEMO_SHAPE_ZYX = (213, 86, 120)


def synthetic_case(seed: int, shape: tuple[int, int, int] = DEMO_SHAPE_ZYX) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SUV, HU and label of a body cylinder (SUV ~1, 40 HU) in air with three hot spheres (SUV 8)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    body = ((y - shape[1] / 2) / (0.45 * shape[1])) ** 2 + ((x - shape[2] / 2) / (0.45 * shape[2])) ** 2 <= 1
    body = np.broadcast_to(body, shape)
    label = np.zeros(shape, dtype=np.uint8)
    for _ in range(3):
        c = [rng.integers(s // 4, 3 * s // 4) for s in shape]
        label[(z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= rng.uniform(2, 5) ** 2] = 1
    suv = np.where(body, rng.gamma(4.0, 0.25, shape), 0.0).astype(np.float32)
    suv[label > 0] = 8.0
    hu = np.where(body, rng.normal(40, 20, shape), -1000.0).astype(np.float32)
    return suv, hu, label


def load_cases(args: argparse.Namespace) -> tuple[list, str]:
    if args.subjects is None:
        return [synthetic_case(args.seed + i) for i in range(args.volumes)], \
            f"synthetic {' x '.join(map(str, DEMO_SHAPE_ZYX[::-1]))} (x y z) volumes"
    sheet = read_subjects(args.subjects, required=["subject_id", "cohort", "pet", "ct", "mask"])
    rows = sheet[sheet["cohort"] == args.cohort].head(args.volumes)
    cases = [read_case(r.pet, r.ct, r.mask, r.subject_id) for r in rows.itertuples(index=False)]
    cases = [(c.suv, c.hu, c.lesions) for c in cases]
    shapes = ", ".join(" x ".join(map(str, c[0].shape[::-1])) for c in cases)
    return cases, f"{len(cases)} {args.cohort} subjects of {args.subjects} ({shapes} x y z)"


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_inference(cases: list, device: str, args: argparse.Namespace) -> float:
    torch.manual_seed(args.seed)
    model = UNet3D(2, args.base_channels, args.depth).to(device).eval()
    window = (args.patch,) * 3
    channels = [input_channels(suv, hu) for suv, hu, _ in cases]
    sliding_window_probabilities(channels[0][:, :args.patch, :args.patch, :args.patch], model, window,
                                 batch_size=args.batch_size)  # warm-up
    sync(device)
    start = time.perf_counter()
    for c in channels:
        sliding_window_probabilities(c, model, window, overlap=0.5, batch_size=args.batch_size)
    sync(device)
    return (time.perf_counter() - start) / len(channels)


def bench_training(cases: list, device: str, args: argparse.Namespace) -> float:
    def run(epochs: int) -> float:
        sync(device)
        start = time.perf_counter()
        settings = UNetTraining(epochs, args.patches, args.batch_size, 1e-3, seed=args.seed, device=device,
                                patch_size=(args.patch,) * 3, base_channels=args.base_channels, depth=args.depth)
        train_unet(cases, None, settings, progress=False)
        sync(device)
        return time.perf_counter() - start

    run(1)  # warm-up: the first passes build the convolution kernels for these shapes
    one = run(1)
    return (run(1 + args.epochs) - one) / args.epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", help="subjects sheet (default: synthetic demo-sized volumes)")
    parser.add_argument("--cohort", default="validation")
    parser.add_argument("--volumes", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--patches", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--base-channels", type=int, default=8)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cases, what = load_cases(args)
    print(f"UNet3D(2, {args.base_channels}, {args.depth}), patch/window {args.patch}^3, batch {args.batch_size}, "
          f"torch {torch.__version__}; data: {what}")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        name = (f"CPU, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}" if device == "cpu"
                else f"GPU {torch.cuda.get_device_name()}")
        infer = bench_inference(cases, device, args)
        train = bench_training(cases, device, args)
        print(f"{name}:")
        print(f"  inference (sliding window, 50 % overlap): {infer:8.2f} s/volume")
        print(f"  training ({args.patches} patches/epoch, batch {args.batch_size}): {train:8.2f} s/epoch "
              f"({train / args.patches * 1000:.0f} ms/patch)")


if __name__ == "__main__":
    main()
