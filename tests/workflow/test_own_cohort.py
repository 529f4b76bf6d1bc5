"""A user's own cohort end to end: `biomarkers init` from a clinical sheet and image files (CSV +
NRRD; DICOM PET/CT + RTSTRUCT), the study run on it, then its exported signature `predict`s the
validation patients from their images, and their risks are the study's scores to the last bit."""
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml

from test_workflow import snakemake

pytestmark = pytest.mark.slow


def biomarkers(*args):
    return subprocess.run([str(Path(sys.executable).parent / "biomarkers"), *map(str, args)], capture_output=True,
                          text=True)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """36 simulated patients (C1, C2 training; C3 validation), with PET DICOM series."""
    folder = tmp_path_factory.mktemp("sim")
    proc = biomarkers("simulate", "--out", folder, "--subjects", 36, "--centers", 3, "--validation-centers", 1,
                      "--seed", 20261122, "--dicom", "--threads", 2)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return folder, pd.read_csv(folder / "subjects.tsv", sep="\t")


def shrink(config_path, results, **changes):
    """The init config at test scale (and any other `section.key` changes)."""
    config = yaml.safe_load(config_path.read_text())
    config["results"] = str(results)
    config["evaluation"]["bootstrap"] = 20
    config["model"]["cv_folds"] = 2
    for dotted, value in changes.items():
        section, key = dotted.split(".")
        config[section][key] = value
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))


def run_and_predict(config, results, new_patients, out):
    proc = snakemake("--cores", "2", "--configfile", str(config))
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = biomarkers("predict", "--signature", results / "signature", "--subjects", new_patients, "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    predicted = pd.read_parquet(out / "predictions.parquet")
    study = pd.read_parquet(results / "scores" / "coxph" / "validation.parquet")
    both = predicted.merge(study, on="subject_id", suffixes=("", "_study"), validate="one_to_one")
    assert len(both) == len(study) == len(predicted) == 12
    np.testing.assert_array_equal(both["risk"].to_numpy(), both["risk_study"].to_numpy())
    assert (both["risk_group"] == both["risk_group_study"]).all()
    strat = pd.read_csv(out / "stratification.tsv", sep="\t")
    digest = hashlib.sha256((results / "signature" / "manifest.json").read_bytes()).hexdigest()
    assert (strat["signature_sha256"] == digest).all() and set(strat["stratum"]) <= {"high", "low", "review"}
    assert all((out / "summaries" / f"{sid}.png").stat().st_size > 20_000 for sid in strat["subject_id"])
    return predicted, study


def test_csv_and_nrrd_study_from_init_then_predict_equals_the_study(simulated, tmp_path):
    source, sheet = simulated
    for _, row in sheet.iterrows():
        folder = tmp_path / "images" / row["subject_id"]
        folder.mkdir(parents=True)
        for kind in ("pet", "ct", "organs", "mask"):
            sitk.WriteImage(sitk.ReadImage(str(source / row[kind])), str(folder / f"{kind}.nrrd"), True)
    clinical = sheet.drop(columns=["cohort", "pet", "pet_dicom", "ct", "organs", "mask"])
    clinical = clinical.rename(columns={"subject_id": "patient", "center": "site", "time": "os_days",
                                        "event": "death"})
    clinical.to_csv(tmp_path / "clinical.csv", index=False)
    proc = biomarkers("init", "--sheet", tmp_path / "clinical.csv", "--out", tmp_path / "study",
                      "--map", "patient=subject_id,site=center,os_days=time,death=event",
                      "--pet", "images/{subject_id}/pet.nrrd", "--ct", "images/{subject_id}/ct.nrrd",
                      "--organs", "images/{subject_id}/organs.nrrd", "--mask", "images/{subject_id}/mask.nrrd",
                      "--validation-centers", "C3", "--covariates", "age,ecog", "--categorical", "sex")
    assert proc.returncode == 0, proc.stderr
    config = yaml.safe_load((tmp_path / "study" / "config.yaml").read_text())
    assert config["categorical_covariates"] == {"sex": ["F", "M"]} and config["segmentation"]["exclude_organs"]
    assert config["model"]["harmonize"] and "sex_M" in config["model"]["features"]
    results = tmp_path / "results"
    shrink(tmp_path / "study" / "config.yaml", results)
    written = pd.read_csv(tmp_path / "study" / "subjects.tsv", sep="\t")
    new = written[written["cohort"] == "validation"].drop(columns=["cohort", "time", "event"])
    new.to_csv(tmp_path / "study" / "new_patients.tsv", sep="\t", index=False)
    predicted, study = run_and_predict(tmp_path / "study" / "config.yaml", results, tmp_path / "study" / "new_patients.tsv",
                                       tmp_path / "predicted")
    signature = json.loads((results / "signature" / "signature.json").read_text())
    assert list(signature["harmonisation_reference"]) == ["C3"]  # the validation centre, as the study saw it
    assert signature["settings"]["organs"] == "given" and signature["unet"] is None

    # one patient on the command line, of a centre the signature knows: the same risk
    row = new.iloc[0]
    folder = tmp_path / "images" / row["subject_id"]
    proc = biomarkers("predict", "--signature", results / "signature", "--pet", folder / "pet.nrrd", "--organs",
                      folder / "organs.nrrd", "--subject-id", row["subject_id"], "--center", "C3",
                      "--covariate", f"age={row['age']}", "--covariate", f"ecog={row['ecog']}",
                      "--covariate", f"sex={row['sex']}", "--out", tmp_path / "one", "--summary", "none")
    assert proc.returncode == 0, proc.stderr
    one = pd.read_parquet(tmp_path / "one" / "predictions.parquet")
    assert one["risk"].iloc[0] == study.set_index("subject_id").loc[row["subject_id"], "risk"]

    # a centre neither trained on nor in the reference, with too few patients to harmonise
    proc = biomarkers("predict", "--signature", results / "signature", "--pet", folder / "pet.nrrd", "--organs",
                      folder / "organs.nrrd", "--subject-id", "new-1", "--center", "C9", "--covariate", "age=60",
                      "--covariate", "ecog=1", "--covariate", "sex=F", "--out", tmp_path / "c9")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "subject new-1" in proc.stderr and "centre C9 is neither a training centre nor in the signature's" in proc.stderr
    assert not (tmp_path / "c9" / "predictions.parquet").exists()

    # an edited signature is refused, naming the file
    coefficients = results / "signature" / "model" / "coefficients.tsv"
    coefficients.write_text(coefficients.read_text().replace("\t0.", "\t1.", 1))
    proc = biomarkers("predict", "--signature", results / "signature", "--subjects", tmp_path / "study" / "new_patients.tsv",
                      "--out", tmp_path / "tampered")
    assert proc.returncode == 1 and "coefficients.tsv: SHA-256 differs from the one in manifest.json" in proc.stderr


def test_dicom_pet_ct_and_rtstruct_study_from_init_then_predict_equals_the_study(simulated, tmp_path):
    rt_utils = pytest.importorskip("rt_utils")
    from biomarkers.simulate.dicom import write_ct_dicom

    source, sheet = simulated
    for _, row in sheet.iterrows():
        folder = tmp_path / "dicom" / row["subject_id"]
        shutil.copytree(source / row["pet_dicom"], folder / "PET")
        ct = sitk.ReadImage(str(source / row["ct"]))
        write_ct_dicom(sitk.GetArrayFromImage(ct), ct.GetSpacing(), ct.GetOrigin(), folder / "CT", row["subject_id"])
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(source / row["mask"])))
        rtstruct = rt_utils.RTStructBuilder.create_new(dicom_series_path=str(folder / "CT"))
        for label in np.unique(labels[labels > 0]):
            rtstruct.add_roi(mask=np.transpose(labels == label, (1, 2, 0)), name=f"lesion {label}")
        rtstruct.save(str(folder / "RTSTRUCT.dcm"))
    clinical = sheet.drop(columns=["cohort", "pet", "pet_dicom", "ct", "organs", "mask"])
    clinical.to_csv(tmp_path / "clinical.tsv", sep="\t", index=False)
    proc = biomarkers("init", "--sheet", tmp_path / "clinical.tsv", "--out", tmp_path / "study",
                      "--pet-dicom", "dicom/{subject_id}/PET", "--ct-dicom", "dicom/{subject_id}/CT",
                      "--mask", "dicom/{subject_id}/RTSTRUCT.dcm", "--validation-centers", "C3",
                      "--covariates", "age,ecog", "--categorical", "sex=F,M")
    assert proc.returncode == 0, proc.stderr
    config = yaml.safe_load((tmp_path / "study" / "config.yaml").read_text())
    assert config["pet_source"] == "dicom" and not config["segmentation"]["exclude_organs"]
    results = tmp_path / "results"
    # the expert RTSTRUCT contours are the segmentation; deep features (from the DICOM CT) join the model
    shrink(tmp_path / "study" / "config.yaml", results, **{
        "segmentation.method": "reference", "deep_features.enabled": True, "deep_features.latent": 4,
        "deep_features.epochs": 1, "model.features": config["model"]["features"] + ["largest_deep_*"]})
    written = pd.read_csv(tmp_path / "study" / "subjects.tsv", sep="\t")
    assert {"pet_dicom", "ct_dicom", "mask"} <= set(written.columns) and "pet" not in written.columns
    new = written[written["cohort"] == "validation"].drop(columns=["cohort", "time", "event"])
    new.to_csv(tmp_path / "study" / "new_patients.csv", index=False)
    run_and_predict(tmp_path / "study" / "config.yaml", results, tmp_path / "study" / "new_patients.csv",
                    tmp_path / "predicted")
    signature = json.loads((results / "signature" / "signature.json").read_text())
    assert signature["autoencoder"] == "autoencoder.pt" and signature["settings"]["method"] == "reference"
    images = pd.read_csv(results / "cohort" / "images.tsv", sep="\t")  # the converted files, for the networks
    assert images["ct"].str.endswith(".nii.gz").all() and images["mask"].str.endswith(".nii.gz").all()
    ct = sitk.ReadImage(str(results / "ct" / f"{new['subject_id'].iloc[0]}.nii.gz"))
    original = sitk.ReadImage(str(source / sheet.set_index("subject_id").loc[new["subject_id"].iloc[0], "ct"]))
    np.testing.assert_allclose(sitk.GetArrayFromImage(ct), sitk.GetArrayFromImage(original), atol=0.5)
