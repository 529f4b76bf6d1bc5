"""`biomarkers batch`: a chunk of per-subject verbs in one process writes exactly the files the
separate commands write, and stops at the first failing subject with that subject's own error."""
import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk


def run(*args):
    proc = subprocess.run([sys.executable, "-m", "biomarkers", *map(str, args)], capture_output=True, text=True)
    return proc.returncode, proc.stderr.strip()


@pytest.fixture
def cohort(tmp_path):
    rng = np.random.default_rng(0)
    pets = []
    for i in range(3):
        suv = rng.gamma(4.0, 0.25, (16, 18, 20)).astype(np.float32)
        suv[4 + i:9 + i, 5:10, 6:12] += 6.0 + i
        suv[11:14, 12:15, 3:6] += 4.0
        img = sitk.GetImageFromArray(suv)
        img.SetSpacing((4.0, 4.0, 4.0))
        path = tmp_path / f"sub-{i}_pet.nii.gz"
        sitk.WriteImage(img, str(path))
        pets.append(path)
    return tmp_path, pets


def segment_then_features(folder, i, pet, out):
    mask = out / f"sub-{i}_lesions.nii.gz"
    return [["segment", "--pet", str(pet), "--out", str(mask), "--method", "relative", "--fraction", "0.41",
             "--subject-id", f"sub-{i}"],
            ["features", "--image", str(pet), "--mask", str(mask), "--params", "pet", "--subject-id", f"sub-{i}",
             "--out", str(out / f"sub-{i}.parquet")]]


def test_batch_writes_the_files_of_the_single_commands(cohort):
    folder, pets = cohort
    single, batched = folder / "single", folder / "batched"
    single.mkdir()
    for i, pet in enumerate(pets):
        for task in segment_then_features(folder, i, pet, single):
            assert run(*task)[0] == 0
    tasks = [t for i, pet in enumerate(pets) for t in segment_then_features(folder, i, pet, batched)]
    code, err = run("batch", "--tasks", json.dumps(tasks))
    assert code == 0, err
    written = sorted(p.name for p in single.iterdir())
    assert len(written) == 6 and written == sorted(p.name for p in batched.iterdir())
    for name in written:
        assert (single / name).read_bytes() == (batched / name).read_bytes(), name


def test_batch_stops_at_the_first_failing_subject_with_its_error(cohort):
    folder, pets = cohort
    out = folder / "out"
    tasks = [segment_then_features(folder, i, pet, out)[0] for i, pet in enumerate(pets)]
    tasks[1][2] = str(folder / "missing_pet.nii.gz")
    code, err = run("batch", "--tasks", json.dumps(tasks))
    assert code == 1
    assert err.splitlines() == [f"biomarkers segment: error: subject sub-1, file {folder / 'missing_pet.nii.gz'}: "
                                "image file does not exist"]
    assert (out / "sub-0_lesions.nii.gz").is_file()  # done before the failure
    assert sorted(p.name for p in out.iterdir()) == ["sub-0_lesions.nii.gz"]  # nothing of sub-1 or sub-2


@pytest.mark.parametrize("tasks, message", [
    ("[[\"fit\", \"table.parquet\"]]", "task 1: 'fit' cannot be batched"),
    ("not json", "--tasks is not JSON"),
    ("[]", "--tasks must be a non-empty JSON array"),
    ("[[\"segment\", 3]]", "task 1 is not a list of strings"),
])
def test_batch_refuses_a_malformed_task_list(tasks, message):
    code, err = run("batch", "--tasks", tasks)
    assert code == 1
    assert len(err.splitlines()) == 1 and err.startswith("biomarkers batch: error: ") and message in err
