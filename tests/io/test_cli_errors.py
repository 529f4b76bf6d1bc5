"""Wrong inputs stop with a one-line error naming the subject and file, and write nothing."""
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk


def run(*args):
    proc = subprocess.run([sys.executable, "-m", "biomarkers", *map(str, args)], capture_output=True, text=True)
    return proc.returncode, proc.stderr.strip()


def write(path, array, spacing=(4.0, 4.0, 4.0)):
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path))
    return path


@pytest.fixture
def images(tmp_path):
    suv = np.ones((10, 12, 14), np.float32)
    suv[3:7, 4:8, 5:9] = 6.0
    pet = write(tmp_path / "sub-01_pet.nii.gz", suv)
    mask = write(tmp_path / "sub-01_mask.nii.gz", (suv > 2).astype(np.uint16))
    return tmp_path, pet, mask


def test_missing_image_file(images):
    folder, _, mask = images
    out = folder / "lesions.parquet"
    code, err = run("features", "--image", folder / "nope_pet.nii.gz", "--mask", mask, "--out", out,
                    "--subject-id", "sub-01")
    assert code == 1
    assert len(err.splitlines()) == 1
    assert "subject sub-01" in err and "nope_pet.nii.gz" in err and "does not exist" in err
    assert not out.exists() and not list(folder.glob(".lesions*"))


def test_mask_with_other_geometry(images):
    folder, pet, _ = images
    other = write(folder / "sub-01_other.nii.gz", np.ones((10, 12, 14), np.uint16), spacing=(4.0, 4.0, 3.0))
    out = folder / "lesions.parquet"
    code, err = run("features", "--image", pet, "--mask", other, "--out", out, "--subject-id", "sub-01")
    assert code == 1 and len(err.splitlines()) == 1
    assert "subject sub-01" in err and "sub-01_other.nii.gz" in err and "geometry differs" in err
    assert not out.exists()


def test_subjects_sheet_without_time(images, tmp_path):
    folder, pet, mask = images
    lesions = folder / "lesions.parquet"
    assert run("features", "--image", pet, "--mask", mask, "--out", lesions, "--subject-id", "sub-01")[0] == 0
    sheet = tmp_path / "subjects.tsv"
    pd.DataFrame({"subject_id": ["sub-01"], "cohort": ["train"], "center": ["C1"], "pet": [pet.name],
                  "event": [1]}).to_csv(sheet, sep="\t", index=False)
    out = tmp_path / "train.parquet"
    code, err = run("aggregate", "--subjects", sheet, "--cohort", "train", "--out", out, lesions)
    assert code == 1 and len(err.splitlines()) == 1
    assert "subjects.tsv" in err and "lacks column(s) time" in err
    assert not out.exists()


def test_bad_outcome_value_names_the_subject(images, tmp_path):
    folder, pet, mask = images
    sheet = tmp_path / "subjects.tsv"
    pd.DataFrame({"subject_id": ["sub-01", "sub-02"], "cohort": ["train"] * 2, "center": ["C1"] * 2,
                  "pet": [pet.name] * 2, "time": [120.0, -3.0], "event": [1, 0]}).to_csv(sheet, sep="\t", index=False)
    code, err = run("aggregate", "--subjects", sheet, "--cohort", "train", "--out", tmp_path / "t.parquet",
                    folder / "x.parquet")
    assert code == 1 and "subject sub-02" in err and "subjects.tsv" in err and "time must be a positive" in err


def test_mask_verb_refuses_other_grid_unless_asked_to_resample(images):
    folder, pet, _ = images
    fine = np.zeros((20, 24, 28), np.uint16)
    fine[6:14, 8:16, 10:18] = 1  # 8x8x8 voxels of 2 mm = 4.096 mL
    other = write(folder / "fine_mask.nii.gz", fine, spacing=(2.0, 2.0, 2.0))
    out = folder / "on_pet.nii.gz"
    code, err = run("mask", other, "--reference", pet, "--out", out, "--subject-id", "sub-01")
    assert code == 1 and len(err.splitlines()) == 1
    assert "sub-01" in err and "fine_mask.nii.gz" in err and "sub-01_pet.nii.gz" in err
    assert not out.exists()
    assert run("mask", other, "--reference", pet, "--out", out, "--resample")[0] == 0
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert labels.shape == (10, 12, 14) and set(np.unique(labels)) == {0, 1}
    assert (labels == 1).sum() * 64e-3 == pytest.approx(4.096, rel=0.1)


def test_resample_verb_needs_the_outside_value(images):
    folder, pet, _ = images
    ct = write(folder / "ct.nii.gz", np.full((20, 24, 28), 40, np.int16), spacing=(2.0, 2.0, 2.0))
    out = folder / "ct_on_pet.nii.gz"
    code, err = run("resample", ct, "--reference", pet, "--out", out)
    assert code != 0 and "--outside" in err and not out.exists()
    assert run("resample", ct, "--reference", pet, "--out", out, "--outside", "-1024")[0] == 0
    moved = sitk.ReadImage(str(out))
    assert moved.GetSize() == (14, 12, 10) and moved.GetSpacing() == (4.0, 4.0, 4.0)
    values = sitk.GetArrayFromImage(moved)
    assert values[0, 0, 0] == pytest.approx(40)  # inside the CT's field of view


def test_end_to_end_model_needs_the_lesion_patches(images, tmp_path):
    folder, pet, mask = images
    table = tmp_path / "train.parquet"
    rng = np.random.default_rng(0)
    pd.DataFrame({"subject_id": [f"s{i}" for i in range(20)], "time": rng.uniform(10, 1000, 20),
                  "event": np.arange(20) % 2, "age": rng.normal(60, 10, 20)}).to_parquet(table)
    out = tmp_path / "model"
    code, err = run("fit", "--features", table, "--model", "cnn_survival", "--include", "age", "--out", out)
    assert code == 1 and len(err.splitlines()) == 1
    assert "reads each subject's lesion patches" in err and "--patches" in err and not out.exists()
    sheet = tmp_path / "subjects.tsv"
    pd.DataFrame({"subject_id": ["sub-01", "sub-02"], "cohort": ["train"] * 2, "center": ["C1"] * 2,
                  "pet": [pet.name] * 2, "time": [100.0, 200.0], "event": [1, 0]}).to_csv(sheet, sep="\t", index=False)
    patches = tmp_path / "train.npz"
    code, err = run("lesion-patches", "--subjects", sheet, "--cohort", "train", "--no-use-ct",
                    "--masks", str(folder / "{subject_id}_mask.nii.gz"), "--out", patches)
    assert code == 1 and len(err.splitlines()) == 1
    assert "subject sub-02" in err and "sub-02_mask.nii.gz" in err and "lesion mask does not exist" in err
    assert not patches.exists() and not list(tmp_path.glob(".train*"))
