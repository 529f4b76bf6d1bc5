"""ComBat harmonisation against neuroCombat 0.2.12 (the maintained Python port of sva::ComBat)."""
import contextlib
import copy
import io
import json

import numpy as np
import pandas as pd
import pytest
from neuroCombat import neuroCombat  # the reference (a test dependency)
from sksurv.datasets import load_gbsg2

from biomarkers.errors import FeatureTableError
from biomarkers.survival.harmonize import ComBat



def reference(x: pd.DataFrame, batch, covariates: pd.DataFrame | None = None, **kwargs) -> dict:
    """neuroCombat on the same data (features x samples, float64: a DataFrame would be cast to float32)."""
    covars = pd.DataFrame({"site": np.asarray(batch, dtype=str)})
    cont = []
    if covariates is not None:
        for c in covariates.columns:
            covars[c] = covariates[c].to_numpy()
            cont.append(c)
    with contextlib.redirect_stdout(io.StringIO()):  # neuroCombat prints progress
        return neuroCombat(x.to_numpy(np.float64).T.copy(), covars, "site", continuous_cols=cont, **kwargs)


def synthetic(seed: int = 11, sizes=(45, 30, 60, 18), n_features: int = 15, age_slope: float = 0.04):
    """Features with strong additive and multiplicative centre effects and a true age effect."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([f"c{k}" for k in range(len(sizes))], sizes)
    # age in whole years: neuroCombat casts continuous covariates to float32, so keep them exact in float32
    age = np.round(rng.uniform(35, 80, len(labels)))
    slope = age_slope * np.linspace(0.5, 1.5, n_features)
    shift = rng.normal(0, 2.0, (len(sizes), n_features))
    scale = rng.uniform(0.5, 2.0, (len(sizes), n_features))
    idx = np.unique(labels, return_inverse=True)[1]
    x = 20 + np.outer(age, slope) + shift[idx] + scale[idx] * rng.normal(size=(len(labels), n_features))
    return pd.DataFrame(x, columns=[f"f{j:02d}" for j in range(n_features)]), labels, pd.DataFrame({"age": age}), slope


def gbsg2_centres():
    """Real-shaped data: GBSG2 receptor/node/size features (log1p), 5 unbalanced pseudo-centres with
    multiplicative scanner-like effects on the raw values; age is the preserved covariate."""
    x, _ = load_gbsg2()
    rng = np.random.default_rng(5)
    labels = rng.choice(["north", "south", "east", "west", "mid"], size=len(x), p=[0.35, 0.25, 0.2, 0.12, 0.08])
    raw = x[["estrec", "pnodes", "progrec", "tsize"]].to_numpy(float)
    gain = {"north": [1, 1, 1, 1], "south": [1.8, 1, 0.6, 1.3], "east": [0.7, 1.4, 1.5, 0.8],
            "west": [2.5, 1, 0.8, 1.1], "mid": [1.2, 0.9, 2.0, 1.5]}
    raw = raw * np.array([gain[c] for c in labels])
    feats = pd.DataFrame(np.log1p(raw), columns=["estrec", "pnodes", "progrec", "tsize"])
    feats["log_ratio"] = feats["estrec"] - feats["progrec"]
    return feats, labels, pd.DataFrame({"age": x["age"].to_numpy(float)})


def assert_same_as_reference(model: ComBat, ours: pd.DataFrame, ref: dict, rel: float = 1e-6) -> None:
    est = ref["estimates"]
    theirs = ref["data"].T
    assert np.abs(ours.to_numpy() - theirs).max() <= rel * np.abs(theirs).max()
    batches = [str(b) for b in est["batches"]]
    assert batches == list(model.batches_)
    for key, ref_key in [("gamma_star", "gamma.star"), ("delta_star", "delta.star"),
                         ("gamma_hat", "gamma_hat"), ("delta_hat", "delta_hat")]:
        mine = np.array([model.batches_[b][key] for b in batches])
        np.testing.assert_allclose(mine, np.asarray(est[ref_key], dtype=float), rtol=rel, atol=1e-12)
    np.testing.assert_allclose([model.batches_[b]["gamma_bar"] for b in batches], est["gamma_bar"], rtol=rel)
    np.testing.assert_allclose([model.batches_[b]["t2"] for b in batches], est["t2"], rtol=rel)
    if est["a_prior"] is not None:
        np.testing.assert_allclose([model.batches_[b]["a_prior"] for b in batches], est["a_prior"], rtol=rel)
        np.testing.assert_allclose([model.batches_[b]["b_prior"] for b in batches], est["b_prior"], rtol=rel)
    np.testing.assert_allclose(model.var_pooled_, est["var.pooled"][:, 0], rtol=rel)
    np.testing.assert_allclose(model.grand_mean_, est["stand.mean"][:, 0], rtol=rel)


@pytest.mark.parametrize("options", [{}, {"mean_only": True}, {"eb": False}])
def test_matches_neurocombat_on_synthetic_data_with_covariate(options):
    x, labels, age, _ = synthetic()
    model = ComBat(**options)
    ours = model.fit_transform(x, labels, age)
    ref = reference(x, labels, age, **options)
    assert_same_as_reference(model, ours, ref)
    cov_effect = age.to_numpy() @ model.covariate_coef_
    np.testing.assert_allclose(cov_effect, ref["estimates"]["mod.mean"].T, rtol=1e-6, atol=1e-9)


def test_matches_neurocombat_without_covariates():
    x, labels, _, _ = synthetic(seed=3, sizes=(25, 25, 40))
    model = ComBat()
    assert_same_as_reference(model, model.fit_transform(x, labels), reference(x, labels))


def test_matches_neurocombat_on_real_shaped_data():
    feats, labels, age = gbsg2_centres()
    model = ComBat()
    ours = model.fit_transform(feats, labels, age)
    assert_same_as_reference(model, ours, reference(feats, labels, age))
    assert all(b["n_iter"] >= 2 for b in model.batches_.values())


def test_removes_centre_effect_and_keeps_covariate_effect():
    x, labels, age, slope = synthetic(seed=21, sizes=(80, 70, 90, 60))
    model = ComBat()
    out = model.fit_transform(x, labels, age)
    a = age["age"].to_numpy()

    def centre_means(frame):  # per-centre means after removing the fitted age effect
        resid = frame.to_numpy() - np.outer(a, model.covariate_coef_[0])
        return np.array([resid[labels == b].mean(axis=0) for b in np.unique(labels)])

    def centre_sds(frame):
        resid = frame.to_numpy() - np.outer(a, slope)
        return np.array([resid[labels == b].std(axis=0, ddof=1) for b in np.unique(labels)])

    before, after = np.ptp(centre_means(x), axis=0), np.ptp(centre_means(out), axis=0)
    assert before.min() > 1.0  # strong centre effect going in
    # gone afterwards, but for the EB shrinkage of gamma towards the centre's prior mean
    assert (after / np.sqrt(model.var_pooled_)).max() < 0.08
    sd_ratio = centre_sds(out).max(axis=0) / centre_sds(out).min(axis=0)
    assert sd_ratio.max() < 1.25 < (centre_sds(x).max(axis=0) / centre_sds(x).min(axis=0)).min()
    # the age slope survives: regress the harmonised values on age alone
    fitted = np.polyfit(a, out.to_numpy(), 1)[0]
    np.testing.assert_allclose(fitted, slope, atol=0.012)


def test_unseen_centre_recovers_the_training_centre_values():
    x, labels, _, _ = synthetic(seed=8, sizes=(50, 40, 35), n_features=12)
    rng = np.random.default_rng(1)
    gain, offset = rng.uniform(0.8, 1.25, x.shape[1]), rng.normal(0, 2.0, x.shape[1])
    rows = labels == "c1"
    copy_of_c1 = x[rows] * gain + offset  # another scanner seeing the same patients
    new = ["validation"] * int(rows.sum())

    exact = ComBat(eb=False).fit(x, labels)  # without shrinkage the location/scale model is exact
    np.testing.assert_allclose(exact.transform(copy_of_c1, new), exact.transform(x[rows], labels[rows]),
                               rtol=1e-10)
    # EB shrinks a centre's estimates towards its prior, and the copy's prior differs from c1's; the pooled
    # training prior shrinks towards a typical training centre, which the shifted copy is not
    for priors, tolerance in (("batch", 0.15), ("training", 0.25)):
        model = ComBat(unseen_priors=priors).fit(x, labels)
        ref = model.transform(x[rows], labels[rows])
        got = model.transform(copy_of_c1, new)
        err = (got - ref).abs().max().to_numpy() / x.std().to_numpy()
        assert err.max() < tolerance, priors
        assert min(np.corrcoef(got[f], ref[f])[0, 1] for f in x) > 0.9999


def test_training_centre_relabelled_as_new_gets_its_stored_estimates():
    x, labels, age, _ = synthetic()
    model = ComBat().fit(x, labels, age)
    rows = labels == "c2"
    seen = model.transform(x[rows], labels[rows], age[rows])
    unseen = model.transform(x[rows], np.full(rows.sum(), "elsewhere"), age[rows])
    np.testing.assert_allclose(unseen, seen, rtol=1e-12)


def test_transform_never_changes_the_fitted_state_and_rows_of_seen_centres_are_independent():
    x, labels, age, _ = synthetic()
    model = ComBat().fit(x, labels, age)
    before = copy.deepcopy(model.to_dict())
    alone = model.transform(x.iloc[:10], labels[:10], age.iloc[:10])
    new = x.iloc[:30] * 3 + 1
    both = model.transform(pd.concat([x.iloc[:10], new], ignore_index=True),
                           np.r_[labels[:10], ["v"] * 30], pd.concat([age.iloc[:10], age.iloc[:30]], ignore_index=True))
    np.testing.assert_array_equal(both.iloc[:10].to_numpy(), alone.to_numpy())
    assert model.to_dict() == before


def test_json_round_trip_is_exact():
    x, labels, age, _ = synthetic()
    model = ComBat().fit(x, labels, age)
    state = json.loads(json.dumps(model.to_dict()))
    assert set(state) == {"params", "features_", "covariates_", "grand_mean_", "var_pooled_", "covariate_coef_",
                          "batches_", "pooled_priors_"}
    assert set(state["batches_"]["c0"]) == {"n", "gamma_hat", "delta_hat", "gamma_bar", "t2", "a_prior", "b_prior",
                                            "n_iter", "gamma_star", "delta_star"}
    back = ComBat.from_dict(state)
    assert back.to_dict() == model.to_dict()
    mixed = np.r_[labels[:50], ["v"] * (len(labels) - 50)]
    np.testing.assert_array_equal(back.transform(x, mixed, age), model.transform(x, mixed, age))


def test_unseen_centre_too_small_names_the_centre():
    x, labels, age, _ = synthetic()
    model = ComBat(min_batch_size=5).fit(x, labels, age)
    with pytest.raises(FeatureTableError, match="centre Hospital-Z .* 4 subject"):
        model.transform(x.iloc[:4], ["Hospital-Z"] * 4, age.iloc[:4])
    assert model.transform(x.iloc[:5], ["Hospital-Z"] * 5, age.iloc[:5]).shape == (5, x.shape[1])
    assert model.transform(x.iloc[:1], labels[:1], age.iloc[:1]).shape == (1, x.shape[1])  # seen: any size


def test_input_errors():
    x, labels, age, _ = synthetic()
    with pytest.raises(FeatureTableError, match="fewer than 5 subjects: c3"):
        ComBat(min_batch_size=5).fit(x.iloc[:-14], labels[:-14], age.iloc[:-14])
    confounded = pd.DataFrame({"age": (labels == "c1").astype(float)})
    with pytest.raises(FeatureTableError, match="confounded with the centre"):
        ComBat().fit(x, labels, confounded)
    holes = x.copy()
    holes.iloc[3, 2] = np.nan
    with pytest.raises(FeatureTableError, match="f02 .*impute first"):
        ComBat().fit(holes, labels, age)
    flat = x.assign(f05=1.0)
    with pytest.raises(FeatureTableError, match="constant within centres .* f05"):
        ComBat().fit(flat, labels, age)
    model = ComBat().fit(x, labels, age)
    with pytest.raises(FeatureTableError, match="lacks harmonised feature column.* f01"):
        model.transform(x.drop(columns="f01"), labels, age)
    with pytest.raises(FeatureTableError, match="covariate"):
        model.transform(x, labels)


def test_reference_centre_estimates_harmonise_a_patient_alone_as_in_its_cohort():
    # A signature keeps the validation centre's estimates (made from the whole cohort); a single new
    # patient of that centre is then harmonised to exactly the floats the cohort's transform gave.
    x, labels, age, _ = synthetic()
    train = labels != "c3"
    model = ComBat().fit(x[train], labels[train], age[train])
    cohort = x[~train].reset_index(drop=True)
    batch, cov = labels[~train], age[~train].reset_index(drop=True)
    together = model.transform(cohort, batch, cov)
    estimates = model.new_centre_estimates(cohort, batch, cov)
    assert list(estimates) == ["c3"] and estimates["c3"]["n"] == len(cohort)
    reference = ComBat.from_dict(json.loads(json.dumps(model.with_centres(estimates).to_dict())))
    alone = pd.concat([reference.transform(cohort.iloc[[i]], batch[[i]], cov.iloc[[i]]) for i in range(len(cohort))])
    np.testing.assert_array_equal(alone.to_numpy(), together.to_numpy())
    assert "c3" not in model.batches_  # the fitted model is not changed
    with pytest.raises(ValueError, match="centre\\(s\\) c0 were in the training cohort"):
        model.with_centres({"c0": estimates["c3"]})
