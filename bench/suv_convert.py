"""Time of DICOM PET -> SUV against a plain SimpleITK series read of the same files.

Usage: python bench/suv_convert.py [--slices 300] [--size 200] [--repeats 3]

Writes a synthetic PET series (SIZE x SIZE x SLICES, int16 with per-slice RescaleSlope) to a
temporary folder, then prints the median of REPEATS runs of:

* plain:   ``sitk.ImageSeriesReader`` (GDCM file ordering, then reading: rescaled values only);
* ours:    ``read_suv`` (folder scan, ordering, geometry checks, rescale, SUV) without writing;
* convert: ``convert_dicom_to_suv`` (the same plus the gzip NIfTI and the JSON sidecar);
* plain + write: the plain read plus writing the same gzip NIfTI, the fair pair of ``convert``.

The target is ours / plain <= 1.5. The first run of each is a warm-up (file cache, imports)
and is not counted.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from biomarkers.imaging.suv import convert_dicom_to_suv, read_suv
from biomarkers.io.images import write_image
from biomarkers.simulate.dicom import write_pet_dicom


def median_s(func: Callable[[], object], repeats: int) -> float:
    func()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def plain_read(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    suv = rng.gamma(2.0, 1.0, (args.slices, args.size, args.size)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_pet_dicom(suv, (2.0, 2.0, 3.0), (-200.0, -200.0, 0.0), Path(tmp) / "pet",
                                 "bench", 0)
        out = Path(tmp) / "suv.nii.gz"
        times = {
            "plain SimpleITK read": median_s(lambda: plain_read(folder), args.repeats),
            "ours read_suv": median_s(lambda: read_suv(folder, "bw"), args.repeats),
            "ours convert_dicom_to_suv (+ write)": median_s(
                lambda: convert_dicom_to_suv(folder, out, "bw"), args.repeats),
            "plain read + write": median_s(
                lambda: write_image(sitk.Cast(plain_read(folder), sitk.sitkFloat32),
                                    Path(tmp) / "plain.nii.gz"), args.repeats),
        }
    print(f"{args.size}x{args.size}x{args.slices} PET series, median of {args.repeats} runs")
    for name, seconds in times.items():
        print(f"  {name:40s} {seconds:7.3f} s")
    plain = times["plain SimpleITK read"]
    print(f"  ratio ours/plain (read):               {times['ours read_suv'] / plain:7.2f}  "
          "(target <= 1.5)")
    convert = times["ours convert_dicom_to_suv (+ write)"]
    print(f"  ratio convert/plain (read):            {convert / plain:7.2f}  (gzip NIfTI writing "
          "dominates)")
    print(f"  ratio convert/(plain read + write):    {convert / times['plain read + write']:7.2f}")


if __name__ == "__main__":
    main()
