"""Deep survival models (DeepSurv, logistic hazard) against a Cox model on GBSG2, and MC dropout."""
import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sksurv.column import encode_categorical
from sksurv.datasets import load_gbsg2
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.metrics import concordance_index_censored
from sksurv.nonparametric import kaplan_meier_estimator, nelson_aalen_estimator

from biomarkers.survival.breslow import breslow_baseline
from biomarkers.survival.deep import DeepSurvivalModel, _mc_outputs_loop
from biomarkers.survival.losses import cox_loss
from biomarkers.deep.training import stratified_split

# Settings chosen on GBSG2 splits 0..11 (two fit seeds each, worst difference to Cox -0.017);
# the split pinned here (2024) was not among them.
SPLIT_SEED = 2024
SETTINGS = {
    "deepsurv": ({}, {"max_epochs": 40, "val_fraction": 0.0}),
    "logistic_hazard": ({"n_durations": 10, "cut_scheme": "equidistant"}, {"max_epochs": 160, "val_fraction": 0.0}),
    "deephit": ({"n_durations": 10, "cut_scheme": "equidistant"}, {"max_epochs": 160, "val_fraction": 0.0}),
}


@pytest.fixture(scope="module")
def gbsg2():
    x, y = load_gbsg2()
    x = encode_categorical(x).to_numpy(dtype=float)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    train, test = order[: int(0.7 * len(x))], order[int(0.7 * len(x)):]
    mean, sd = x[train].mean(axis=0), x[train].std(axis=0)
    z = (x - mean) / sd
    return {"x": z[train], "time": y["time"][train], "event": y["cens"][train].astype(int), "y": y[train],
            "x_test": z[test], "time_test": y["time"][test], "event_test": y["cens"][test]}


@pytest.fixture(scope="module")
def fitted(gbsg2):
    models = {}
    for kind, (init, fit) in SETTINGS.items():
        models[kind] = DeepSurvivalModel(kind, **init).fit(gbsg2["x"], gbsg2["time"], gbsg2["event"], seed=0, **fit)
    return models


def _c_index(data, risk):
    return concordance_index_censored(data["event_test"], data["time_test"], risk)[0]


@pytest.mark.parametrize("kind", list(SETTINGS))
def test_c_index_close_to_cox(gbsg2, fitted, kind):
    cox = CoxPHSurvivalAnalysis().fit(gbsg2["x"], gbsg2["y"])
    c_cox = _c_index(gbsg2, cox.predict(gbsg2["x_test"]))
    c_deep = _c_index(gbsg2, fitted[kind].predict_risk(gbsg2["x_test"])[0])
    assert 0.62 < c_cox < 0.75
    assert c_deep > c_cox - 0.02, f"{kind}: C {c_deep:.3f} vs Cox {c_cox:.3f}"


def test_same_seed_same_weights_other_seed_differs(gbsg2):
    def fit(seed):
        return DeepSurvivalModel("deepsurv").fit(gbsg2["x"], gbsg2["time"], gbsg2["event"], seed=seed,
                                                 max_epochs=5, val_fraction=0.2)

    a, b, c = fit(3), fit(3), fit(4)
    for name, weight in a.state_dict()["weights"].items():
        assert torch.equal(weight, b.state_dict()["weights"][name])
    assert np.array_equal(a.predict_risk(gbsg2["x_test"])[0], b.predict_risk(gbsg2["x_test"])[0])
    assert a.history_.equals(b.history_)
    assert not np.array_equal(a.predict_risk(gbsg2["x_test"])[0], c.predict_risk(gbsg2["x_test"])[0])


def test_fit_leaves_global_torch_state_alone(gbsg2):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    DeepSurvivalModel("deepsurv").fit(gbsg2["x"], gbsg2["time"], gbsg2["event"], max_epochs=2)
    assert torch.equal(torch.rand(3), expected)
    assert not torch.are_deterministic_algorithms_enabled()


def test_early_stopping_restores_best_epoch(gbsg2):
    model = DeepSurvivalModel("deepsurv").fit(gbsg2["x"], gbsg2["time"], gbsg2["event"], seed=1, max_epochs=300,
                                              lr=1e-2, patience=5, val_fraction=0.2)
    history = model.history_
    assert len(history) < 300  # stopped early
    assert model.best_epoch_ == int(history["val_loss"].idxmin()) == len(history) - 6
    _, val = stratified_split(gbsg2["event"], 0.2, seed=1)
    assert gbsg2["event"][val].mean() == pytest.approx(gbsg2["event"].mean(), abs=0.01)
    with torch.no_grad():
        out = model.net_(torch.as_tensor(gbsg2["x"][val], dtype=torch.float32))
        loss = cox_loss(out, torch.as_tensor(gbsg2["time"][val], dtype=torch.float32),
                         torch.as_tensor(gbsg2["event"][val], dtype=torch.float32))
    assert float(loss) == pytest.approx(history["val_loss"].min(), rel=1e-6)


@pytest.mark.parametrize("kind", list(SETTINGS))
def test_mc_dropout(gbsg2, fitted, kind):
    model, x = fitted[kind], gbsg2["x_test"]
    mean0, sd0 = model.predict_risk(x)
    assert np.all(sd0 == 0.0)
    mean, sd = model.predict_risk(x, mc_samples=30, seed=7)
    assert np.all(sd > 0)
    again = model.predict_risk(x, mc_samples=30, seed=7)
    assert np.array_equal(mean, again[0]) and np.array_equal(sd, again[1])
    chunked = model.predict_risk(x, mc_samples=30, seed=7, batch_size=17)  # same masks, other GEMM shapes
    np.testing.assert_allclose(chunked[0], mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(chunked[1], sd, rtol=1e-5, atol=1e-6)
    other = model.predict_risk(x, mc_samples=30, seed=8)
    assert not np.array_equal(sd, other[1])
    assert np.corrcoef(mean, mean0)[0, 1] > 0.95  # MC mean tracks the deterministic risk


@pytest.mark.parametrize("kind", list(SETTINGS))
def test_batched_mc_dropout_equals_loop(gbsg2, fitted, kind):
    model, x = fitted[kind], gbsg2["x_test"][:50]
    loop = _mc_outputs_loop(model, x, mc_samples=20, seed=5)
    _, batched = next(model._outputs(x, mc_samples=20, seed=5, batch_size=None))
    np.testing.assert_allclose(batched, loop, rtol=1e-6, atol=1e-6)
    risk = model._risk(loop)
    mean, sd = model.predict_risk(x, mc_samples=20, seed=5)
    np.testing.assert_allclose(mean, risk.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(sd, risk.std(axis=0, ddof=1), rtol=1e-5)


@pytest.mark.parametrize("kind", list(SETTINGS))
def test_save_load_round_trip(gbsg2, fitted, kind, tmp_path):
    model, x = fitted[kind], gbsg2["x_test"]
    model.save(tmp_path / "model.pt")
    loaded = DeepSurvivalModel.load(tmp_path / "model.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    for mc in (0, 10):
        assert np.array_equal(model.predict_risk(x, mc, seed=2)[1], loaded.predict_risk(x, mc, seed=2)[1])
        assert np.array_equal(model.predict_risk(x, mc, seed=2)[0], loaded.predict_risk(x, mc, seed=2)[0])
    times = np.array([365.0, 1000.0])
    assert np.array_equal(model.predict_survival(x, times).mean, loaded.predict_survival(x, times).mean)
    assert loaded.history_.equals(model.history_)


@pytest.mark.parametrize("kind", list(SETTINGS))
def test_survival_curves_are_monotone_probabilities(gbsg2, fitted, kind):
    times = np.linspace(0, 3000, 61)
    curves = fitted[kind].predict_survival(gbsg2["x_test"], times, mc_samples=20, seed=1, return_samples=True)
    assert curves.samples.shape == (20, len(gbsg2["x_test"]), len(times))
    for s in (curves.mean, curves.lower, curves.upper, curves.samples):
        assert np.all((s >= 0) & (s <= 1))
        assert np.all(np.diff(s, axis=-1) <= 0)
    assert np.all(curves.lower <= curves.mean + 1e-12) and np.all(curves.mean <= curves.upper + 1e-12)
    assert np.all(curves.upper[:, -1] - curves.lower[:, -1] > 0)
    plain = fitted[kind].predict_survival(gbsg2["x_test"], times)
    assert np.array_equal(plain.lower, plain.mean) and plain.samples is None


@pytest.mark.parametrize("kind", list(SETTINGS))
def test_mean_survival_matches_kaplan_meier(gbsg2, fitted, kind):
    km_time, km_surv = kaplan_meier_estimator(gbsg2["event"].astype(bool), gbsg2["time"])
    times = np.array([365.0, 730.0, 1095.0, 1460.0, 1825.0])
    km = km_surv[np.searchsorted(km_time, times, side="right") - 1]
    predicted = fitted[kind].predict_survival(gbsg2["x"], times).mean.mean(axis=0)
    # DeepHit's ranking loss trades calibration for discrimination (its curves fall too fast at
    # late times, as Kvamme, Borgan & Scheel 2019 report): a wider band, still a check
    np.testing.assert_allclose(predicted, km, atol=0.08 if kind == "deephit" else 0.05)


@pytest.mark.parametrize("kind", list(SETTINGS))
def test_batch_norm_and_quantile_cuts(gbsg2, kind, tmp_path):
    model = DeepSurvivalModel(kind, hidden=(16, 8), batch_norm=True, cut_scheme="quantiles").fit(
        gbsg2["x"], gbsg2["time"], gbsg2["event"], seed=0, max_epochs=3)
    mean, sd = model.predict_risk(gbsg2["x_test"], mc_samples=10)
    assert np.all(np.isfinite(mean)) and np.all(sd > 0)
    model.save(tmp_path / "bn.pt")
    loaded = DeepSurvivalModel.load(tmp_path / "bn.pt")
    assert np.array_equal(loaded.predict_risk(gbsg2["x_test"], mc_samples=10)[1], sd)
    assert loaded.fit_params_ == model.fit_params_ and loaded.fit_params_["max_epochs"] == 3


def test_breslow_is_nelson_aalen_at_zero_risk_and_known_small_case():
    rng = np.random.default_rng(0)
    time = rng.integers(1, 30, 200).astype(float)  # many ties
    event = rng.integers(0, 2, 200)
    t, h0 = breslow_baseline(time, event, np.zeros(200))
    na_time, na = nelson_aalen_estimator(event.astype(bool), time)
    np.testing.assert_allclose(h0, na[np.isin(na_time, t)], rtol=1e-12)
    # times 1, 2, 2, 3 with events 1, 1, 0, 1 and risks log(1), log(2), log(3), log(4)
    t, h0 = breslow_baseline(np.array([1.0, 2, 2, 3]), np.array([1, 1, 0, 1]), np.log([1.0, 2, 3, 4]))
    assert t.tolist() == [1, 2, 3]
    np.testing.assert_allclose(h0, np.cumsum([1 / 10, 1 / 9, 1 / 4]))


def test_logistic_hazard_risk_grows_with_hazard(fitted):
    model = fitted["logistic_hazard"]
    phi = np.zeros((1, 3, len(model.cuts_)))
    phi[0, 1] += 1.0
    phi[0, 2, 3:] += 2.0
    risk = model._risk(phi)[0]
    assert risk[0] < risk[1] and risk[0] < risk[2]
    assert model._risk(np.full((1, 1, len(model.cuts_)), -50.0))[0, 0] == pytest.approx(0.0, abs=1e-6)


def test_invalid_inputs(gbsg2, fitted):
    with pytest.raises(ValueError, match="unknown deep survival model"):
        DeepSurvivalModel("deephit-competing").fit(gbsg2["x"], gbsg2["time"], gbsg2["event"])
    with pytest.raises(ValueError, match="at least 2 events"):
        DeepSurvivalModel().fit(gbsg2["x"], gbsg2["time"], np.zeros(len(gbsg2["x"])))
    with pytest.raises(ValueError, match="mc_samples"):
        fitted["deepsurv"].predict_risk(gbsg2["x_test"], mc_samples=1)
    with pytest.raises(ValueError, match=r"shape \(n, 9\)"):
        fitted["deepsurv"].predict_risk(gbsg2["x_test"][:, :4])
    with pytest.raises(NotFittedError):
        DeepSurvivalModel().predict_risk(gbsg2["x_test"])


@pytest.mark.parametrize("kind", ["deepsurv", "logistic_hazard"])
def test_a_patients_mc_dropout_samples_do_not_depend_on_the_other_patients(gbsg2, fitted, kind):
    # A new patient scored alone through a frozen signature, or the cohort in another order, gets the
    # dropout masks the study's cohort gave it: they are keyed by the patient's inputs, not its row.
    model, x = fitted[kind], gbsg2["x_test"][:40]
    together = model.risk_samples(x, mc_samples=25, seed=3)
    reversed_order = model.risk_samples(x[::-1].copy(), mc_samples=25, seed=3)[:, ::-1]
    alone = np.hstack([model.risk_samples(x[[i]], mc_samples=25, seed=3) for i in (0, 17, 39)])
    # float32 forward passes of other batch shapes round differently: 1e-6, against ~0.1 between masks
    np.testing.assert_allclose(reversed_order, together, rtol=0, atol=1e-6)
    np.testing.assert_allclose(alone, together[:, [0, 17, 39]], rtol=0, atol=1e-6)
    assert not np.allclose(model.risk_samples(x, mc_samples=25, seed=4), together)  # the seed still matters
