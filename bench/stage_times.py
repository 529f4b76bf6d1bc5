"""Per-stage times of a finished workflow run, from Snakemake's `benchmark:` files.

Usage: python bench/stage_times.py [RESULTS_DIR]   (default results/demo)

Prints, per stage (rule), the number of jobs, the summed and mean wall seconds, the
slowest job, the summed CPU seconds and the largest peak memory. Snakemake runs jobs in parallel, so the sum over
stages is CPU-ish time, not the run's wall time; the wall time of the whole run is taken
from the first and last benchmark file's modification times when available.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd


def stage_table(results: Path) -> pd.DataFrame:
    bench = results / "benchmarks"
    rows = []
    for path in sorted(bench.rglob("*.tsv")):
        parts = path.relative_to(bench).parts  # stage/job.tsv, stage/model/job.tsv or stage.tsv
        stage = parts[0] if len(parts) > 1 else path.stem
        df = pd.read_csv(path, sep="\t")
        rows.append({"stage": stage, "s": float(df["s"].iloc[0]), "max_rss_mb": float(df["max_rss"].iloc[0])
                     if "max_rss" in df and df["max_rss"].iloc[0] != "-" else float("nan"),
                     "cpu_s": pd.to_numeric(df["cpu_time"], errors="coerce").iloc[0] if "cpu_time" in df else float("nan"),
                     "mtime": path.stat().st_mtime, "job_s": float(df["s"].iloc[0])})
    if not rows:
        raise SystemExit(f"no benchmark files under {bench}; run the workflow first")
    df = pd.DataFrame(rows)
    return df


def main(argv: list[str]) -> None:
    results = Path(argv[1]) if len(argv) > 1 else Path("results/demo")
    df = stage_table(results)
    order = list(dict.fromkeys(df.sort_values("mtime")["stage"]))
    summary = df.groupby("stage").agg(jobs=("s", "size"), total_s=("s", "sum"), mean_s=("s", "mean"),
                                      max_job_s=("s", "max"), cpu_s=("cpu_s", "sum"),
                                      peak_rss_mb=("max_rss_mb", "max")).loc[order]
    pd.set_option("display.width", 120)
    print(f"Per-stage times of {results} (Snakemake benchmark files)")
    print(summary.round(2).to_string())
    first_start = (df["mtime"] - df["job_s"]).min()
    print(f"\nsum of job times: {df['s'].sum():.1f} s; "
          f"first job start to last job end: {df['mtime'].max() - first_start:.1f} s")


if __name__ == "__main__":
    main(sys.argv)
