"""PET metrics against phantoms with known answers and a brute-force sphere mean."""
import numpy as np
import pytest

from biomarkers.features.pet import PEAK_RADIUS_MM, local_mean, pet_metrics, sphere_kernel


def brute_sphere_mean(image, spacing, centre):
    """Mean of the voxels whose centres lie within the 1 cm3 sphere radius of ``centre``."""
    idx = np.indices(image.shape).reshape(3, -1).T
    d2 = (((idx - np.asarray(centre)) * np.asarray(spacing)) ** 2).sum(axis=1)
    return image.reshape(-1)[d2 <= PEAK_RADIUS_MM**2].mean()


def test_peak_radius_is_one_cubic_centimetre():
    assert 4 / 3 * np.pi * PEAK_RADIUS_MM**3 == pytest.approx(1000.0)


def test_sphere_kernel_counts_lattice_points():
    # Integer points of Z^3 within radius 6.2035: counted independently.
    r = np.arange(-7, 8)
    x, y, z = np.meshgrid(r, r, r, indexing="ij")
    expected = int((x**2 + y**2 + z**2 <= PEAK_RADIUS_MM**2).sum())
    assert sphere_kernel((1.0, 1.0, 1.0)).sum() == expected
    assert expected == pytest.approx(1000, rel=0.05)  # 1 mm voxels: about 1000 of them in 1 cm3


def test_linear_gradient_peak_is_value_at_max_voxel():
    # The mean of a linear function over a symmetric sphere is its value at the centre.
    spacing = (2.0, 1.5, 1.0)
    z, y, x = np.meshgrid(*[np.arange(n) * s for n, s in zip((30, 30, 30), spacing)], indexing="ij")
    image = 1 + 0.1 * z + 0.2 * y + 0.3 * x
    labels = np.zeros(image.shape, int)
    labels[8:15, 9:16, 10:18] = 1
    row = pet_metrics(image, labels, spacing).iloc[0]
    assert row["suv_max"] == pytest.approx(image[14, 15, 17])
    assert row["suv_peak"] == pytest.approx(image[14, 15, 17])
    assert row["suv_peak_global"] == pytest.approx(image[14, 15, 17])
    assert row["suv_mean"] == pytest.approx(image[8:15, 9:16, 10:18].mean())
    assert row["mtv_ml"] == pytest.approx(7 * 7 * 8 * 3.0 / 1000)
    assert row["tlg"] == pytest.approx(row["suv_mean"] * row["mtv_ml"])


def test_local_and_global_peak_differ_and_match_brute_force():
    rng = np.random.default_rng(3)
    spacing = (3.0, 2.0, 2.0)
    image = rng.gamma(2.0, 1.0, size=(14, 16, 16))
    image[7, 8, 8] = 30.0  # isolated hottest voxel: its sphere is mostly cold
    image[3:6, 3:7, 3:7] += 8.0  # a broad warm region: highest sphere mean
    labels = np.zeros(image.shape, int)
    labels[2:10, 2:11, 2:11] = 1
    row = pet_metrics(image, labels, spacing).iloc[0]
    assert row["suv_peak"] == pytest.approx(brute_sphere_mean(image, spacing, (7, 8, 8)))
    roi = np.argwhere(labels == 1)
    global_peak = max(brute_sphere_mean(image, spacing, c) for c in roi)
    assert row["suv_peak_global"] == pytest.approx(global_peak)
    assert row["suv_peak_global"] > row["suv_peak"]


def test_peak_at_image_edge_counts_only_voxels_inside():
    spacing = (2.0, 2.0, 2.0)
    rng = np.random.default_rng(0)
    image = rng.uniform(1, 5, size=(10, 10, 10))
    image[0, 0, 0] = 20.0
    labels = np.zeros(image.shape, int)
    labels[0:3, 0:3, 0:3] = 1
    row = pet_metrics(image, labels, spacing).iloc[0]
    assert row["suv_peak"] == pytest.approx(brute_sphere_mean(image, spacing, (0, 0, 0)))
    assert local_mean(image, spacing)[0, 0, 0] == pytest.approx(brute_sphere_mean(image, spacing, (0, 0, 0)))


def test_ties_take_the_highest_sphere_mean():
    spacing = (2.0, 2.0, 2.0)
    image = np.ones((12, 12, 20))
    image[6, 6, 4] = image[6, 6, 15] = 10.0
    image[6, 6, 16] = 9.0  # neighbour of the second maximum raises its sphere mean
    labels = np.zeros(image.shape, int)
    labels[4:9, 4:9, 2:18] = 1
    row = pet_metrics(image, labels, spacing).iloc[0]
    assert row["suv_peak"] == pytest.approx(brute_sphere_mean(image, spacing, (6, 6, 15)))


def test_several_labels_and_centroids():
    image = np.ones((10, 10, 10))
    labels = np.zeros(image.shape, int)
    labels[1:3, 1:3, 1:3] = 1
    labels[6:9, 6:9, 6:9] = 2
    table = pet_metrics(image, labels, (1.0, 1.0, 1.0), lambda zyx: tuple(zyx[::-1]))
    assert list(table["lesion_id"]) == [1, 2]
    assert table["mtv_ml"].tolist() == pytest.approx([8e-3, 27e-3])
    assert table.loc[1, ["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]].tolist() == pytest.approx([7, 7, 7])


@pytest.mark.parametrize("spacing", [(4.0, 4.0, 4.0), (3.0, 4.07, 4.07), (2.0, 2.0, 2.0), (1.0, 1.5, 1.5)])
def test_local_mean_equals_brute_force_everywhere(spacing):
    # Coarse voxels take the direct correlation, fine ones the FFT; both must match the
    # definition at every voxel, edges and corners included.
    rng = np.random.default_rng(5)
    image = rng.gamma(2.0, 1.0, size=(9, 11, 12))
    means = local_mean(image, spacing)
    for centre in np.ndindex(image.shape):
        assert means[centre] == pytest.approx(brute_sphere_mean(image, spacing, centre), rel=1e-12)


def test_lesion_intensity_volume_histogram_in_suv_bins():
    # Half the lesion at SUV 2, half at SUV 4: 0.1-SUV bins centred at 2.05 ... 4.05. Volume
    # fraction 1 at the lowest bin, 0.5 from 2.15 to 4.05, 0 above.
    suv = np.ones((6, 6, 6))
    labels = np.zeros(suv.shape, np.int64)
    labels[1:5, 1:5, 1:5] = 1
    suv[1:3, 1:5, 1:5], suv[3:5, 1:5, 1:5] = 2.0, 4.0
    row = pet_metrics(suv, labels, (4.0, 4.0, 4.0)).iloc[0]
    assert row["ivh_i90"] == pytest.approx(2.15)  # lowest intensity with at most 90 % of the volume
    assert row["ivh_i10"] == pytest.approx(4.15)  # 50 % at the top bin: one bin above it
    assert row["ivh_v10"] == row["ivh_v90"] == pytest.approx(0.5)
    assert row["ivh_auc"] == pytest.approx((1 + 0.5) / 2 / 20 + 0.5 * 19 / 20)
