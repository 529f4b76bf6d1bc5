"""The subjects sheet: IDs and cohort names that are safe as file names and shell arguments."""
import pandas as pd
import pytest

from biomarkers.errors import SubjectsSheetError
from biomarkers.io.subjects import read_subjects


def _sheet(tmp_path, subject_ids, cohort="train"):
    path = tmp_path / "subjects.tsv"
    pd.DataFrame({"subject_id": subject_ids, "cohort": cohort, "center": "A", "pet": "x.nii.gz",
                  "time": 100.0, "event": 1}).to_csv(path, sep="\t", index=False)
    return path


@pytest.mark.parametrize("bad", ["x$(touch${IFS}PWNED)", "sub 01", "../sub-01", "sub/01", "-rf", ".hidden",
                                 "sub;01", "sub`id`", "sub'01", "x" * 129])
def test_unsafe_subject_ids_are_refused_naming_the_id(tmp_path, bad):
    path = _sheet(tmp_path, ["sub-01", bad])
    with pytest.raises(SubjectsSheetError) as caught:
        read_subjects(path)
    message = str(caught.value)
    assert f"subject_id {bad!r} may hold only letters, digits" in message and str(path) in message
    assert "\n" not in message


def test_unsafe_cohort_name_is_refused(tmp_path):
    with pytest.raises(SubjectsSheetError, match="cohort 'train set' may hold only"):
        read_subjects(_sheet(tmp_path, ["a"], cohort="train set"))


def test_safe_ids_are_kept_as_written(tmp_path):
    ids = ["sub-01", "PT_0002", "007", "a.b-c_d", "Z" * 128]
    assert read_subjects(_sheet(tmp_path, ids))["subject_id"].tolist() == ids
