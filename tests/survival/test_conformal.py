"""The conformal survival lower bound (Candes, Lei and Ren 2021) and its coverage estimate."""
import numpy as np
import pytest
from lifelines import KaplanMeierFitter

from biomarkers.errors import FeatureTableError
from biomarkers.survival import conformal


def test_censoring_survival_is_the_kaplan_meier_curve_of_the_censorings():
    rng = np.random.default_rng(0)
    time = np.round(rng.exponential(100, 80), 0) + 1
    event = rng.random(80) < 0.6
    g = conformal.censoring_survival(time, event)
    km = KaplanMeierFitter().fit(time, ~event)
    grid = np.array([0.5, 10, 50, 100, 200, 400])
    np.testing.assert_allclose(g(grid), km.survival_function_at_times(grid).to_numpy(), atol=1e-12)


def test_without_censoring_eta_is_the_conformal_order_statistic():
    # n = 9 units, alpha = 0.2: the ceil((n + 1)(1 - alpha)) = 8th smallest score
    time = np.arange(1.0, 10.0) * 100
    q = np.full(9, 400.0)
    bound = conformal.calibrate(time, np.ones(9), q, c0=10_000, alpha=0.2)
    scores = np.sort(np.log(400.0) - np.log(time))
    assert bound.eta == pytest.approx(scores[7])
    assert bound.n_calibration == 9 and bound.effective_n == pytest.approx(9)
    np.testing.assert_allclose(bound.lower(np.array([400.0, 4e6])), [400 * np.exp(-scores[7]), 10_000])


def test_too_few_units_give_an_infinite_eta_and_a_zero_bound():
    bound = conformal.calibrate(np.array([100.0, 200.0]), np.ones(2), np.array([50.0, 50.0]), c0=500, alpha=0.1)
    assert bound.eta == np.inf and bound.lower(np.array([50.0]))[0] == 0.0


def _weibull(rng, n, lp):
    """Weibull PH times (shape 1.3, scale 1000 days) with exponential censoring and follow-up at 1500 days."""
    t = 1000 * np.exp(-lp / 1.3) * rng.exponential(1, n) ** (1 / 1.3)
    c = np.minimum(rng.exponential(2500, n), 1500)
    return np.minimum(t, c), (t <= c).astype(int), t


def test_bound_covers_the_latent_times_at_the_nominal_rate_under_censoring():
    # a model that knows the hazard ordering but not its scale (q off by a factor 2): conformal fixes it
    rng = np.random.default_rng(1)
    alpha, c0 = 0.1, 1000.0
    lp_cal, lp_new = rng.normal(0, 1, 3000), rng.normal(0, 1, 20_000)
    q_true = lambda lp: 1000 * np.exp(-lp / 1.3) * (-np.log(1 - alpha)) ** (1 / 1.3)  # noqa: E731
    time, event, _ = _weibull(rng, 3000, lp_cal)
    bound = conformal.calibrate(time, event, 2 * q_true(lp_cal), c0, alpha)
    new_time, new_event, latent = _weibull(rng, 20_000, lp_new)
    lower = bound.lower(2 * q_true(lp_new))
    cov = conformal.coverage(new_time, new_event, lower, latent)
    assert cov["true"] == pytest.approx(0.9, abs=0.015)  # exact-ish: not conservative beyond sampling
    assert cov["estimate"] == pytest.approx(cov["true"], abs=0.015)  # IPCW estimate from the censored data
    assert cov["known_lower"] <= cov["true"] <= cov["known_upper"]
    assert bound.eta == pytest.approx(np.log(2), abs=0.08)  # recovers the factor 2


def test_calibration_refuses_nonpositive_quantiles_and_no_unit_at_the_cutoff():
    with pytest.raises(FeatureTableError, match="positive"):
        conformal.calibrate(np.ones(3), np.ones(3), np.array([1.0, 0.0, 2.0]), c0=10)
    with pytest.raises(FeatureTableError, match="cut-off"):
        conformal.calibrate(np.array([1.0, 2.0]), np.zeros(2), np.array([1.0, 2.0]), c0=10)


def test_survival_quantile_reads_the_first_crossing():
    times = np.array([10.0, 20.0, 30.0])
    surv = np.array([[0.95, 0.85, 0.5], [0.99, 0.98, 0.97]])
    np.testing.assert_array_equal(conformal.survival_quantile(times, surv, 0.1), [20.0, 30.0])
