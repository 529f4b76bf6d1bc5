"""The study at several cohort sizes: wall time, CPU seconds per subject of every stage, and the
peak memory of any one job, from Snakemake's benchmark files.

    python bench/scale.py [--subjects 50,150,450] [--chunk-size 25] [--cores 2] [--out results/scale]

Each size is the demo's simulated study (same seed, centres and settings) with the U-Net and the
CNN features off, a lighter radiomics file (bench/light_params.yaml: original image, the feature
classes the models read) and the handcrafted models (coxph, coxnet, rsf, deepsurv, clinical) with
their nested cross-validation. Per-subject CPU seconds of a stage are its jobs' CPU time over the
subjects it handled; the last line compares the largest size with the smallest (flat = 1.0).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
#: Stages whose cost grows with the cohort, and the per-subject outputs they write.
PER_SUBJECT = {"simulate": "cohort/images/*_pet.nii.gz", "segment": "segmentation/*_lesions.nii.gz",
               "features": "features/lesions/*.parquet", "stability": "stability/lesions/*.parquet"}


def study_config(n_subjects: int, results: Path, chunk_size: int) -> dict:
    config = yaml.safe_load((ROOT / "cohorts" / "demo" / "config.yaml").read_text())
    config.update(results=str(results), chunk_size=chunk_size,
                  radiomics_params=str(ROOT / "bench" / "light_params.yaml"))
    config["simulate"]["subjects"] = n_subjects
    config["unet"]["enabled"] = False
    config["deep_features"]["enabled"] = False
    config["models"] = {name: entry for name, entry in config["models"].items()
                        if name in ("coxph", "coxnet", "rsf", "deepsurv", "clinical")}
    config["evaluation"]["bootstrap"] = 200
    return config


def benchmarks(results: Path) -> pd.DataFrame:
    rows = []
    for path in sorted((results / "benchmarks").rglob("*.tsv")):
        parts = path.relative_to(results / "benchmarks").parts
        table = pd.read_csv(path, sep="\t", na_values="-")
        rows.append({"stage": parts[0] if len(parts) > 1 else path.stem, "cpu_s": float(table["cpu_time"].iloc[0]),
                     "max_rss_mb": float(table["max_rss"].iloc[0])})
    return pd.DataFrame(rows)


def run_size(n_subjects: int, out: Path, chunk_size: int, cores: int) -> tuple[float, pd.DataFrame]:
    results = out / f"n{n_subjects}"
    config_path = out / f"n{n_subjects}.yaml"
    out.mkdir(parents=True, exist_ok=True)
    config_path.write_text(yaml.safe_dump(study_config(n_subjects, results, chunk_size), sort_keys=False))
    start = time.perf_counter()
    # the rules call `biomarkers`: the interpreter's bin/ first on PATH, as `make` does
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(cores), "--configfile", str(config_path),
                           "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"n={n_subjects}: the workflow failed:\n{proc.stderr[-3000:]}")
    table = benchmarks(results)
    per_stage = table.groupby("stage").agg(jobs=("cpu_s", "size"), cpu_s=("cpu_s", "sum"),
                                           peak_mb=("max_rss_mb", "max"))
    counts = {stage: len(list(results.glob(pattern))) for stage, pattern in PER_SUBJECT.items()}
    per_stage["subjects"] = [counts.get(stage, n_subjects) for stage in per_stage.index]
    per_stage["cpu_s_per_subject"] = per_stage["cpu_s"] / per_stage["subjects"]
    return wall, per_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", default="50,150,450")
    parser.add_argument("--chunk-size", type=int, default=25)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "scale")
    args = parser.parse_args()
    sizes = [int(s) for s in args.subjects.split(",")]
    walls, tables = {}, {}
    for n in sizes:
        walls[n], tables[n] = run_size(n, args.out, args.chunk_size, args.cores)
        print(f"n={n}: workflow {walls[n]:.0f} s wall on {args.cores} cores, "
              f"{tables[n]['cpu_s'].sum() / n:.2f} CPU s per subject in all", flush=True)
    cpu = pd.DataFrame({f"cpu_s/subject n={n}": t["cpu_s_per_subject"] for n, t in tables.items()})
    peak = pd.DataFrame({f"peak_mb n={n}": t["peak_mb"] for n, t in tables.items()})
    table = pd.concat([cpu, peak], axis=1)
    pd.set_option("display.width", 200)
    print(table.round(2).to_string())
    small, large = min(sizes), max(sizes)
    total = {n: t["cpu_s"].sum() / n for n, t in tables.items()}
    print(f"\nCPU s per subject, n={large} / n={small}: {total[large] / total[small]:.2f}; "
          f"largest peak memory of a job: {max(t['peak_mb'].max() for t in tables.values()):.0f} MB")


if __name__ == "__main__":
    main()
