"""Feature extraction: our per-lesion extraction against plain pyradiomics, and SUVpeak speed.

Usage: python bench/feature_extraction.py [RESULTS_DIR] [--subjects N] [--params pet|PATH] [--repeats R]

1. For the first N subjects of a finished workflow run (default results/demo, N = 40), on
   the same SUV image, the same lesion label image and the same parameter file:

   * ours:  ``biomarkers.features.lesions.lesion_features`` (reads both images, PET metrics,
     pyradiomics on every label, bookkeeping);
   * plain: pyradiomics' own ``RadiomicsFeatureExtractor.execute`` on every label, the two
     images read once with SimpleITK and the labels found with numpy (what a user would write).

   Both run in the same process, interleaved subject by subject, best of R repeats each, so
   machine noise hits both alike. Target: ours / plain within 1.1.

2. Throughput against pyradiomics' own batch command line: the same N subjects' lesions
   extracted by ``pyradiomics BATCH.csv --jobs 2`` (one row per lesion label, two worker
   processes) and by the workflow's way, ``biomarkers batch`` over two chunks run side by side
   (each chunk one process, libraries loaded once, PET metrics included), timed in the same run;
   every radiomics value of ours is checked against pyradiomics' CSV. Target: ours at least
   1.5 times faster.

3. The time of the IBSI local and global SUVpeak on a 200 x 200 x 300 volume: the sphere
   mean of every voxel (``local_mean``, the worst case of one ROI covering the whole image)
   and ``pet_metrics`` with ten lesions, at three voxel sizes. Target: well under a second.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk


def extraction_ratio(results: Path, n_subjects: int, params: str, repeats: int) -> pd.DataFrame:
    from radiomics import featureextractor

    from biomarkers.features.lesions import lesion_features
    from biomarkers.features.radiomics import make_extractor, resolve_params

    sheet = pd.read_csv(results / "cohort" / "subjects.tsv", sep="\t")
    folder = results / "cohort"
    make_extractor(params)  # quiet pyradiomics' logging
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    plain_extractor = featureextractor.RadiomicsFeatureExtractor(str(resolve_params(params)))
    rows = []
    for sid, pet in zip(sheet["subject_id"][:n_subjects], sheet["pet"][:n_subjects]):
        image_path, mask_path = folder / pet, results / "segmentation" / f"{sid}_lesions.nii.gz"

        def ours():
            return lesion_features(image_path, mask_path, sid, params)[0]

        def plain():
            image, mask = sitk.ReadImage(str(image_path)), sitk.ReadImage(str(mask_path))
            labels = np.unique(sitk.GetArrayViewFromImage(mask))
            return [plain_extractor.execute(image, mask, label=int(label)) for label in labels[labels > 0]]

        best = {"ours": np.inf, "plain": np.inf}
        for _ in range(repeats):
            for name, run in (("ours", ours), ("plain", plain)):
                start = time.perf_counter()
                out = run()
                best[name] = min(best[name], time.perf_counter() - start)
        rows.append({"subject_id": sid, "lesions": len(out), "ours_s": best["ours"], "plain_s": best["plain"]})
    return pd.DataFrame(rows)


def batch_throughput(results: Path, n_subjects: int, params: str, workdir: Path) -> dict:
    import json
    import subprocess
    import sys

    from biomarkers.features.radiomics import resolve_params

    sheet = pd.read_csv(results / "cohort" / "subjects.tsv", sep="\t").iloc[:n_subjects]
    params_path = str(resolve_params(params))
    workdir.mkdir(parents=True, exist_ok=True)
    rows, tasks = [], []
    for sid, pet in zip(sheet["subject_id"], sheet["pet"]):
        # absolute: pyradiomics reads relative paths against the batch file's folder
        image = (results / "cohort" / pet).resolve()
        mask = (results / "segmentation" / f"{sid}_lesions.nii.gz").resolve()
        labels = np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(mask))))  # a copy: a view of a temporary image is freed memory
        rows += [{"ID": f"{sid}:{int(label)}", "Image": str(image), "Mask": str(mask), "Label": int(label)}
                 for label in labels[labels > 0]]
        tasks.append(["features", "--image", str(image), "--mask", str(mask), "--params", params_path,
                      "--subject-id", sid, "--out", str(workdir / f"{sid}.parquet")])
    pd.DataFrame(rows).to_csv(workdir / "batch.csv", index=False)
    bin_dir = Path(sys.executable).parent
    start = time.perf_counter()
    subprocess.run([str(bin_dir / "pyradiomics"), str(workdir / "batch.csv"), "--param", params_path, "--jobs", "2",
                    "--format", "csv", "--out", str(workdir / "pyradiomics.csv"), "--verbosity", "1"],
                   check=True, capture_output=True)
    plain = time.perf_counter() - start
    halves = [tasks[: (len(tasks) + 1) // 2], tasks[(len(tasks) + 1) // 2:]]
    start = time.perf_counter()
    procs = [subprocess.Popen([str(bin_dir / "biomarkers"), "batch", "--tasks", json.dumps(half)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for half in halves if half]
    if any(p.wait() for p in procs):
        raise SystemExit("biomarkers batch failed")
    ours = time.perf_counter() - start
    reference = pd.read_csv(workdir / "pyradiomics.csv").set_index("ID")
    if not any(c.startswith("original_") for c in reference.columns):  # it reports failed cases only in its log
        raise SystemExit(f"pyradiomics' batch command extracted nothing (see {workdir / 'pyradiomics.csv'})")
    failed = reference.index[reference.filter(like="original_").isna().all(axis=1)]
    if len(failed):
        raise SystemExit(f"pyradiomics' batch command failed on {len(failed)} lesion(s), e.g. {failed[0]}")
    worst, compared = 0.0, 0
    for sid in sheet["subject_id"]:
        table = pd.read_parquet(workdir / f"{sid}.parquet")
        for _, lesion in table.iterrows():
            expected = reference.loc[f"{sid}:{int(lesion['lesion_id'])}"]
            names = [c for c in table.columns if c.startswith("original_") or c.startswith(("log-", "wavelet-"))]
            got = lesion[names].to_numpy(float)
            want = expected[names].to_numpy(float)
            both = np.isfinite(got) & np.isfinite(want)
            if not np.array_equal(np.isfinite(got), np.isfinite(want)):
                raise SystemExit(f"{sid} lesion {lesion['lesion_id']}: missing values differ from pyradiomics")
            rel = np.abs(got[both] - want[both]) / np.maximum(np.abs(want[both]), 1e-12)
            worst = max(worst, float(rel.max(initial=0.0)))
            compared += int(both.sum())
    return {"subjects": len(sheet), "lesions": len(rows), "pyradiomics_s": plain, "ours_s": ours,
            "values": compared, "max_rel_diff": worst}


def peak_times(repeats: int = 3) -> pd.DataFrame:
    from biomarkers.features.pet import local_mean, pet_metrics

    rng = np.random.default_rng(0)
    shape = (300, 200, 200)  # (z, y, x): 200 x 200 in-plane, 300 slices
    image = rng.gamma(4.0, 0.5, size=shape)
    labels = np.zeros(shape, np.int32)
    centres = rng.integers([20, 20, 20], [280, 180, 180], size=(10, 3))
    for lesion, (z, y, x) in enumerate(centres, start=1):
        radius = 3 if lesion > 1 else 12  # one bulky lesion, nine small ones
        labels[z - radius:z + radius, y - radius:y + radius, x - radius:x + radius] = lesion
        image[labels == lesion] += 5.0
    rows = []
    for spacing in ((4.0, 4.07, 4.07), (3.0, 2.0, 2.0), (2.0, 2.0, 2.0)):
        for name, run in (("local_mean, every voxel", lambda: local_mean(image, spacing)),
                          ("pet_metrics, 10 lesions", lambda: pet_metrics(image, labels, spacing))):
            best = np.inf
            for _ in range(repeats):
                start = time.perf_counter()
                run()
                best = min(best, time.perf_counter() - start)
            rows.append({"spacing_zyx_mm": "x".join(f"{s:g}" for s in spacing), "what": name, "seconds": best})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", nargs="?", default="results/demo", type=Path)
    parser.add_argument("--subjects", type=int, default=40)
    parser.add_argument("--params", default="pet")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    pd.set_option("display.width", 120)

    print("SUVpeak (IBSI local and global intensity peak) on a 200 x 200 x 300 volume, best of 3:")
    print(peak_times().to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print()
    if not (args.results / "segmentation").is_dir():
        raise SystemExit(f"no segmentation under {args.results}; run `make demo` first for the extraction figures")
    table = extraction_ratio(args.results, args.subjects, args.params, args.repeats)
    ours, plain = table["ours_s"].sum(), table["plain_s"].sum()
    print(f"Feature extraction, {len(table)} subjects, {table['lesions'].sum()} lesions, params {args.params}, "
          f"best of {args.repeats}:")
    print(f"  ours (lesion_features: read, PET metrics, pyradiomics per label): {ours:8.2f} s")
    print(f"  plain pyradiomics (extractor.execute per label):                  {plain:8.2f} s")
    print(f"  ratio ours / plain: {ours / plain:.3f}   (target <= 1.1)")
    print(f"  per subject: median ratio {np.median(table['ours_s'] / table['plain_s']):.3f}, "
          f"max {np.max(table['ours_s'] / table['plain_s']):.3f}")
    print()
    t = batch_throughput(args.results, args.subjects, args.params, args.results / "bench" / "feature_batch")
    print(f"Throughput, {t['subjects']} subjects, {t['lesions']} lesions, 2 processes each:")
    print(f"  pyradiomics batch CLI (--jobs 2, one row per lesion):     {t['pyradiomics_s']:8.2f} s")
    print(f"  biomarkers batch (2 chunks side by side, + PET metrics): {t['ours_s']:8.2f} s")
    print(f"  speed-up: {t['pyradiomics_s'] / t['ours_s']:.2f} x   (target >= 1.5); {t['values']} radiomics values "
          f"compared, largest relative difference {t['max_rel_diff']:.2e}")


if __name__ == "__main__":
    main()
