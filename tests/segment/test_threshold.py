"""Threshold segmentation on phantoms with known volumes."""
import numpy as np
import pytest

from biomarkers.segment import segment_lesions


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
