"""Threshold segmentation on phantoms with known volumes."""
import numpy as np
import pytest

from biomarkers.segment.threshold import segment_lesions


def ball(shape, centre, radius_vox):
    idx = np.indices(shape)
    return sum((i - c) ** 2 for i, c in zip(idx, centre)) <= radius_vox**2


@pytest.fixture
def phantom():
    shape = (40, 40, 40)
    suv = np.full(shape, 1.0)
    big, small, organ = ball(shape, (10, 10, 10), 5), ball(shape, (30, 30, 10), 1), ball(shape, (28, 12, 28), 6)
    suv[big] = 8.0
    suv[small] = 6.0
    suv[organ] = 5.0
    organs = organ.astype(np.uint8)
    return suv, organs, big, small, organ


def test_fixed_threshold_volumes_and_organ_exclusion(phantom):
    suv, organs, big, small, organ = phantom
    labels = segment_lesions(suv, (2.0, 2.0, 2.0), "fixed", threshold_suv=2.5, min_volume_ml=0.0, organs=organs)
    assert labels.max() == 2
    volumes = sorted(np.bincount(labels.ravel())[1:])
    assert volumes == sorted([int(small.sum()), int(big.sum())])
    assert not labels[organ].any()


def test_without_organ_mask_the_organ_is_a_false_positive(phantom):
    suv, _, _, _, organ = phantom
    labels = segment_lesions(suv, (2.0, 2.0, 2.0), "fixed", threshold_suv=2.5, min_volume_ml=0.0)
    assert labels.max() == 3 and labels[organ].all()


def test_min_volume_drops_small_lesions(phantom):
    suv, organs, big, small, _ = phantom
    voxel_ml = 8e-3
    limit = (small.sum() + 1) * voxel_ml
    labels = segment_lesions(suv, (2.0, 2.0, 2.0), "fixed", 2.5, min_volume_ml=limit, organs=organs)
    assert labels.max() == 1 and (labels == 1).sum() == big.sum()


def test_relative_threshold_is_per_region():
    # Two Gaussian blobs of different peaks: each is cut at 41 % of its own maximum.
    shape = (50, 50, 50)
    idx = np.indices(shape)
    sigma = 4.0
    suv = np.full(shape, 0.5)
    for centre, peak in (((15, 15, 15), 20.0), ((35, 35, 35), 8.0)):
        r2 = sum((i - c) ** 2 for i, c in zip(idx, centre))
        suv = suv + peak * np.exp(-r2 / (2 * sigma**2))
    labels = segment_lesions(suv, (1.0, 1.0, 1.0), "relative", threshold_suv=2.5, fraction=0.41,
                             min_volume_ml=0.0)
    assert labels.max() == 2
    for lab, (centre, peak) in zip((1, 2), (((15, 15, 15), 20.0), ((35, 35, 35), 8.0))):
        region = labels == lab
        vmax = suv[region].max()
        assert suv[region].min() >= 0.41 * vmax
        assert vmax == pytest.approx(peak + 0.5, rel=1e-3)
    # On a background b, SUV = f * (b + p) where exp(-r^2 / 2 s^2) = f + (f - 1) b / p.
    for lab, peak in ((1, 20.0), (2, 8.0)):
        radius = np.sqrt(-2 * sigma**2 * np.log(0.41 + (0.41 - 1) * 0.5 / peak))
        assert (labels == lab).sum() == pytest.approx(4 / 3 * np.pi * radius**3, rel=0.05)


def test_bad_method_is_an_error():
    with pytest.raises(ValueError, match="unknown segmentation method"):
        segment_lesions(np.ones((3, 3, 3)), (1, 1, 1), "otsu")


def test_organ_spill_is_dropped_but_lesions_in_and_beside_organs_are_kept():
    from scipy import ndimage

    shape = (48, 48, 48)
    organ = ball(shape, (24, 24, 14), 9)  # a hot organ, e.g. the bladder
    lesion_inside = ball(shape, (24, 24, 14), 2)  # a lesion inside the organ (not organ tissue)
    lesion_beside = ball(shape, (24, 24, 30), 3)  # a lesion 6 mm from its edge
    activity = np.full(shape, 0.8)
    activity[organ] = 12.0
    activity[lesion_inside] = 40.0
    activity[lesion_beside] = 10.0
    suv = ndimage.gaussian_filter(activity, 1.5)  # scanner blur spreads organ uptake outside the organ
    organs = (organ & ~lesion_inside).astype(np.uint8)
    spill = (suv >= 2.5) & ~organ & ~ndimage.binary_dilation(lesion_beside, iterations=3)
    assert spill.sum() > 100  # without the spill rule the rim would be a large false positive
    labels = segment_lesions(suv, (2.0, 2.0, 2.0), "fixed", 2.5, min_volume_ml=0.0, organs=organs)
    assert labels.max() == 2
    found = {int(labels[24, 24, 14]), int(labels[24, 24, 30])}
    assert found == {1, 2}
    assert not labels[spill].any()


def two_close_blobs():
    shape = (40, 40, 60)
    idx = np.indices(shape)
    suv = np.full(shape, 0.5)
    for centre, peak in (((20, 20, 24), 20.0), ((20, 20, 36), 6.0)):
        r2 = sum((i - c) ** 2 for i, c in zip(idx, centre))
        suv = suv + peak * np.exp(-r2 / (2 * 3.0**2))
    return suv


def test_local_maxima_seeds_split_lesions_a_coarse_mask_merges():
    suv = two_close_blobs()
    assert segment_lesions(suv, (1.0, 1.0, 1.0), "fixed", 2.5, min_volume_ml=0).max() == 1  # merged at 2.5
    coarse = segment_lesions(suv, (1.0, 1.0, 1.0), "relative", 2.5, 0.41, min_volume_ml=0)
    assert coarse.max() == 1 and coarse[20, 20, 36] == 0  # 41 % of the hot peak cuts the weak lesion away
    seeded = segment_lesions(suv, (1.0, 1.0, 1.0), "relative-maxima", 2.5, 0.41, min_volume_ml=0)
    assert seeded.max() == 2
    hot, weak = seeded[20, 20, 24], seeded[20, 20, 36]
    assert {hot, weak} == {1, 2}
    assert suv[seeded == weak].min() >= 0.41 * suv[20, 20, 36] - 1e-9
    assert suv[seeded == hot].min() >= 0.41 * suv[20, 20, 24] - 1e-9


def test_percist_threshold_from_liver_sphere():
    rng = np.random.default_rng(5)
    shape = (40, 50, 50)
    spacing = (3.0, 2.0, 2.0)
    idx = np.indices(shape)
    liver = ((idx[0] - 20) / 12.0) ** 2 + ((idx[1] - 25) / 18.0) ** 2 + ((idx[2] - 25) / 18.0) ** 2 <= 1
    suv = np.full(shape, 0.7)
    suv[liver] = rng.normal(2.0, 0.25, size=liver.sum())
    organs = liver.astype(np.uint8) * 2
    # hand computation: the liver's deepest voxel is its centre; a 15 mm sphere around it
    d2 = sum(((i - c) * s) ** 2 for i, c, s in zip(idx, (20, 25, 25), spacing))
    values = suv[(d2 <= 15.0**2) & liver]
    expected = 1.5 * values.mean() + 2 * values.std(ddof=1)
    from biomarkers.segment.threshold import percist_threshold

    assert percist_threshold(suv, organs, spacing) == pytest.approx(expected)
    assert 3.3 < expected < 3.8
    suv[30:34, 5:9, 5:9] = expected + 0.5  # detected
    suv[5:9, 40:44, 40:44] = expected - 0.5  # below the PERCIST threshold
    labels = segment_lesions(suv, spacing, "percist", min_volume_ml=0, organs=organs)
    assert labels.max() == 1 and labels[31, 6, 6] == 1 and labels[6, 41, 41] == 0


def test_percist_without_liver_is_an_error():
    with pytest.raises(ValueError, match="liver"):
        segment_lesions(np.ones((5, 5, 5)), (1, 1, 1), "percist", organs=np.zeros((5, 5, 5), np.uint8))
