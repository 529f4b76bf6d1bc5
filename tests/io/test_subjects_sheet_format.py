"""Subjects sheets as users bring them: comma or tab separated, with a hint when the columns
are named otherwise."""
import pandas as pd
import pytest

from biomarkers.errors import SubjectsSheetError
from biomarkers.io.subjects import read_subjects, sheet_separator

ROWS = {"subject_id": ["p1", "p2"], "cohort": ["train", "train"], "center": ["A", "B"],
        "pet": ["p1.nrrd", "/abs/p2.nrrd"], "time": [120.5, 300.0], "event": [1, 0]}


@pytest.mark.parametrize("name, sep", [("subjects.csv", ","), ("subjects.tsv", "\t"), ("sheet.txt", ","),
                                       ("sheet.txt", "\t")])
def test_csv_and_tsv_sheets_read_the_same(tmp_path, name, sep):
    path = tmp_path / name
    pd.DataFrame(ROWS).to_csv(path, sep=sep, index=False)
    assert sheet_separator(path) == sep
    sheet = read_subjects(path)
    assert list(sheet["subject_id"]) == ["p1", "p2"] and list(sheet["time"]) == [120.5, 300.0]
    assert sheet["pet"].tolist() == [str(tmp_path / "p1.nrrd"), "/abs/p2.nrrd"]


def test_a_csv_named_tsv_and_other_column_names_say_what_to_change(tmp_path):
    path = tmp_path / "subjects.tsv"
    pd.DataFrame(ROWS).to_csv(path, sep=",", index=False)
    with pytest.raises(SubjectsSheetError, match="header is one column holding commas: name it .csv or .tsv"):
        read_subjects(path)
    renamed = pd.DataFrame(ROWS).rename(columns={"subject_id": "patient", "time": "os_days"})
    renamed.to_csv(tmp_path / "s.csv", index=False)
    with pytest.raises(SubjectsSheetError, match=r"lacks column\(s\) subject_id, time \(it has: patient, cohort, "
                                                 r"center, pet, os_days, event; rename with `biomarkers init --map"):
        read_subjects(tmp_path / "s.csv")
