"""Per-subject aggregation and the feature-table layout."""
import numpy as np
import pandas as pd
import pytest

from biomarkers.errors import SubjectsSheetError
from biomarkers.features.aggregate import aggregate_subject, feature_table


def lesions():
    return pd.DataFrame({
        "subject_id": ["a", "a", "a", "b"],
        "lesion_id": [1, 2, 3, 1],
        "suv_max": [5.0, 12.0, 7.0, 4.0], "suv_peak": [4.0, 9.0, 6.0, 3.5],
        "mtv_ml": [2.0, 1.0, 8.0, 3.0], "tlg": [6.0, 5.0, 30.0, 9.0],
        "centroid_x_mm": [0.0, 30.0, 0.0, 5.0], "centroid_y_mm": [0.0, 40.0, 0.0, 5.0],
        "centroid_z_mm": [0.0, 0.0, 120.0, 5.0],
        "original_glcm_Contrast": [1.0, 2.0, 3.0, 4.0],
    })


def test_aggregate_subject():
    out = aggregate_subject(lesions()[lambda d: d.subject_id == "a"])
    assert out["lesion_count"] == 3
    assert out["total_mtv_ml"] == 11.0 and out["total_tlg"] == 41.0
    assert out["suv_max"] == 12.0 and out["suv_peak"] == 9.0
    # farthest centroids: (30, 40, 0) and (0, 0, 120): sqrt(900 + 1600 + 14400) = 130
    assert out["dissemination_mm"] == pytest.approx(130.0)
    assert out["largest_original_glcm_Contrast"] == 3.0  # the 8 mL lesion
    assert out["largest_mtv_ml"] == 8.0


def test_feature_table_layout_and_no_lesion_subject():
    sheet = pd.DataFrame({"subject_id": ["a", "b", "c"], "time": [100.0, 200.0, 300.0], "event": [1, 0, 1],
                          "age": [50, 60, 70], "sex": ["F", "M", "M"]})
    table = feature_table(sheet, lesions(), ["age"], {"sex": ["F", "M"]})
    assert list(table.columns[:5]) == ["subject_id", "time", "event", "age", "sex_M"]
    assert table["sex_M"].tolist() == [0.0, 1.0, 1.0]
    c = table.set_index("subject_id").loc["c"]
    assert c["lesion_count"] == 0 and c["total_mtv_ml"] == 0 and np.isnan(c["suv_max"])
    assert table.set_index("subject_id").loc["b", "dissemination_mm"] == 0


def test_unknown_category_level_names_the_subject():
    sheet = pd.DataFrame({"subject_id": ["a", "b"], "time": [1.0, 2.0], "event": [1, 0], "sex": ["F", "X"]})
    with pytest.raises(SubjectsSheetError, match="subject b, file s.tsv: sex='X'"):
        feature_table(sheet, lesions()[lambda d: d.subject_id != "c"], [], {"sex": ["F", "M"]}, "s.tsv")


def test_texture_rules():
    a = lesions()[lambda d: d.subject_id == "a"]
    hottest = aggregate_subject(a, "hottest")
    assert hottest["hottest_original_glcm_Contrast"] == 2.0 and hottest["hottest_suv_max"] == 12.0  # lesion 2
    weighted = aggregate_subject(a, "weighted")
    # MTV weights 2, 1, 8 over contrasts 1, 2, 3: (2 + 2 + 24) / 11
    assert weighted["weighted_original_glcm_Contrast"] == pytest.approx(28 / 11)
    assert weighted["total_mtv_ml"] == 11.0  # burden does not depend on the rule
    tie = a.assign(mtv_ml=[8.0, 1.0, 8.0])
    assert aggregate_subject(tie)["largest_original_glcm_Contrast"] == 1.0  # tie: lowest label
    with pytest.raises(ValueError, match="largest, hottest, weighted"):
        aggregate_subject(a, "median")
