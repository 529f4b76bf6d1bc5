"""`biomarkers init`: a study folder from a user's sheet and image files, or one line saying what to change."""
import jsonschema
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml
from typer.testing import CliRunner

from biomarkers.cli import app
from biomarkers.io.study_init import SCHEMA
from biomarkers.io.subjects import read_subjects


@pytest.fixture
def files(tmp_path):
    for sid in ("p1", "p2", "p3"):
        folder = tmp_path / "img" / sid
        folder.mkdir(parents=True)
        for kind in ("pet", "seg"):
            sitk.WriteImage(sitk.GetImageFromArray(np.ones((4, 4, 4), np.float32)), str(folder / f"{kind}.nrrd"))
    pd.DataFrame({"PatientID": ["p1", "p2", "p3"], "Site": ["A", "A", "B"], "OS": [100.0, 250.5, 40.0],
                  "Dead": [1, 0, 1], "Age": [60, 71, 55], "Sex": ["M", "F", "F"]}).to_csv(tmp_path / "clin.csv",
                                                                                          index=False)
    return tmp_path


def init(*args):
    result = CliRunner().invoke(app, ["init", *map(str, args)])
    return result.exit_code, result.stderr.strip()


BASE = ("--map", "PatientID=subject_id,Site=center,OS=time,Dead=event", "--pet", "img/{subject_id}/pet.nrrd")


def test_writes_a_valid_study_folder(files):
    code, err = init("--sheet", files / "clin.csv", "--out", files / "study", *BASE, "--mask", "img/{subject_id}/s*.nrrd",
                     "--validation-centers", "B", "--covariates", "Age", "--categorical", "Sex")
    assert code == 0, err
    sheet = read_subjects(files / "study" / "subjects.tsv")
    assert list(sheet["cohort"]) == ["train", "train", "validation"] and list(sheet["time"]) == [100.0, 250.5, 40.0]
    assert sheet["mask"].iloc[2] == str(files / "study" / ".." / "img" / "p3" / "seg.nrrd")
    raw = pd.read_csv(files / "study" / "subjects.tsv", sep="\t")
    assert raw["pet"].iloc[0] == "../img/p1/pet.nrrd"  # relative: the folder can move with its images
    text = (files / "study" / "config.yaml").read_text()
    config = yaml.safe_load(text)
    jsonschema.Draft202012Validator(yaml.safe_load(SCHEMA.read_text())).validate(config)
    assert config["subjects"] == str((files / "study" / "subjects.tsv").resolve())
    assert config["categorical_covariates"] == {"Sex": ["F", "M"]} and config["covariates"] == ["Age"]
    assert config["segmentation"]["exclude_organs"] is False and config["pet_source"] == "nifti"
    assert config["model"]["features"][-2:] == ["Age", "Sex_M"] and config["model"]["harmonize"] is True
    assert "# the sheet's `cohort` value of the training subjects" in text and "simulate" not in config
    assert "bootstrap: 1000" in text  # defaults written out


@pytest.mark.parametrize("args, message", [
    (("--map", "Patient=subject_id"), "--map names column(s) Patient the sheet lacks (it has: PatientID, Site"),
    (("--map", "PatientID=subject_id"), "sheet lacks column(s) center, time, event"),
    (BASE, "the sheet has no cohort column; name the validation centre(s) with --validation-centers"),
    ((*BASE, "--validation-centers", "Z"), "validation centre(s) Z not in the sheet's center column (A, B)"),
    ((*BASE, "--validation-centers", "B", "--ct", "img/{subject_id}/ct.nrrd"),
     "subject p1, file {tmp}/img/p1/ct.nrrd: ct pattern 'img/{{subject_id}}/ct.nrrd' finds no file or folder"),
    ((*BASE, "--validation-centers", "B", "--mask", "img/{subject_id}/*.nrrd"), "finds 2 files (pet.nrrd, seg.nrrd)"),
    ((*BASE, "--validation-centers", "B", "--mask", "img/{patient}/seg.nrrd"),
     "pattern 'img/{{patient}}/seg.nrrd' of mask names 'patient', not a column of the sheet"),
    ((*BASE, "--validation-centers", "B", "--categorical", "Sex=M,X"), "Sex has value(s) F outside the levels M, X"),
])
def test_mistakes_are_one_line_and_write_nothing(files, args, message):
    code, err = init("--sheet", files / "clin.csv", "--out", files / "study", *args)
    assert code == 1 and err.count("\n") == 0 and message.format(tmp=files) in err, err
    assert not (files / "study").exists() or not any((files / "study").iterdir())


def test_an_existing_study_is_not_overwritten_without_force(files):
    args = ("--sheet", files / "clin.csv", "--out", files / "study", *BASE, "--validation-centers", "B")
    assert init(*args)[0] == 0
    code, err = init(*args)
    assert code == 1 and "already holds subjects.tsv or config.yaml; give another --out or --force" in err
    assert init(*args, "--force")[0] == 0
