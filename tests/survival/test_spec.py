"""The typed model specification: what the workflow, `fit`, `cv` and `uncertainty-choice` share."""
import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from biomarkers.cli import app
from biomarkers.survival.bundle import bundle_sha256
from biomarkers.survival.spec import ModelSpec
from gbsg2 import FEATURES, LOGS


def test_values_are_cast_to_their_defaults_types_and_unknown_ones_refused():
    spec = ModelSpec("deepsurv", ["age"], params={"mc_samples": "20", "dropout": "0.2", "hidden": "16"})
    assert spec.params == {"mc_samples": 20, "dropout": 0.2, "hidden": "16"}
    assert spec.hyperparameters["max_epochs"] == 200 and spec.stochastic
    assert spec.features == ("age",) and spec.log_features == ()
    # one rule for stochastic: no dropout means no MC-dropout spread, whatever mc_samples says
    assert not ModelSpec("deepsurv", params={"dropout": 0}).stochastic
    assert not ModelSpec("coxph").stochastic
    with pytest.raises(ValueError, match="model rsf has no hyperparameter 'trees'"):
        ModelSpec("rsf", params={"trees": 30})
    with pytest.raises(ValueError, match="deepsurv hyperparameter mc_samples must be a int, got 'many'"):
        ModelSpec("deepsurv", params={"mc_samples": "many"})
    with pytest.raises(ValueError, match="unknown model 'cox'"):
        ModelSpec("cox")


def test_json_round_trip_and_schema_errors():
    spec = ModelSpec("coxnet", ["age", "pnodes"], ["pnodes"], {"l1_ratio": 0.5}, {"fdr_q": 0.1})
    assert ModelSpec.from_record(spec.record()) == spec
    assert ModelSpec.from_json(spec.with_pipeline({}).to_json()) == spec.with_pipeline({})
    assert json.loads(ModelSpec("coxph").to_json()) == {"kind": "coxph", "features": None, "log_features": [],
                                                         "params": {}}
    assert list(spec.record()) == ["features", "kind", "log_features", "params", "pipeline"]
    with pytest.raises(ValueError, match="--spec: not valid JSON"):
        ModelSpec.from_json("{kind: coxph}")
    with pytest.raises(ValueError, match="--spec at features: \\[\\] should be non-empty|--spec at features"):
        ModelSpec.from_json('{"kind": "coxph", "features": []}')
    with pytest.raises(ValueError, match="Additional properties are not allowed \\('penalizer' was unexpected\\)"):
        ModelSpec.from_json('{"kind": "coxph", "penalizer": 0.1}')
    with pytest.raises(ValueError, match="--spec at kind: 'cox' is not one of"):
        ModelSpec.from_json('{"kind": "cox"}')
    with pytest.raises(ValueError, match="--spec at params/penalizer"):
        ModelSpec.from_json('{"kind": "coxph", "params": {"penalizer": [0.1]}}')


def test_config_entries_as_the_workflow_reads_them():
    default, logs = ["suv_max", "age", "mtv"], ["mtv"]
    plain = ModelSpec.from_entry("coxph", {"penalizer": 0.1}, default, logs)
    assert plain == ModelSpec("coxph", default, logs, {"penalizer": 0.1})
    clinical = ModelSpec.from_entry("clinical", {"kind": "coxph", "features": ["age", "ecog"]}, default, logs)
    assert clinical.kind == "coxph" and clinical.features == ("age", "ecog") and clinical.log_features == ()
    combined = ModelSpec.from_entry("combined", {"kind": "coxph", "add_features": ["largest_deep_*"]}, default, logs)
    assert combined.features == (*default, "largest_deep_*") and combined.log_features == ("mtv",)
    unet = ModelSpec.from_entry("coxph_unet", {"kind": "coxph", "segmentation": "unet"}, default, logs)
    assert unet == ModelSpec("coxph", default, logs)  # which lesions: the workflow's concern
    own = ModelSpec.from_entry("deepsurv", {"log_features": [], "dropout": 0.0}, [], logs)
    assert own.features is None and own.log_features == () and not own.stochastic
    with pytest.raises(ValueError, match="model deep: model coxph has no hyperparameter 'dropout'"):
        ModelSpec.from_entry("deep", {"kind": "coxph", "dropout": 0.1})


def test_fit_by_spec_freezes_the_same_bundle_as_by_flags(gbsg2, tmp_path):
    train, _ = gbsg2
    train.to_parquet(tmp_path / "train.parquet")
    runner = CliRunner()
    common = ["fit", "--features", str(tmp_path / "train.parquet"), "--horizons", "365,730"]
    flags = runner.invoke(app, [*common, "--model", "coxph", "--set", "penalizer=0.5", "--include",
                                ",".join(FEATURES), "--log-features", ",".join(LOGS), "--out", str(tmp_path / "a")])
    assert flags.exit_code == 0, flags.output
    spec = ModelSpec("coxph", FEATURES, LOGS, {"penalizer": 0.5}).to_json()
    by_spec = runner.invoke(app, [*common, "--spec", spec, "--out", str(tmp_path / "b")])
    assert by_spec.exit_code == 0, by_spec.output
    assert bundle_sha256(tmp_path / "a") == bundle_sha256(tmp_path / "b")
    both = runner.invoke(app, [*common, "--spec", spec, "--model", "coxph", "--out", str(tmp_path / "c")])
    assert both.exit_code == 1 and "give it without --model" in both.output and not (tmp_path / "c").exists()
    bad = runner.invoke(app, [*common, "--spec", '{"kind": "coxph", "params": {"penaliser": 1}}',
                              "--out", str(tmp_path / "d")])
    assert bad.exit_code == 1 and "--spec: model coxph has no hyperparameter 'penaliser'" in bad.output


def test_cv_candidates_by_spec_equal_those_by_flags(gbsg2, tmp_path):
    train, _ = gbsg2
    train.to_parquet(tmp_path / "train.parquet")
    runner = CliRunner()
    common = ["cv", "--features", str(tmp_path / "train.parquet"), "--include", ",".join(FEATURES), "--log-features",
              ",".join(LOGS), "--folds", "3"]
    flags = runner.invoke(app, [*common, "--model", "coxph", "--set", "coxph.penalizer=0.5",
                                "--out", str(tmp_path / "a.tsv")])
    assert flags.exit_code == 0, flags.output
    small = ModelSpec("coxph", ["age", "pnodes"], ["pnodes"]).to_json()
    spec = ModelSpec("coxph", FEATURES, LOGS, {"penalizer": 0.5}).to_json()
    by_spec = runner.invoke(app, [*common, "--spec", f"coxph={spec}", "--spec", f"small={small}",
                                  "--out", str(tmp_path / "b.tsv")])
    assert by_spec.exit_code == 0, by_spec.output
    a, b = (pd.read_csv(tmp_path / f, sep="\t").set_index("model") for f in ("a.tsv", "b.tsv"))
    assert b.loc["coxph", "harrell_c_mean"] == a.loc["coxph", "harrell_c_mean"]
    assert set(b.index) == {"coxph", "small"}
    twice = runner.invoke(app, [*common, "--model", "coxph", "--spec", f"coxph={spec}", "--out", str(tmp_path / "c.tsv")])
    assert twice.exit_code == 1 and "candidate coxph given twice" in twice.output
    none = runner.invoke(app, [*common, "--out", str(tmp_path / "d.tsv")])
    assert none.exit_code == 1 and "no candidate: give --model or --spec" in none.output
    piped = ModelSpec("coxph", pipeline={"fdr_q": 0.1}).to_json()
    refused = runner.invoke(app, [*common, "--spec", f"coxph={piped}", "--out", str(tmp_path / "e.tsv")])
    assert refused.exit_code == 1 and "give the preprocessing by its own options" in refused.output
    assert not (tmp_path / "d.tsv").exists() and not (tmp_path / "e.tsv").exists()
