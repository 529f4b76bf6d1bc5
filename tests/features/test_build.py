"""A cohort table from lesion files, with extra per-lesion tables (deep features) joined on the lesion label."""
import pandas as pd
import pytest

from biomarkers.errors import FeatureTableError
from biomarkers.features.build import build_cohort_table
from biomarkers.io.atomic import write_parquet


def lesion_table(sid, ids, mtv):
    return pd.DataFrame({"subject_id": sid, "lesion_id": ids, "suv_max": [5.0] * len(ids), "suv_peak": 4.0,
                         "mtv_ml": mtv, "tlg": 1.0, "centroid_x_mm": 0.0, "centroid_y_mm": 0.0,
                         "centroid_z_mm": [10.0 * i for i in ids]})


@pytest.fixture
def cohort(tmp_path):
    pd.DataFrame({"subject_id": ["a", "b"], "cohort": "train", "center": "C1", "pet": ["a.nii.gz", "b.nii.gz"],
                  "time": [100.0, 200.0], "event": [1, 0]}).to_csv(tmp_path / "s.tsv", sep="\t", index=False)
    paths = {}
    for sid, ids, mtv, deep in (("a", [1, 2], [2.0, 8.0], [0.5, -1.5]), ("b", [1], [3.0], [2.0])):
        write_parquet(lesion_table(sid, ids, mtv), tmp_path / f"{sid}.parquet", {"subject_id": sid})
        write_parquet(pd.DataFrame({"subject_id": sid, "lesion_id": ids[::-1], "deep_000": deep[::-1]}),
                      tmp_path / f"{sid}_deep.parquet", {"subject_id": sid})
        paths[sid] = (tmp_path / f"{sid}.parquet", tmp_path / f"{sid}_deep.parquet")
    return tmp_path, paths


def test_deep_features_join_the_lesion_rows(cohort):
    folder, paths = cohort
    table = build_cohort_table(folder / "s.tsv", [p for p, _ in paths.values()], "train", folder / "t.parquet",
                               extra_paths=[d for _, d in paths.values()]).set_index("subject_id")
    assert table.loc["a", "largest_deep_000"] == -1.5  # lesion 2 is the largest, whatever the row order
    assert table.loc["b", "largest_deep_000"] == 2.0
    assert table.loc["a", "total_mtv_ml"] == 10.0


def test_extra_table_of_other_lesions_is_refused(cohort):
    folder, paths = cohort
    write_parquet(pd.DataFrame({"subject_id": "b", "lesion_id": [3], "deep_000": [1.0]}), folder / "bad.parquet",
                  {"subject_id": "b"})
    with pytest.raises(FeatureTableError, match="subject b, file .*bad.parquet: lesion labels differ from those of b"):
        build_cohort_table(folder / "s.tsv", [p for p, _ in paths.values()], "train", folder / "t.parquet",
                           extra_paths=[paths["a"][1], folder / "bad.parquet"])
    with pytest.raises(FeatureTableError, match="subject b: subject has a lesion table but no extra"):
        build_cohort_table(folder / "s.tsv", [p for p, _ in paths.values()], "train", folder / "t.parquet",
                           extra_paths=[paths["a"][1]])
