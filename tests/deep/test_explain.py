"""Explanations of the end-to-end CNN on a cohort where the lesion that drives the hazard is known."""
import numpy as np
import pytest

from biomarkers.survival.explain import attention_weights, explain_patients, lesion_contributions, occlusion_map
from biomarkers.survival.cnn import CnnTraining, LesionBagCox, fit_lesion_bag_cox

SHAPE = (16, 16, 16)


def _blob(amplitude: float, rng) -> np.ndarray:
    """A 2-channel patch: a Gaussian blob (sigma 2.5 voxels) at the centre with noise, and its mask."""
    z, y, x = np.meshgrid(*(np.arange(s) - (s - 1) / 2 for s in SHAPE), indexing="ij")
    blob = amplitude * np.exp(-(z ** 2 + y ** 2 + x ** 2) / (2 * 2.5 ** 2))
    pet = blob + rng.normal(0, 0.05, SHAPE)
    return np.stack([pet, (blob > 0.3 * amplitude).astype(float)]).astype(np.float32)


def _cohort(rng, n):
    """Each patient: one driver lesion of amplitude A ~ U(0.5, 3) (log-hazard 1.5 A) among 1-2 decoys of
    amplitude 1; the driver's position in the bag is random."""
    bags, driver, amp = [], [], []
    for _ in range(n):
        a = rng.uniform(0.5, 3.0)
        lesions = [_blob(1.0, rng) for _ in range(rng.integers(1, 3))]
        k = int(rng.integers(0, len(lesions) + 1))
        lesions.insert(k, _blob(a, rng))
        bags.append(np.stack(lesions))
        driver.append(k)
        amp.append(a)
    amp = np.array(amp)
    t = 1000 * rng.exponential(1, n) * np.exp(-1.5 * (amp - 1.75))
    c = rng.exponential(4000, n)
    return bags, np.array(driver), amp, np.minimum(t, c), (t <= c).astype(int)


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(0)
    bags, driver, amp, time, event = _cohort(rng, 120)
    fit = fit_lesion_bag_cox(bags, np.zeros((120, 0)), time, event,
                             CnnTraining(latent=4, width=4, hidden=8, dropout=0.0, max_epochs=40, val_fraction=0.0,
                                         batch_size=40, lr=3e-3, weight_decay=1e-4, seed=0))
    return fit.net, bags, driver, amp


@pytest.mark.slow
def test_the_driving_lesion_contributes_most_in_high_risk_patients(trained):
    net, bags, driver, amp = trained
    high = np.nonzero(amp > 2.2)[0]
    hits = [np.argmax(lesion_contributions(net, bags[i], np.zeros(0))) == driver[i] for i in high]
    assert np.mean(hits) >= 0.9, f"{np.mean(hits):.2f} of {len(high)}"
    # the attention pooling, too, reads the driver more than a decoy on average
    weights = [attention_weights(net, bags[i])[driver[i]] * len(bags[i]) for i in high]
    assert np.mean(weights) > 1.0


@pytest.mark.slow
def test_occlusion_map_peaks_on_the_blob(trained):
    net, bags, driver, amp = trained
    i = int(np.argmax(amp))
    m = occlusion_map(net, bags[i], np.zeros(0), int(driver[i]), window=4)
    assert m.shape == SHAPE
    centre = m[4:12, 4:12, 4:12].mean()
    rim = np.concatenate([m[:4].ravel(), m[12:].ravel()]).mean()
    assert centre > 0 and centre > 5 * abs(rim)


def test_explanations_of_an_untrained_network_are_consistent():
    rng = np.random.default_rng(1)
    net = LesionBagCox(2, SHAPE, 1, latent=4, width=2, hidden=4, dropout=0.0).eval()
    bag = np.stack([_blob(1.0, rng), _blob(2.0, rng), _blob(1.0, rng)])
    a = attention_weights(net, bag)
    assert a.shape == (3,) and a.sum() == pytest.approx(1.0) and (a > 0).all()
    rows = explain_patients(net, [bag, bag[:1]], np.zeros((2, 1)), ["p1", "p2"], [[1, 2, 3], [7]])
    assert [(r["subject_id"], r["lesion"]) for r in rows] == [("p1", 1), ("p1", 2), ("p1", 3), ("p2", 7)]
    assert rows[3]["attention"] == 1.0  # a single lesion gets all the attention
    # the occlusion of the whole patch by cubes: each cube's value is the same for all its voxels
    m = occlusion_map(net, bag, np.zeros(1), 1, window=8)
    assert len(np.unique(m.round(12))) <= 8
