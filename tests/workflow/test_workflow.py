"""The Snakefile end to end on a tiny simulated cohort (24 subjects, 3 centres)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from biomarkers.survival.bundle import CHOICE_MEASURES

ROOT = Path(__file__).parents[2]


def snakemake(*args, cwd=ROOT):
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("tiny") / "results"
    proc = snakemake("--cores", "2", "--configfile", "cohorts/tiny/config.yaml", "--config", f"results={results}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return results


@pytest.mark.slow
def test_every_stage_wrote_its_outputs(tiny_run):
    sheet = pd.read_csv(tiny_run / "cohort" / "subjects.tsv", sep="\t")
    assert len(sheet) == 24 and set(sheet["cohort"]) == {"train", "validation"}
    for sid in sheet["subject_id"]:
        assert (tiny_run / "segmentation" / f"{sid}_lesions.nii.gz").is_file()
        assert (tiny_run / "features" / "lesions" / f"{sid}.parquet").is_file()
    train = pd.read_parquet(tiny_run / "features" / "train.parquet")
    assert list(train.columns[:3]) == ["subject_id", "time", "event"]
    assert set(train["subject_id"]) == set(sheet.loc[sheet["cohort"] == "train", "subject_id"])
    models = ["coxph", "coxnet", "rsf", "deepsurv", "clinical", "deep", "combined", "end_to_end"]
    for name in models:
        model = json.loads((tiny_run / "models" / name / "model.json").read_text())
        kind = {"clinical": "coxph", "deep": "coxph", "combined": "coxph", "end_to_end": "cnn_survival"}.get(name, name)
        assert model["info"]["n_train"] == len(train) and model["model"] == kind
        assert (tiny_run / "report" / f"model_{name}.png").stat().st_size > 10_000
        for cohort in ("train", "validation"):
            metrics = json.loads((tiny_run / "metrics" / name / f"{cohort}.json").read_text())
            for key in ("harrell_c", "uno_c", "oracle_harrell_c"):
                assert 0.0 <= metrics[key]["estimate"] <= 1.0
            assert metrics["calibration"]["horizon_days"] == 730
            for figure in ("km", "cindex", "calibration"):
                assert (tiny_run / "report" / f"{figure}_{name}_{cohort}.png").stat().st_size > 10_000
    for cohort in ("train", "validation"):
        for name in ("deepsurv", "end_to_end"):
            assert (tiny_run / "report" / f"uncertainty_{name}_{cohort}.png").stat().st_size > 10_000
            scores = pd.read_parquet(tiny_run / "scores" / name / f"{cohort}.parquet")
            assert (scores["risk_sd"] > 0).all() and {"surv_365", "surv_1095_high", "abstain"} <= set(scores.columns)
        compare = pd.read_csv(tiny_run / "report" / f"compare_{cohort}.tsv", sep="\t")
        assert len(compare) == 2 * 28  # two C-indices for each of the 28 pairs of models
    end_to_end = json.loads((tiny_run / "models" / "end_to_end" / "model.json").read_text())
    assert end_to_end["info"]["selected_features"] == ["age", "ecog", "sex_M"]
    assert end_to_end["info"]["lesion_patches"]["patch"]["channels"] == ["pet", "ct", "mask"]
    patches = np.load(tiny_run / "patches" / "validation.npz")
    assert set(patches["subjects"]) == set(sheet.loc[sheet["cohort"] == "validation", "subject_id"])
    assert (tiny_run / "report" / "cindex_models.png").stat().st_size > 10_000
    assert not list((tiny_run / "report").glob("uncertainty_coxph_*"))  # deterministic: nothing to check
    # the uncertainty methods of deepsurv (tiny config), chosen on training CV, evaluated on the validation cohort
    choice = json.loads((tiny_run / "uncertainty" / "deepsurv" / "choice.json").read_text())
    assert set(choice["methods"]) == {"mc_dropout", "ensemble", "distance", "conformal"}
    assert choice["chosen"] == max(choice["eligible"], key=choice["training_area"].get)
    # fit froze that choice into the model: its validation scores abstain where the uncertainty scores do
    frozen = json.loads((tiny_run / "models" / "deepsurv" / "model.json").read_text())["info"]["abstention"]
    assert frozen["measure"] == CHOICE_MEASURES[choice["chosen"]] and frozen["conformal"]["eta"] == choice["conformal"]["eta"]
    every = pd.read_parquet(tiny_run / "uncertainty" / "deepsurv" / "scores.parquet")
    mine = every[every["cohort"] == "validation"].set_index("subject_id")
    theirs = pd.read_parquet(tiny_run / "scores" / "deepsurv" / "validation.parquet").set_index("subject_id")
    np.testing.assert_allclose(theirs["risk"], mine.loc[theirs.index, "risk"], rtol=1e-6)
    np.testing.assert_array_equal(theirs["abstain"], mine.loc[theirs.index, "abstain"])
    evaluation = json.loads((tiny_run / "uncertainty" / "deepsurv" / "validation.json").read_text())
    assert evaluation["n"] == (sheet["cohort"] == "validation").sum() and 0 <= evaluation["conformal"]["true"] <= 1
    assert (tiny_run / "report" / "uncertainty_evaluation_deepsurv_validation.png").stat().st_size > 10_000
    subtypes = json.loads((tiny_run / "subtypes" / "subtypes.json").read_text())  # fitted on train, frozen
    assert set(subtypes["cohorts"]) == {"train", "validation"} and subtypes["model"]["k"] in (2, 3)
    assert sum(r["n"] for r in subtypes["cohorts"]["validation"]["subtypes"]) == (sheet["cohort"] == "validation").sum()
    for cohort in ("train", "validation"):
        lesions = pd.read_csv(tiny_run / "explanations" / "end_to_end" / f"{cohort}.tsv", sep="\t")
        np.testing.assert_allclose(lesions.groupby("subject_id")["attention"].sum(), 1.0, atol=1e-5)
        assert (tiny_run / "report" / f"explanations_end_to_end_{cohort}.png").stat().st_size > 10_000
    clinical = json.loads((tiny_run / "models" / "clinical" / "model.json").read_text())
    assert clinical["info"]["selected_features"] == ["age", "ecog", "sex_M"]
    assert clinical["preprocessor"]["combat_"] is None  # clinical covariates are never harmonised
    deep = [f for f in train.columns if f.startswith("largest_deep_")]
    assert deep == [f"largest_deep_{i:03d}" for i in range(8)]  # the tiny config's 8-long vectors
    selected = json.loads((tiny_run / "models" / "deep" / "model.json").read_text())["info"]["selected_features"]
    assert selected == deep + ["age", "ecog", "sex_M"]
    combined = json.loads((tiny_run / "models" / "combined" / "model.json").read_text())["info"]["selected_features"]
    assert set(deep) < set(combined) and "total_mtv_ml" in combined
    cv = pd.read_csv(tiny_run / "models" / "cv_summary.tsv", sep="\t")
    assert sorted(cv["model"]) == sorted(models) and cv["folds"].eq(3).all()
    table = pd.read_csv(tiny_run / "report" / "metrics.tsv", sep="\t")
    assert set(table["cohort"]) == {"train", "validation"} and list(dict.fromkeys(table["model"])) == models
    quality = pd.read_csv(tiny_run / "segmentation_quality" / "validation_summary.tsv", sep="\t").set_index("method")
    thresholds = ["fixed:2.5", "fixed:4.0", "relative:0.41", "relative-maxima:0.41", "percist"]
    assert list(quality.index) == (thresholds + [f"{m} -organs" for m in thresholds[:-1]]
                                   + [f"{m} +unet-organs" for m in thresholds] + ["unet"])
    assert quality.loc[thresholds[0], "organs"] == "oracle" and quality.loc["unet", "organs"] == "learnt"
    assert quality.loc[thresholds, "dice_mean"].between(0.3, 1.0).all()
    # without the organ masks the thresholds also take in physiological uptake (brain, bladder, ...)
    for method in thresholds[:-1]:  # PERCIST needs the liver mask
        assert quality.loc[f"{method} -organs", "fp_volume_ml_mean"] > quality.loc[method, "fp_volume_ml_mean"] + 10
    # a toy network (one epoch): plumbing only; it segments the cohorts it was not trained on
    assert quality.loc["unet", "cases"] == (sheet["cohort"] == "validation").sum()
    unet = sorted(p.name for p in (tiny_run / "unet").glob("*_lesions.nii.gz"))
    assert unet == sorted(f"{sid}_lesions.nii.gz" for sid in sheet.loc[sheet["cohort"] == "validation", "subject_id"])
    organs = pd.read_csv(tiny_run / "segmentation_quality" / "validation_organ_dice.tsv", sep="\t")
    assert list(organs["method"]) == ["unet"] and organs[["brain", "liver", "kidneys", "bladder", "heart"]].notna().all(axis=None)
    assert (tiny_run / "report" / "segmentation_quality_validation.png").is_file()
    signature = json.loads((tiny_run / "signature" / "signature.json").read_text())  # the primary model, frozen
    assert signature["model"] == "coxph" and list(signature["harmonisation_reference"]) == ["C3"]
    assert signature["autoencoder"] is None  # coxph reads no deep feature


@pytest.mark.slow
def test_validation_cohort_is_not_used_for_fitting(tiny_run):
    model = json.loads((tiny_run / "models" / "coxph" / "model.json").read_text())
    train = pd.read_parquet(tiny_run / "features" / "train.parquet")
    import hashlib

    digest = hashlib.sha256((tiny_run / "features" / "train.parquet").read_bytes()).hexdigest()
    assert model["info"]["train_table_sha256"] == digest
    assert model["info"]["n_train"] == len(train)


@pytest.mark.slow
def test_rerun_is_up_to_date_and_report_builds(tiny_run, tmp_path):
    dry = snakemake("--cores", "1", "--configfile", "cohorts/tiny/config.yaml", "--config",
                    f"results={tiny_run}", "--dry-run")
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr
    report = tmp_path / "report.html"
    proc = snakemake("--cores", "1", "--configfile", "cohorts/tiny/config.yaml", "--config",
                     f"results={tiny_run}", "--report", str(report))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert report.stat().st_size > 100_000


# A second run from scratch, byte for byte against the first: `make test-slurm` (CI) runs the tiny
# study twice from scratch, locally and through Slurm, and compares every cohort, segmentation,
# U-Net, feature, stability, model, score, metric and report table (.ci/compare_runs.py), a
# superset of what a rerun here compared, so the suite does not pay for a third full run.


@pytest.mark.parametrize("breakage, message", [
    ("no_time", "subjects.tsv: subjects sheet lacks column(s) time"),
    ("no_image", "subject s2, file {folder}/s2_pet.nii.gz: pet file does not exist"),
    ("hostile_id", "subjects.tsv: subject_id 'x$(touch${{IFS}}PWNED)' may hold only letters, digits"),
    ("spaced_id", "subjects.tsv: subject_id 's 2' may hold only letters, digits"),
])
def test_bad_subjects_sheet_stops_before_any_job(tmp_path, breakage, message):
    import numpy as np
    import SimpleITK as sitk

    for sid in ("s1", "s2"):
        for kind in ("pet", "organs"):
            if not (breakage == "no_image" and sid == "s2" and kind == "pet"):
                sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 4, 4), np.float32)), str(tmp_path / f"{sid}_{kind}.nii.gz"))
    sheet = pd.DataFrame({"subject_id": ["s1", "s2"], "cohort": ["train", "validation"], "center": ["A", "B"],
                          "pet": ["s1_pet.nii.gz", "s2_pet.nii.gz"], "organs": ["s1_organs.nii.gz", "s2_organs.nii.gz"],
                          "time": [100.0, 200.0], "event": [1, 0]})
    if breakage == "no_time":
        sheet = sheet.drop(columns="time")
    if breakage in ("hostile_id", "spaced_id"):
        sheet.loc[1, "subject_id"] = "x$(touch${IFS}PWNED)" if breakage == "hostile_id" else "s 2"
    sheet.to_csv(tmp_path / "subjects.tsv", sep="\t", index=False)
    config = tmp_path / "config.yaml"
    config.write_text(f"results: {tmp_path / 'results'}\nsubjects: {tmp_path / 'subjects.tsv'}\n"
                      "radiomics_params: pet\n")
    proc = snakemake("--cores", "1", "--configfile", str(config), "--dry-run")
    assert proc.returncode != 0
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if message.format(folder=tmp_path) in line]
    assert len(lines) == 1, proc.stderr[-2000:]
    assert not (tmp_path / "results").exists()
    assert not list(ROOT.glob("PWNED")) and not list(tmp_path.glob("PWNED"))


def test_unet_segmentation_model_without_the_unet_stops_before_any_job(tmp_path):
    import SimpleITK as sitk

    for sid in ("s1", "s2"):
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 4, 4), np.float32)), str(tmp_path / f"{sid}_pet.nii.gz"))
    pd.DataFrame({"subject_id": ["s1", "s2"], "cohort": ["train", "validation"], "center": ["A", "B"],
                  "pet": ["s1_pet.nii.gz", "s2_pet.nii.gz"], "time": [100.0, 200.0], "event": [1, 0]}
                 ).to_csv(tmp_path / "subjects.tsv", sep="\t", index=False)
    config = tmp_path / "config.yaml"
    config.write_text(f"results: {tmp_path / 'results'}\nsubjects: {tmp_path / 'subjects.tsv'}\n"
                      "radiomics_params: pet\nsegmentation: {exclude_organs: false}\nunet: {enabled: false}\n"
                      "model: {primary: cox_a, features: [total_mtv_ml]}\n"
                      "models: {cox_a: {kind: coxph}, cox_b: {kind: coxph, segmentation: unet}}\n")
    proc = snakemake("--cores", "1", "--configfile", str(config), "--dry-run")
    assert proc.returncode != 0
    assert "models cox_b use the U-Net's segmentation; set unet: {enabled: true}" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()
    # every entry is the library's model specification, checked while the workflow parses
    config.write_text(config.read_text().replace("cox_b: {kind: coxph, segmentation: unet}",
                                                 "cox_b: {kind: coxph, penaliser: 0.1}"))
    proc = snakemake("--cores", "1", "--configfile", str(config), "--dry-run")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "config models: model cox_b: model coxph has no hyperparameter 'penaliser'" in out
    assert len(out.splitlines()) < 15, out
    # the fit job gets the specification whole, as JSON (no --set round trip); no dropout, no MC passes
    config.write_text(config.read_text().replace("cox_b: {kind: coxph, penaliser: 0.1}",
                                                 "cox_b: {kind: deepsurv, dropout: 0, hidden: 16}"))
    proc = snakemake("--cores", "1", "--configfile", str(config), "--dry-run", "--printshellcmds",
                     str(tmp_path / "results" / "models" / "cox_b"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    spec = ('--spec \'{"features":["total_mtv_ml"],"kind":"deepsurv","log_features":[],'
            '"params":{"dropout":0.0,"hidden":"16"}}\'')
    assert spec in proc.stdout
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_study_from_dicom_gives_the_same_features_as_from_nifti(tiny_run, tmp_path):
    # tiny_run read the simulated NIfTI PETs; this run converts the same cohort's DICOM series.
    # Only what the comparison reads: the feature tables and the primary model's metrics.
    dicom_run = tmp_path / "results"
    targets = [dicom_run / "features" / f"{cohort}.parquet" for cohort in ("train", "validation")]
    targets += [dicom_run / "metrics" / "coxph" / f"{cohort}.json" for cohort in ("train", "validation")]
    proc = snakemake(*map(str, targets), "--cores", "2", "--configfile", "cohorts/tiny/config.yaml", "--config",
                     f"results={dicom_run}", "pet_source=dicom")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list((dicom_run / "suv").glob("*.nii.gz"))) == 24  # converted by `biomarkers suv`
    assert not (tiny_run / "suv").exists()
    for table in ("features/train.parquet", "features/validation.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(tiny_run / table), pd.read_parquet(dicom_run / table))
    for cohort in ("train", "validation"):
        nifti = json.loads((tiny_run / "metrics" / "coxph" / f"{cohort}.json").read_text())
        assert nifti == json.loads((dicom_run / "metrics" / "coxph" / f"{cohort}.json").read_text())


@pytest.mark.slow
def test_sheet_without_organs_uses_the_networks_organs(tiny_run, tmp_path):
    # A study with no organ masks: the tiny run's organ-aware U-Net (unet.checkpoint) predicts each
    # subject's organs, the threshold segmentation excludes them, and a `segmentation: unet` model
    # is fitted on the network's lesions.
    import SimpleITK as sitk

    from biomarkers.segment.threshold import segment_lesions

    sheet = pd.read_csv(tiny_run / "cohort" / "subjects.tsv", sep="\t").drop(columns="organs")
    for column in ("pet", "ct", "mask"):
        sheet[column] = [str(tiny_run / "cohort" / p) for p in sheet[column]]
    sheet.to_csv(tmp_path / "subjects.tsv", sep="\t", index=False)
    tiny = (ROOT / "cohorts" / "tiny" / "config.yaml").read_text()
    model_section = tiny[tiny.index("model:\n"):tiny.index("models:\n")].replace("primary: coxph", "primary: coxph_unet")
    model_section = model_section.replace("harmonize: true", "harmonize: false")  # ComBat needs varying features
    results = tmp_path / "results"
    (tmp_path / "config.yaml").write_text(
        f"results: {results}\nsubjects: {tmp_path / 'subjects.tsv'}\nradiomics_params: pet\n"
        "segmentation: {method: relative, exclude_organs: true, compare: ['relative:0.41']}\n"
        f"unet: {{enabled: true, checkpoint: {tiny_run / 'models' / 'unet.pt'}, probability: 0.5}}\n"
        "covariates: [age, ecog]\ncategorical_covariates: {sex: [F, M]}\n" + model_section
        # burden features (0 where the toy-length network finds no lesion) and the covariates
        + "models: {coxph_unet: {kind: coxph, penalizer: 0.1, segmentation: unet,"
        " features: [total_mtv_ml, lesion_count, age, ecog, sex_M]}}\nevaluation: {bootstrap: 20}\n")
    first = sheet["subject_id"].iloc[0]
    # the fitted model (scoring it would need texture columns, which a cohort where the toy network
    # finds no lesion at all lacks)
    targets = [results / "models" / "coxph_unet",
               results / "segmentation" / f"{first}_lesions.nii.gz",
               results / "segmentation_quality" / "validation_summary.tsv"]
    proc = snakemake(*map(str, targets), "--cores", "2", "--configfile", str(tmp_path / "config.yaml"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (results / "models" / "unet.pt").exists()  # the given network, not a new one
    pet = sitk.ReadImage(str(sheet["pet"].iloc[0]))
    organs = sitk.GetArrayFromImage(sitk.ReadImage(str(results / "unet" / f"{first}_organs.nii.gz")))
    expected = segment_lesions(sitk.GetArrayFromImage(pet).astype(np.float64), pet.GetSpacing()[::-1], "relative",
                               threshold_suv=2.5, fraction=0.41, min_volume_ml=0.5, organs=organs)
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(results / "segmentation" / f"{first}_lesions.nii.gz")))
    assert np.array_equal(written, expected)
    train = pd.read_parquet(results / "features" / "unet" / "train.parquet")
    assert set(train["subject_id"]) == set(sheet.loc[sheet["cohort"] == "train", "subject_id"])
    model = json.loads((results / "models" / "coxph_unet" / "model.json").read_text())
    assert model["model"] == "coxph" and model["info"]["n_train"] == len(train)
    summary = pd.read_csv(results / "segmentation_quality" / "validation_summary.tsv", sep="\t")
    assert {"relative:0.41", "relative:0.41 +unet-organs", "unet"} <= set(summary["method"])
    assert not (results / "segmentation_quality" / "validation_organ_dice.tsv").exists()  # no organs to score


def test_config_errors_are_one_line_naming_the_key(tmp_path):
    # A config with neither a sheet nor a simulation used to print the whole config; radiomics_params
    # has a default (pet); a sheet without organ masks says how to go on without them.
    config = tmp_path / "config.yaml"
    config.write_text(f"results: {tmp_path / 'results'}\nsegmentation: {{method: fixed}}\n")
    proc = snakemake("--cores", "1", "--configfile", str(config), "--dry-run")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "config, top level: give exactly one of: simulate, subjects" in out
    assert len(out.splitlines()) < 15, out
    config.write_text(f"results: {tmp_path / 'results'}\nsubjects: s.tsv\nsegmentation: {{methd: fixed}}\n")
    proc = snakemake("--cores", "1", "--configfile", str(config), "--dry-run")
    assert "config, segmentation: Additional properties are not allowed ('methd' was unexpected)" in proc.stdout + proc.stderr
    sitk_free = pd.DataFrame({"subject_id": ["s1", "s2"], "cohort": ["train", "validation"], "center": ["A", "B"],
                              "pet": ["s1.nii.gz", "s2.nii.gz"], "time": [100.0, 200.0], "event": [1, 0]})
    sitk_free.to_csv(tmp_path / "subjects.csv", index=False)
    config.write_text(f"results: {tmp_path / 'results'}\nsubjects: {tmp_path / 'subjects.csv'}\n"
                      "unet: {enabled: false}\nmodel: {primary: coxph, features: [total_mtv_ml]}\n")
    proc = snakemake("--cores", "1", "--configfile", str(config), "--dry-run")
    assert proc.returncode != 0
    assert ("subjects.csv: segmentation.exclude_organs needs organ masks (column organs) or a U-Net's predicted "
            "organs") in proc.stdout + proc.stderr and "or set segmentation: {exclude_organs: false}" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_rules_reading_images_through_the_sheet_declare_them(tiny_run):
    # Editing a training subject's CT reruns every rule that opens it through the sheet, for that
    # file itself (not only through another job's updated output).
    sheet = pd.read_csv(tiny_run / "cohort" / "subjects.tsv", sep="\t")
    ct = tiny_run / "cohort" / sheet.loc[sheet["cohort"] == "train", "ct"].iloc[0]
    before = ct.stat()
    targets = [str(tiny_run / "models" / "autoencoder.pt"), str(tiny_run / "patches" / "train.npz"),
               str(tiny_run / "models" / "unet.pt")]
    try:
        os.utime(ct, ns=(before.st_atime_ns, before.st_mtime_ns + 3_600 * 10**9))
        dry = snakemake("--cores", "1", "--configfile", "cohorts/tiny/config.yaml", "--config", f"results={tiny_run}",
                        "--dry-run", *targets)
    finally:
        os.utime(ct, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert dry.returncode == 0, dry.stderr[-2000:]
    jobs = (dry.stdout + dry.stderr).split("\nrule ")[1:]
    reasons = {job.split(":")[0]: job for job in jobs}
    for rule in ("train_autoencoder", "lesion_patches", "train_unet"):
        assert f"Updated input files: {ct}" in reasons[rule], rule
