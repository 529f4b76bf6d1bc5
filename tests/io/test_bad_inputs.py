"""A catalogue of bad inputs across the verbs: each stops with exit status 1 and one line on
stderr that names the offending file (and subject, where there is one), and writes nothing.

Runs the CLI in-process (``typer.testing.CliRunner``) so that the catalogue stays quick; an
exception other than the verbs' own exit would show as ``result.exception`` and fail the case.
"""
import gzip
import json

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from biomarkers.cli import app

SPACING = (4.0, 4.0, 4.0)
N_TRAIN, N_VALIDATION = 10, 6


def write(path, array, spacing=SPACING, origin=(0.0, 0.0, 0.0)):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    sitk.WriteImage(image, str(path))
    return path


def write_4d(path):
    frame = sitk.GetImageFromArray(np.ones((16, 20, 20), np.float32))
    sitk.WriteImage(sitk.JoinSeries([frame, frame]), str(path))
    return path


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def subject_images(folder, i):
    rng = np.random.default_rng(i)
    suv = (1.0 + 0.1 * rng.random((16, 20, 20))).astype(np.float32)
    mask = np.zeros(suv.shape, np.uint16)
    edge = 3 + i % 4
    mask[4:4 + edge, 5:5 + edge, 6:6 + edge] = 1
    suv[mask > 0] = 4.0 + i % 5
    return write(folder / f"s{i}_pet.nii.gz", suv), write(folder / f"s{i}_mask.nii.gz", mask)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Images, lesion tables, a sheet, feature tables, a fitted model and scores of a toy study."""
    root = tmp_path_factory.mktemp("study")
    rows = []
    for i in range(N_TRAIN + N_VALIDATION):
        pet, mask = subject_images(root, i)
        result = invoke("features", "--image", pet, "--mask", mask, "--subject-id", f"s{i}",
                        "--out", root / f"s{i}_lesions.parquet")
        assert result.exit_code == 0, result.output
        rows.append({"subject_id": f"s{i}", "cohort": "train" if i < N_TRAIN else "validation", "center": "A",
                     "pet": pet.name, "time": 100.0 + 37 * ((i * 7) % 11), "event": int(i % 3 != 0)})
    sheet = pd.DataFrame(rows)
    sheet.to_csv(root / "subjects.tsv", sep="\t", index=False)
    for cohort in ("train", "validation"):
        ids = sheet.loc[sheet["cohort"] == cohort, "subject_id"]
        result = invoke("aggregate", "--subjects", root / "subjects.tsv", "--cohort", cohort,
                        "--out", root / f"{cohort}.parquet", *[root / f"{s}_lesions.parquet" for s in ids])
        assert result.exit_code == 0, result.output
    result = invoke("fit", "--features", root / "train.parquet", "--model", "coxph", "--out", root / "model",
                    "--include", "total_mtv_ml,suv_max", "--penalizer", "0.5")
    assert result.exit_code == 0, result.output
    result = invoke("score", "--model", root / "model", "--features", root / "validation.parquet",
                    "--out", root / "scores.parquet")
    assert result.exit_code == 0, result.output
    return root


def variant(root, folder, name, change):
    """A copy of file ``name`` of the study in ``folder``, changed by ``change(path)``."""
    path = folder / name
    path.write_bytes((root / name).read_bytes())
    change(path)
    return path


def image_with(folder, name, array, **kwargs):
    return write(folder / name, array, **kwargs)


def good_pet():
    suv = np.ones((16, 20, 20), np.float32)
    suv[4:8, 5:9, 6:10] = 5.0
    return suv


def pet_with(value):
    suv = good_pet()
    suv[10, 10, 10] = value
    return suv


def truncated(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def edit_table(path, change):
    table = pd.read_parquet(path)
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata
    table = change(table)
    import pyarrow as pa

    pq.write_table(pa.Table.from_pandas(table, preserve_index=False).replace_schema_metadata(meta), path)


def edit_sheet(root, folder, change):
    sheet = pd.read_csv(root / "subjects.tsv", sep="\t", dtype={"subject_id": str})
    sheet["pet"] = [str(root / p) for p in sheet["pet"]]
    sheet = change(sheet)
    path = folder / "subjects.tsv"
    sheet.to_csv(path, sep="\t", index=False)
    return path


def edit_model(root, folder, change):
    model = folder / "model"
    model.mkdir()
    for file in (root / "model").iterdir():
        (model / file.name).write_bytes(file.read_bytes())
    change(model)
    return model


def json_edit(path, change):
    state = json.loads(path.read_text())
    change(state)
    path.write_text(json.dumps(state))


def reseal(model):
    """Rewrite a bundle's manifest after an edit (what a careless or hostile user could do)."""
    import hashlib

    manifest = json.loads((model / "manifest.json").read_text())
    manifest["files"] = {name: hashlib.sha256((model / name).read_bytes()).hexdigest() for name in manifest["files"]}
    (model / "manifest.json").write_text(json.dumps(manifest))


def _features(pet, mask, sid="s0"):
    return ["features", "--image", pet, "--mask", mask, "--subject-id", sid]


def _segment(pet, *extra):
    return ["segment", "--pet", pet, "--subject-id", "s0", *extra]


def _aggregate(root, sheet, lesions, cohort="train"):
    return ["aggregate", "--subjects", sheet, "--cohort", cohort, *lesions]


def _train_lesions(root):
    return [root / f"s{i}_lesions.parquet" for i in range(N_TRAIN)]


def _evaluate(scores):
    return ["evaluate", "--scores", scores, "--bootstrap", "10"]


# Each case: (id, function(root, folder) -> (argv without --out, out path flag or None, expected text,
# names: the file name(s)/subject that the message must contain)).
def cases():
    def c(name, build, expected, names):
        return pytest.param(build, expected, names, id=name)

    mask = lambda r: r / "s0_mask.nii.gz"  # noqa: E731
    pet = lambda r: r / "s0_pet.nii.gz"  # noqa: E731
    yield c("features: missing PET", lambda r, f: _features(f / "nope_pet.nii.gz", mask(r)),
            "does not exist", ["nope_pet.nii.gz", "subject s0"])
    yield c("features: missing mask", lambda r, f: _features(pet(r), f / "nope_mask.nii.gz"),
            "does not exist", ["nope_mask.nii.gz"])
    yield c("features: truncated PET", lambda r, f: _features(variant(r, f, "s0_pet.nii.gz", truncated), mask(r)),
            "truncated or corrupt gzip", ["s0_pet.nii.gz", "subject s0"])
    yield c("features: truncated mask", lambda r, f: _features(pet(r), variant(r, f, "s0_mask.nii.gz", truncated)),
            "truncated or corrupt gzip", ["s0_mask.nii.gz"])
    yield c("features: not an image", lambda r, f: _features((f / "junk.nii").write_bytes(b"junk" * 100) and f / "junk.nii",
                                                             mask(r)),
            "cannot read image", ["junk.nii"])
    yield c("features: gzip of junk", lambda r, f: _features(
        (f / "junk.nii.gz").write_bytes(gzip.compress(b"junk" * 100)) and f / "junk.nii.gz", mask(r)),
        "cannot read image", ["junk.nii.gz"])
    yield c("features: NaN voxel", lambda r, f: _features(image_with(f, "nan.nii.gz", pet_with(np.nan)), mask(r)),
            "NaN or infinite", ["nan.nii.gz"])
    yield c("features: infinite voxel", lambda r, f: _features(image_with(f, "inf.nii.gz", pet_with(np.inf)), mask(r)),
            "NaN or infinite", ["inf.nii.gz"])
    yield c("features: all-zero PET", lambda r, f: _features(
        image_with(f, "zero.nii.gz", np.zeros((16, 20, 20), np.float32)), mask(r)), "no positive voxel", ["zero.nii.gz"])
    yield c("features: negative PET", lambda r, f: _features(
        image_with(f, "neg.nii.gz", -good_pet()), mask(r)), "no positive voxel", ["neg.nii.gz"])
    yield c("features: SUV 1e30", lambda r, f: _features(image_with(f, "hot.nii.gz", pet_with(1e30)), mask(r)),
            "activity concentration rather than SUV", ["hot.nii.gz"])
    yield c("features: Bq/mL PET", lambda r, f: _features(image_with(f, "bq.nii.gz", good_pet() * 5000), mask(r)),
            "activity concentration rather than SUV", ["bq.nii.gz"])
    yield c("features: SUV offset", lambda r, f: _features(image_with(f, "offset.nii.gz", good_pet() - 3.0), mask(r)),
            "down to -2", ["offset.nii.gz"])
    yield c("features: 2D PET", lambda r, f: _features(
        image_with(f, "flat.nii.gz", good_pet()[5], spacing=(4.0, 4.0)), mask(r)), "image is 2D", ["flat.nii.gz"])
    yield c("features: 4D PET", lambda r, f: _features(write_4d(f / "time.nii.gz"), mask(r)),
            "image is 4D", ["time.nii.gz"])
    yield c("features: vector PET", lambda r, f: _features(
        write(f / "rgb.nrrd", np.stack([good_pet()] * 3, axis=-1)), mask(r)), "vector image", ["rgb.nrrd"])
    yield c("features: mask on another grid", lambda r, f: _features(
        pet(r), image_with(f, "grid_mask.nii.gz", np.ones((16, 20, 20), np.uint8), spacing=(4.0, 4.0, 3.0))),
        "geometry differs", ["grid_mask.nii.gz"])
    yield c("features: fractional mask", lambda r, f: _features(
        pet(r), image_with(f, "prob.nii.gz", np.full((16, 20, 20), 0.5, np.float32))), "non-integer", ["prob.nii.gz"])
    yield c("features: negative mask", lambda r, f: _features(
        pet(r), image_with(f, "negmask.nii.gz", -np.ones((16, 20, 20), np.int16))), "negative label", ["negmask.nii.gz"])
    yield c("features: NaN mask", lambda r, f: _features(
        pet(r), image_with(f, "nanmask.nii.gz", pet_with(np.nan))), "NaN or infinite", ["nanmask.nii.gz"])
    yield c("features: --out is a directory", lambda r, f: _features(pet(r), mask(r)) + ["--out", f],
            "is a directory", ["case"])
    yield c("score: model.json without a key", lambda r, f: ["score", "--model", edit_model(r, f, lambda m: (
        json_edit(m / "model.json", lambda s: s.pop("preprocessor")), reseal(m))), "--features",
        r / "validation.parquet"], "incomplete model description (no 'preprocessor')", ["model.json"])
    yield c("segment: threshold -1", lambda r, f: _segment(pet(r), "--method", "fixed", "--threshold", "-1"),
            "SUV threshold must be positive", ["s0_pet.nii.gz"])
    yield c("segment: threshold 0", lambda r, f: _segment(pet(r), "--method", "relative", "--threshold", "0"),
            "SUV threshold must be positive", ["s0_pet.nii.gz"])
    yield c("segment: fraction 1.5", lambda r, f: _segment(pet(r), "--fraction", "1.5"),
            "fraction must be between 0 and 1", ["s0_pet.nii.gz"])
    yield c("segment: negative minimum volume", lambda r, f: _segment(pet(r), "--min-volume-ml", "-1"),
            "min_volume_ml must be 0 or more", ["s0_pet.nii.gz"])
    yield c("segment: truncated PET", lambda r, f: _segment(variant(r, f, "s0_pet.nii.gz", truncated)),
            "truncated or corrupt gzip", ["s0_pet.nii.gz"])
    yield c("segment: NaN PET", lambda r, f: _segment(image_with(f, "nan.nii.gz", pet_with(np.nan))),
            "NaN or infinite", ["nan.nii.gz"])
    yield c("segment: organs on another grid", lambda r, f: _segment(pet(r), "--organs", image_with(
        f, "organs.nii.gz", np.zeros((16, 20, 20), np.uint8), spacing=(4.0, 4.0, 3.0))), "geometry differs",
        ["organs.nii.gz"])
    yield c("segment: unet without a model", lambda r, f: _segment(pet(r), "--method", "unet"),
            "needs --model", ["s0_pet.nii.gz"])
    yield c("resample: grids apart", lambda r, f: ["resample", image_with(
        f, "far.nii.gz", good_pet(), origin=(5000.0, 0.0, 0.0)), "--reference", pet(r), "--outside", "0"],
        "do not overlap", ["far.nii.gz"])
    yield c("aggregate: duplicated lesion rows", lambda r, f: _aggregate(r, r / "subjects.tsv", [
        variant(r, f, "s0_lesions.parquet", lambda p: edit_table(p, lambda t: pd.concat([t, t]))),
        *_train_lesions(r)[1:]]), "has lesion 1 more than once", ["s0_lesions.parquet", "subject s0"])
    yield c("aggregate: rows of another subject", lambda r, f: _aggregate(r, r / "subjects.tsv", [
        variant(r, f, "s0_lesions.parquet", lambda p: edit_table(p, lambda t: t.assign(subject_id="s1"))),
        *_train_lesions(r)[1:]]), "has rows of subject s1", ["s0_lesions.parquet", "subject s0"])
    yield c("aggregate: a lesion table twice", lambda r, f: _aggregate(r, r / "subjects.tsv",
                                                                       _train_lesions(r) + [_train_lesions(r)[0]]),
            "second lesion table of the subject", ["s0_lesions.parquet", "subject s0"])
    yield c("aggregate: missing lesion table", lambda r, f: _aggregate(r, r / "subjects.tsv", _train_lesions(r)[1:]),
            "no lesion table for subject(s) s0", [])
    yield c("aggregate: event 2", lambda r, f: _aggregate(r, edit_sheet(r, f, lambda s: s.assign(
        event=[2] + list(s["event"][1:]))), _train_lesions(r)), "event", ["subjects.tsv", "subject s0"])
    yield c("aggregate: negative time", lambda r, f: _aggregate(r, edit_sheet(r, f, lambda s: s.assign(
        time=[-5.0] + list(s["time"][1:]))), _train_lesions(r)), "time must be a positive", ["subjects.tsv", "subject s0"])
    yield c("aggregate: duplicated subject", lambda r, f: _aggregate(r, edit_sheet(
        r, f, lambda s: pd.concat([s, s.iloc[:1]])), _train_lesions(r)), "appears more than once",
        ["subjects.tsv", "subject s0"])
    yield c("aggregate: hostile subject ID", lambda r, f: _aggregate(r, edit_sheet(r, f, lambda s: s.assign(
        subject_id=["x$(touch${IFS}PWNED)"] + list(s["subject_id"][1:]))), _train_lesions(r)),
        "may hold only letters", ["subjects.tsv", "x$(touch${IFS}PWNED)"])
    yield c("aggregate: unknown cohort", lambda r, f: _aggregate(r, r / "subjects.tsv", _train_lesions(r), "trian"),
            "no subject has cohort 'trian'", ["subjects.tsv"])
    yield c("fit: validation table", lambda r, f: ["fit", "--features", r / "validation.parquet", "--model", "coxph",
                                                   "--include", "total_mtv_ml"],
            "not of the training cohort 'train'", ["validation.parquet"])
    yield c("fit: unknown feature", lambda r, f: ["fit", "--features", r / "train.parquet", "--model", "coxph",
                                                  "--include", "total_mtv"], "total_mtv", ["train.parquet"])
    yield c("fit: event 2 in the table", lambda r, f: ["fit", "--features", variant(
        r, f, "train.parquet", lambda p: edit_table(p, lambda t: t.assign(event=2))), "--model", "coxph",
        "--include", "total_mtv_ml"], "event must be 0 or 1", ["train.parquet", "subject s0"])
    yield c("score: edited coefficient", lambda r, f: ["score", "--model", edit_model(r, f, lambda m: json_edit(
        m / "model.json", lambda s: s.update(risk_cutoff=s["risk_cutoff"] + 1))), "--features",
        r / "validation.parquet"], "differs from the one in manifest.json", ["model.json"])
    yield c("score: manifest missing", lambda r, f: ["score", "--model", edit_model(
        r, f, lambda m: (m / "manifest.json").unlink()), "--features", r / "validation.parquet"],
        "manifest.json: missing", ["manifest.json"])
    yield c("score: another bundle than the published", lambda r, f: [
        "score", "--model", r / "model", "--features", r / "validation.parquet", "--expect-sha256", "0" * 64],
        "is not the expected", ["manifest.json"])
    yield c("score: not a model directory", lambda r, f: ["score", "--model", f, "--features",
                                                          r / "validation.parquet"], "model.json missing", [])
    yield c("score: table lacking a column", lambda r, f: ["score", "--model", r / "model", "--features", variant(
        r, f, "validation.parquet", lambda p: edit_table(p, lambda t: t.drop(columns="suv_max")))],
        "lacks the training table's column(s) suv_max", ["validation.parquet"])
    yield c("score: validation mixed with training subjects", lambda r, f: [
        "score", "--model", r / "model", "--features", variant(r, f, "validation.parquet", lambda p: edit_table(
            p, lambda t: pd.concat([t, pd.read_parquet(r / "train.parquet").iloc[:1]])))],
        "is also in the training cohort", ["validation.parquet", "subject s0"])
    yield c("evaluate: event 2", lambda r, f: _evaluate(variant(r, f, "scores.parquet", lambda p: edit_table(
        p, lambda t: t.assign(event=[2] + list(t["event"][1:]))))), "event must be 0 or 1", ["scores.parquet"])
    yield c("evaluate: negative time", lambda r, f: _evaluate(variant(r, f, "scores.parquet", lambda p: edit_table(
        p, lambda t: t.assign(time=[-1.0] + list(t["time"][1:]))))), "time must be a positive", ["scores.parquet"])
    yield c("evaluate: duplicated subject", lambda r, f: _evaluate(variant(
        r, f, "scores.parquet", lambda p: edit_table(p, lambda t: pd.concat([t, t.iloc[:1]])))),
        "scored more than once", ["scores.parquet"])
    yield c("evaluate: two subjects", lambda r, f: _evaluate(variant(
        r, f, "scores.parquet", lambda p: edit_table(p, lambda t: t.iloc[:2]))), "at least 3 are needed",
        ["scores.parquet"])
    yield c("evaluate: no outcome", lambda r, f: _evaluate(variant(
        r, f, "scores.parquet", lambda p: edit_table(p, lambda t: t.drop(columns=["time", "event"])))),
        "lack column(s) time, event", ["scores.parquet"])
    yield c("evaluate: wrong truth table", lambda r, f: [*_evaluate(r / "scores.parquet"), "--truth",
                                                         r / "subjects.tsv"], "truth table lacks column(s) true_lp",
            ["subjects.tsv"])


@pytest.mark.parametrize("build, expected, names", list(cases()))
def test_bad_input_gives_one_line_and_writes_nothing(study, tmp_path, build, expected, names):
    folder = tmp_path / "case"
    folder.mkdir()
    args = build(study, folder)
    out = tmp_path / "out" / "result"
    outputs = {"features": ".parquet", "segment": ".nii.gz", "resample": ".nii.gz", "aggregate": ".parquet",
               "fit": "", "score": ".parquet", "evaluate": ".json"}
    target = out.with_name("result" + outputs[args[0]])
    argv = [str(a) for a in args] + ([] if "--out" in args else ["--out", str(target)])
    result = CliRunner().invoke(app, argv)
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1, (result.output, result.exception)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"biomarkers {args[0]}: error: ") and expected in lines[0], lines[0]
    for name in names:
        assert name in lines[0], lines[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert not any(p.name.startswith(".") for p in folder.rglob("*"))  # no temporary file left behind


def test_catalogue_is_long_enough():
    assert len(list(cases())) >= 40
