"""Imaging subtypes: k-means on the training cohort, frozen, assigned to another centre."""
import numpy as np
import pandas as pd
import pytest

from biomarkers.survival.subtypes import fit_subtypes
from biomarkers.validation.subtypes import subtype_survival, subtypes_to_files


def _table(rng, n, center, offset, prefix):
    """Two groups 3:1 in 4 deep features (means +-2), the minority with a 4x hazard."""
    minority = rng.random(n) < 0.25
    x = rng.normal(0, 0.6, (n, 4)) + np.where(minority, 2.0, -2.0)[:, None] + offset
    t = rng.exponential(np.where(minority, 250.0, 1000.0))
    c = rng.exponential(2000.0, n)
    table = pd.DataFrame({"subject_id": [f"{prefix}{i}" for i in range(n)], "time": np.minimum(t, c),
                          "event": (t <= c).astype(int), "center": center,
                          **{f"largest_deep_{j:03d}": x[:, j] for j in range(4)}})
    return table, minority


def test_two_planted_subtypes_are_found_and_assigned_across_centres():
    rng = np.random.default_rng(0)
    a, ma = _table(rng, 80, "A", 0.0, "a")
    b, mb = _table(rng, 80, "B", 0.0, "b")
    train, m_train = pd.concat([a, b], ignore_index=True), np.r_[ma, mb]
    val, m_val = _table(rng, 60, "C", 1.5, "c")  # a centre whose scanner shifts every feature by +1.5
    model = fit_subtypes(train, ["largest_deep_*"], ks=(2, 3, 4), seed=0)
    assert model.k == 2 and model.silhouettes[2] > model.silhouettes[3]
    np.testing.assert_array_equal(model.assign(train), np.where(m_train, 2, 1))  # 1 = the larger subtype
    # ComBat removes the new centre's offset from its own values, so the frozen centroids still fit
    np.testing.assert_array_equal(model.assign(val), np.where(m_val, 2, 1))
    stats = subtype_survival(val, model.assign(val))
    assert stats["logrank_p"] < 0.01 and [r["n"] for r in stats["subtypes"]] == [int((~m_val).sum()), int(m_val.sum())]


def test_subtype_survival_matches_lifelines_logrank():
    from lifelines.statistics import logrank_test

    rng = np.random.default_rng(1)
    table, minority = _table(rng, 50, "A", 0.0, "x")
    stats = subtype_survival(table, np.where(minority, 2, 1))
    ref = logrank_test(table["time"][~minority], table["time"][minority], table["event"][~minority],
                       table["event"][minority])
    assert stats["logrank_p"] == pytest.approx(ref.p_value)


def test_files_hold_the_frozen_model_and_every_cohort(tmp_path):
    from biomarkers.io.atomic import write_parquet

    rng = np.random.default_rng(2)
    train = pd.concat([_table(rng, 40, "A", 0.0, "a")[0], _table(rng, 40, "B", 0.0, "b")[0]], ignore_index=True)
    val = _table(rng, 30, "C", 0.0, "c")[0]
    write_parquet(train, tmp_path / "train.parquet", {"cohort": "train"})
    write_parquet(val, tmp_path / "validation.parquet", {"cohort": "validation"})
    result = subtypes_to_files(tmp_path / "train.parquet", {"validation": tmp_path / "validation.parquet"},
                               tmp_path / "out", ["largest_deep_*"], (2, 3), plot_dir=tmp_path)
    assignments = pd.read_csv(tmp_path / "out" / "assignments.tsv", sep="\t")
    assert list(assignments["cohort"].unique()) == ["train", "validation"] and len(assignments) == 110
    assert set(result["cohorts"]) == {"train", "validation"} and result["model"]["k"] == 2
    assert (tmp_path / "subtypes_validation.png").stat().st_size > 10_000
