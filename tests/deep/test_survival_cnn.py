"""End-to-end deep survival (lesion-bag CNN with the Cox loss) and its lesion patch archives."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import torch

from biomarkers.deep.crops import PatchSpec
from biomarkers.deep.lesion_bags import LesionBags, bags_from_sheet, read_bags, write_bags
from biomarkers.survival.cnn import (CnnTraining, LesionBagCox, fit_lesion_bag_cox, load_network, network_bytes,
                                   risk_samples)
from biomarkers.errors import FeatureTableError, InputError
from biomarkers.survival.bundle import ModelSpec, fit_bundle, load_bundle, save_bundle, score_table
from biomarkers.validation.metrics import harrell_c

SPEC = PatchSpec((32.0, 32.0, 32.0), (8, 8, 8), ("pet", "mask"))


def sphere_cohort(n, seed):
    """Subjects with 0-3 spherical lesions (8^3 patches, PET and mask); hazard grows with log total volume.

    Returns bags, clinical (one covariate that also acts), time, event and the true log-hazard.
    """
    rng = np.random.default_rng(seed)
    grid = np.stack(np.mgrid[:8, :8, :8], axis=0) - 3.5
    r2 = (grid ** 2).sum(axis=0)
    bags, volume = [], np.zeros(n)
    for i in range(n):
        k = int(rng.integers(0, 4))
        bag = np.zeros((k, 2, 8, 8, 8), np.float32)
        for j in range(k):
            mask = r2 < rng.uniform(0.8, 4.0) ** 2
            bag[j, 0] = mask * rng.uniform(0.4, 0.8) + rng.normal(0.0, 0.03, mask.shape)
            bag[j, 1] = mask
            volume[i] += mask.sum()
        bags.append(bag)
    age = rng.normal(0.0, 1.0, (n, 1))
    lp = 0.8 * np.log1p(volume) + 0.5 * age[:, 0]
    t = rng.exponential(np.exp(-lp) * 1000.0)
    c = rng.uniform(200.0, 3000.0, n)
    return bags, age, np.minimum(t, c), (t <= c).astype(int), lp


@pytest.fixture(scope="module")
def fitted():
    bags, age, time, event, lp = sphere_cohort(120, 0)
    torch.set_num_threads(1)
    result = fit_lesion_bag_cox(bags, age, time, event,
                                CnnTraining(latent=4, width=4, hidden=8, dropout=0.2, max_epochs=40, patience=40,
                                            val_fraction=0.0, batch_size=40, lr=3e-3, seed=0))
    return result, (bags, age, time, event, lp)


def test_training_loss_falls_and_held_out_ranking_follows_the_true_hazard(fitted):
    result, _ = fitted
    losses = result.history.train_loss
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.1
    bags, age, time, event, lp = sphere_cohort(200, 1)  # new subjects
    risk = risk_samples(result.net, bags, age, 0)[0]
    c_model, c_truth = harrell_c(time, event, risk), harrell_c(time, event, lp)
    assert c_model > 0.65 and c_model > c_truth - 0.06, (c_model, c_truth)
    # the burden pooling ranks by volume: subjects without lesions rank below those with three large ones
    big = np.zeros((3, 2, 8, 8, 8), np.float32)
    grid = (np.stack(np.mgrid[:8, :8, :8], axis=0) - 3.5) ** 2
    big[:, 1] = grid.sum(axis=0) < 3.5 ** 2
    big[:, 0] = 0.6 * big[:, 1]
    none, many = risk_samples(result.net, [np.zeros((0, 2, 8, 8, 8), np.float32), big], np.zeros((2, 1)), 0)[0]
    assert many > none + 0.5


def test_risk_ignores_lesion_order_and_the_other_subjects(fitted):
    result, (bags, age, *_rest) = fitted
    full = risk_samples(result.net, bags, age, 0)[0]
    order = [b[::-1].copy() for b in bags]
    assert np.allclose(risk_samples(result.net, order, age, 0)[0], full, atol=1e-5)
    alone = [risk_samples(result.net, [bags[i]], age[i:i + 1], 0)[0, 0] for i in range(5)]
    assert np.allclose(alone, full[:5], atol=1e-5)


def test_mc_dropout_spread_is_positive_and_reproducible(fitted):
    result, (bags, age, *_rest) = fitted
    first = risk_samples(result.net, bags, age, 30, seed=3)
    assert first.shape == (30, len(bags))
    assert (first.std(axis=0) > 0).all()
    assert np.array_equal(first, risk_samples(result.net, bags, age, 30, seed=3))
    assert not np.array_equal(first, risk_samples(result.net, bags, age, 30, seed=4))
    # the deterministic network is the dropout-free pass, near the centre of the samples
    point = risk_samples(result.net, bags, age, 0)[0]
    assert np.corrcoef(point, first.mean(axis=0))[0, 1] > 0.95


def test_same_seed_same_weights_and_saved_network_scores_the_same(fitted):
    result, (bags, age, time, event, _) = fitted
    # two short trainings with one seed give the same bytes (the long one is not repeated)
    first, again = (fit_lesion_bag_cox(bags, age, time, event,
                                       CnnTraining(latent=4, width=4, hidden=8, dropout=0.2, max_epochs=4, patience=4,
                                                   val_fraction=0.0, batch_size=40, lr=3e-3, seed=0))
                     for _ in range(2))
    assert network_bytes(again.net) == network_bytes(first.net)
    loaded = load_network(network_bytes(result.net))
    assert isinstance(loaded, LesionBagCox) and not loaded.training
    assert np.array_equal(risk_samples(loaded, bags, age, 10, 1), risk_samples(result.net, bags, age, 10, 1))


def test_early_stopping_keeps_the_best_validation_epoch():
    bags, age, time, event, _ = sphere_cohort(60, 2)
    result = fit_lesion_bag_cox(bags, age, time, event,
                                CnnTraining(latent=4, width=4, hidden=8, max_epochs=30, patience=3, val_fraction=0.25,
                                            batch_size=20, seed=0))
    val = np.asarray(result.history.val_loss)
    assert result.history.best_epoch == int(np.nanargmin(val)) and len(val) <= result.history.best_epoch + 4


def cohort_tables(n_train=80, n_val=40):
    bags_tr, age_tr, t_tr, e_tr, _ = sphere_cohort(n_train, 5)
    bags_va, age_va, t_va, e_va, _ = sphere_cohort(n_val, 6)

    def table(prefix, age, time, event):
        return pd.DataFrame({"subject_id": [f"{prefix}{i:03d}" for i in range(len(time))], "time": time,
                             "event": event, "age": age[:, 0] * 10 + 60, "center": "A"})

    def archive(prefix, bags):
        ids = [f"{prefix}{i:03d}" for i in range(len(bags))]
        rows = [(sid, j + 1) for sid, b in zip(ids, bags) for j in range(len(b))]
        return LesionBags(np.concatenate(bags), [r[0] for r in rows], [r[1] for r in rows], ids, SPEC)

    return (table("t", age_tr, t_tr, e_tr), archive("t", bags_tr)), (table("v", age_va, t_va, e_va),
                                                                      archive("v", bags_va))


def test_frozen_end_to_end_model_scores_like_the_tabular_ones(tmp_path):
    (train, bags_tr), (val, bags_va) = cohort_tables()
    params = {"latent": 4, "width": 4, "hidden": 8, "max_epochs": 15, "val_fraction": 0.0, "mc_samples": 20}
    bundle, summary = fit_bundle(train, ModelSpec("cnn_survival", ["age"], params=params), horizons=[365.0, 730.0],
                                 bags=bags_tr)
    assert summary is None and bundle.info["lesion_patches"]["patch"]["shape"] == [8, 8, 8]
    save_bundle(bundle, None, tmp_path / "m")
    loaded = load_bundle(tmp_path / "m")
    scores = score_table(loaded, val, "val.parquet", bags_va)
    assert scores.equals(score_table(bundle, val, "val.parquet", bags_va))
    assert (scores["risk_sd"] > 0).all() and scores["risk_flip"].between(0, 1).all()
    assert scores["surv_365"].between(0, 1).all() and (scores["surv_730"] <= scores["surv_365"]).all()
    assert (scores["surv_365_low"] <= scores["surv_365_high"]).all()
    assert set(scores["risk_group"]) == {"high", "low"}
    assert harrell_c(val["time"].to_numpy(), val["event"].to_numpy(), scores["risk"].to_numpy()) > 0.6
    with pytest.raises(FeatureTableError, match="reads each subject's lesion patches"):
        score_table(loaded, val, "val.parquet")
    with pytest.raises(FeatureTableError, match="subject v000, file .*: subject has no entry"):
        score_table(loaded, val, "val.parquet", bags_tr)
    other = LesionBags(bags_va.patches[:, :1], bags_va.subject_id, bags_va.lesion_id, bags_va.subjects,
                       PatchSpec((32.0, 32.0, 32.0), (8, 8, 8), ("pet",)))
    with pytest.raises(FeatureTableError, match="differ from the training ones"):
        score_table(loaded, val, "val.parquet", other)


def test_archive_round_trip_is_byte_reproducible(tmp_path):
    (_, bags), _ = cohort_tables(12, 2)
    write_bags(bags, tmp_path / "a.npz")
    write_bags(bags, tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    back = read_bags(tmp_path / "a.npz")
    assert back.subjects == bags.subjects and back.spec == bags.spec
    assert np.array_equal(back.patches, bags.patches) and list(back.lesion_id) == list(bags.lesion_id)
    assert [len(b) for b in back.bags(bags.subjects)] == [len(b) for b in bags.bags(bags.subjects)]
    with np.load(tmp_path / "a.npz") as plain:  # an ordinary .npz
        assert plain["patches"].shape == bags.patches.shape
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="bad.npz: not a lesion patch archive"):
        read_bags(tmp_path / "bad.npz")


def test_archive_from_a_sheet_keeps_subjects_without_lesions(tmp_path):
    spacing = (4.0, 4.0, 4.0)
    rows = []
    for sid, centres in (("s1", [(20, 20, 20), (20, 20, 60)]), ("s2", [])):
        suv = np.ones((12, 12, 24), np.float32)
        labels = np.zeros(suv.shape, np.int16)
        for label, (z, y, x) in enumerate(centres, start=1):
            zz, yy, xx = np.meshgrid(*(np.arange(n) * 4.0 for n in suv.shape), indexing="ij")
            inside = (zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2 <= 8.0 ** 2
            labels[inside], suv[inside] = label, 6.0
        for kind, array in (("pet", suv), ("ct", np.zeros_like(suv)), ("lesions", labels)):
            image = sitk.GetImageFromArray(array)
            image.SetSpacing(spacing)
            sitk.WriteImage(image, str(tmp_path / f"{sid}_{kind}.nii.gz"))
        rows.append({"subject_id": sid, "cohort": "train", "center": "A", "pet": f"{sid}_pet.nii.gz",
                     "ct": f"{sid}_ct.nii.gz", "time": 100.0, "event": 1})
    pd.DataFrame(rows).to_csv(tmp_path / "s.tsv", sep="\t", index=False)
    spec = PatchSpec((32.0, 32.0, 32.0), (8, 8, 8), ("pet", "ct", "mask"))
    bags = bags_from_sheet(tmp_path / "s.tsv", "train", str(tmp_path / "{subject_id}_lesions.nii.gz"), spec,
                           progress=False)
    assert bags.subjects == ["s1", "s2"] and list(bags.subject_id) == ["s1", "s1"]
    assert list(bags.lesion_id) == [1, 2]
    s1, s2 = bags.bags(["s1", "s2"])
    assert s1.shape == (2, 3, 8, 8, 8) and s2.shape == (0, 3, 8, 8, 8)
    # centred on each lesion: the mask channel is symmetric about the patch centre
    assert np.allclose(s1[:, 2], s1[:, 2, ::-1, ::-1, ::-1], atol=1e-6) and s1[:, 2].max() == pytest.approx(1.0)
    (tmp_path / "s2_lesions.nii.gz").unlink()
    with pytest.raises(InputError, match="subject s2, file .*s2_lesions.nii.gz: lesion mask does not exist"):
        bags_from_sheet(tmp_path / "s.tsv", "train", str(tmp_path / "{subject_id}_lesions.nii.gz"), spec,
                        progress=False)
