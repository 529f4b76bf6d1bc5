"""Selective prediction, misprediction and OOD detection of an uncertainty score (known answers)."""
import numpy as np
import pandas as pd
import pytest

from biomarkers.validation.metrics import harrell_c
from biomarkers.validation.selective import (auroc, evaluate_uncertainty, mispredicted, selective_area,
                                             selective_curve)


def _cohort(n=40, bad=10, seed=0):
    """No censoring; risk orders the good patients perfectly, the bad ones have random risks."""
    rng = np.random.default_rng(seed)
    time = np.arange(1, n + 1, dtype=float) * 10
    risk = -time.copy()
    is_bad = np.zeros(n, bool)
    is_bad[rng.choice(n, bad, replace=False)] = True
    risk[is_bad] = rng.normal(-time.mean(), time.std() * 3, bad)
    return time, np.ones(n, int), risk, is_bad


def test_rejecting_the_bad_patients_first_reaches_a_perfect_c():
    time, event, risk, bad = _cohort()
    curve = selective_curve(time, event, risk, bad.astype(float))
    assert curve["harrell_c"].iloc[0] == pytest.approx(harrell_c(time, event, risk))
    # 10 of 40 bad: after rejecting 25 % every retained patient is ordered perfectly
    assert (curve.loc[curve["rejected"] >= 0.25, "harrell_c"] == 1.0).all()
    assert curve.loc[curve["rejected"] == 0.25, "n_retained"].item() == 30
    assert selective_area(curve) > curve["harrell_c"].iloc[0]


def test_selective_area_is_the_trapezoid_mean():
    curve = pd.DataFrame({"rejected": [0.0, 0.25, 0.5], "harrell_c": [0.6, 0.7, 1.0]})
    assert selective_area(curve) == pytest.approx(((0.6 + 0.7) / 2 + (0.7 + 1.0) / 2) / 2)


def test_misprediction_marks_the_patient_ordered_wrongly():
    # times 1..4, all events; patient 0 (earliest) is given the lowest risk: wrong with all 3 partners,
    # each other patient is wrong only in its pair with patient 0 (1 of 3)
    time = np.array([1.0, 2.0, 3.0, 4.0])
    risk = np.array([0.0, 3.0, 2.0, 1.0])
    np.testing.assert_array_equal(mispredicted(time, np.ones(4), risk), [1.0, 0.0, 0.0, 0.0])
    # censored at 1.5 before every other time: in no comparable pair as the earlier one, and only
    # patient 0 (event at 1) is compared with it
    event = np.array([1, 0, 1, 1])
    time = np.array([1.0, 1.5, 3.0, 4.0])
    assert mispredicted(time, event, risk)[1] == 1.0  # its only pair (with 0) is ordered wrongly


def test_auroc_of_a_perfect_and_an_inverted_score():
    label = np.array([0, 0, 1, 1, np.nan])
    assert auroc(label, np.array([0.1, 0.2, 0.8, 0.9, 5.0])) == 1.0
    assert auroc(label, np.array([0.9, 0.8, 0.2, 0.1, 5.0])) == 0.0
    assert np.isnan(auroc(np.zeros(4), np.arange(4.0)))


def test_evaluation_of_a_score_that_knows_the_bad_patients_against_noise():
    time, event, risk, bad = _cohort(n=60, bad=12, seed=3)
    rng = np.random.default_rng(5)
    scores = pd.DataFrame({"time": time, "event": event, "risk": risk, "oracle": bad + 0.01 * rng.random(60),
                           "noise": rng.random(60)})
    out = evaluate_uncertainty(scores, {"oracle": "oracle", "noise": "noise"}, ood=bad.astype(float), n_boot=200,
                               seed=1)
    oracle, noise = out["methods"]["oracle"], out["methods"]["noise"]
    assert oracle["ood_auroc"]["estimate"] == 1.0
    assert oracle["gain"]["ci95"][0] > 0  # rejecting by it helps, beyond sampling
    assert noise["gain"]["ci95"][0] < 0 < noise["gain"]["ci95"][1]
    assert oracle["misprediction_auroc"]["estimate"] > 0.8
    assert out["n_ood"] == 12 and out["harrell_c_all"] == pytest.approx(harrell_c(time, event, risk))
