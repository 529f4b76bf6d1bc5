"""Chunked per-subject stages: appending patients to a sheet runs only their own chunk."""
import re

import pandas as pd
import pytest

from biomarkers.simulate import simulate_cohort

from test_workflow import ROOT, snakemake


def write_study(tmp_path, sheet, n):
    sheet.iloc[:n].to_csv(tmp_path / "subjects.tsv", sep="\t", index=False)
    params = ROOT / "tests" / "features" / "pet_original_params.yaml"
    (tmp_path / "config.yaml").write_text(
        f"results: {tmp_path / 'results'}\nsubjects: {tmp_path / 'subjects.tsv'}\nradiomics_params: {params}\n"
        "chunk_size: 2\nunet: {enabled: false}\ndeep_features: {enabled: false}\n")
    return [str(tmp_path / "results" / "features" / "lesions" / f"{sid}.parquet") for sid in sheet["subject_id"][:n]]


@pytest.mark.slow
def test_appending_subjects_runs_only_their_chunk(tmp_path):
    simulate_cohort(tmp_path, n_subjects=7, n_centers=2, seed=5, validation_centers=1)
    sheet = pd.read_csv(tmp_path / "subjects.tsv", sep="\t")
    sheet["cohort"] = "train"  # one cohort: chunks of 2 in sheet order
    targets = write_study(tmp_path, sheet, 6)
    proc = snakemake(*targets, "--cores", "2", "--configfile", str(tmp_path / "config.yaml"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = sorted(p.name for p in (tmp_path / "results" / "logs" / "features").iterdir())
    assert logs == ["train_001.log", "train_002.log", "train_003.log"]
    before = {t: (tmp_path / t).stat().st_mtime_ns for t in targets}

    targets = write_study(tmp_path, sheet, 7)  # a seventh patient appended
    dry = snakemake(*targets, "--cores", "2", "--configfile", str(tmp_path / "config.yaml"), "--dry-run")
    assert dry.returncode == 0, dry.stderr[-3000:]
    planned = set(re.findall(r"^rule (\w+):", dry.stdout + dry.stderr, flags=re.M))
    assert planned == {"segment_chunk0004", "features_chunk0004"}, planned
    proc = snakemake(*targets, "--cores", "2", "--configfile", str(tmp_path / "config.yaml"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {t: (tmp_path / t).stat().st_mtime_ns for t in targets[:6]} == before  # the others untouched
    new = pd.read_parquet(targets[6])
    assert set(new["subject_id"]) == {sheet["subject_id"].iloc[6]} and len(new) > 0
