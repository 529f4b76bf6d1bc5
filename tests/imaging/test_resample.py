"""Resampling between grids: linear is exact on a ramp, nearest keeps labels, outside values."""
import numpy as np
import pytest
import SimpleITK as sitk

from biomarkers.imaging.resample import (CT_OUTSIDE_HU, grid_differences, resample_ct_to_pet,
                                         resample_pet_to_ct, resample_to, same_grid)


def grid(size, spacing, origin, direction=None, pixel=sitk.sitkFloat32):
    image = sitk.Image(list(size), pixel)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    return image


def centres_mm(image):
    """Physical (x, y, z) of every voxel centre, arrays in (z, y, x) order."""
    size = image.GetSize()
    k, j, i = np.meshgrid(*(np.arange(n) for n in size[::-1]), indexing="ij")
    index = np.stack([i, j, k], axis=-1).reshape(-1, 3).astype(float)
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    points = (index * image.GetSpacing()) @ direction.T + image.GetOrigin()
    return [points[:, a].reshape(k.shape) for a in range(3)]


def ramp(x, y, z):
    return 0.5 * x - 0.25 * y + 0.125 * z + 10.0


@pytest.fixture
def ct():
    image = grid((48, 44, 30), (1.0, 1.1, 2.0), (-24.0, -22.0, -30.0))
    x, y, z = centres_mm(image)
    values = sitk.GetImageFromArray(ramp(x, y, z).astype(np.float32))
    values.CopyInformation(image)
    return values


def test_linear_reproduces_a_ramp_at_interior_points(ct):
    # Oblique PET grid (rotated 10 degrees about z), inside the CT voxel-centre hull.
    c, s = np.cos(np.radians(10)), np.sin(np.radians(10))
    pet = grid((8, 8, 6), (2.7, 2.7, 3.3), (-10.0, -12.0, -20.0), (c, -s, 0, s, c, 0, 0, 0, 1))
    out = resample_to(ct, pet, "linear")
    assert same_grid(out, pet) and out.GetPixelID() == sitk.sitkFloat32
    x, y, z = centres_mm(pet)
    np.testing.assert_allclose(sitk.GetArrayFromImage(out), ramp(x, y, z), atol=2e-5)
    # Cubic B-spline also reproduces a linear function away from the image border.
    cubic = sitk.GetArrayFromImage(resample_to(ct, pet, "bspline"))
    np.testing.assert_allclose(cubic[2:-2, 2:-2, 2:-2], ramp(x, y, z)[2:-2, 2:-2, 2:-2], atol=1e-3)


def test_ct_onto_pet_fills_outside_with_air_and_pet_onto_ct_with_zero(ct):
    pet = grid((20, 20, 20), (4.0, 4.0, 4.0), (-38.0, -38.0, -38.0))
    on_pet = sitk.GetArrayFromImage(resample_ct_to_pet(ct, pet))
    x, y, z = centres_mm(pet)
    outside = (np.abs(x) > 30) | (z < -40) | (z > 40)
    assert np.all(on_pet[outside] == CT_OUTSIDE_HU)
    inside = (np.abs(x) < 20) & (np.abs(y) < 18) & (z > -28) & (z < 26)
    np.testing.assert_allclose(on_pet[inside], ramp(x, y, z)[inside], atol=2e-5)
    pet_values = sitk.GetImageFromArray(np.full((10, 10, 10), 3.0, np.float32))
    pet_values.SetSpacing((4.0, 4.0, 4.0))
    pet_values.SetOrigin((-18.0, -18.0, -18.0))
    on_ct = sitk.GetArrayFromImage(resample_pet_to_ct(pet_values, ct))
    assert set(np.unique(on_ct)) <= {0.0, 3.0} and on_ct[0, 0, 0] == 0.0 and on_ct[15, 22, 24] == 3.0


def test_nearest_keeps_labels_and_pixel_type():
    labels = np.zeros((20, 20, 20), np.uint16)
    labels[2:9, 3:10, 4:12] = 3
    labels[11:18, 10:17, 9:16] = 7
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing((2.0, 2.0, 2.0))
    pet = grid((11, 11, 11), (3.3, 3.3, 3.3), (0.7, 0.7, 0.7))
    out = resample_to(image, pet, "nearest")
    values = sitk.GetArrayFromImage(out)
    assert out.GetPixelID() == sitk.sitkUInt16
    assert set(np.unique(values)) == {0, 3, 7}
    for label in (3, 7):
        volume_mm3 = np.sum(labels == label) * 8.0
        assert np.sum(values == label) * 3.3 ** 3 == pytest.approx(volume_mm3, rel=0.25)


def test_same_grid_tolerance_and_identity_shortcut():
    a = grid((5, 6, 7), (2.0, 2.0, 3.0), (1.0, 2.0, 3.0))
    b = grid((5, 6, 7), (2.0, 2.0, 3.0), (1.0, 2.0, 3.0 + 5e-4))
    c = grid((5, 6, 7), (2.0, 2.0, 3.0), (1.0, 2.0, 3.1))
    assert same_grid(a, b) and not same_grid(a, c)
    assert grid_differences(a, c) == ["origin (1.0, 2.0, 3.1) != (1.0, 2.0, 3.0) mm"]
    assert same_grid(a, c, tolerance_mm=0.2)
    out = resample_to(b, a, "linear")
    assert out.GetOrigin() == a.GetOrigin()
    with pytest.raises(ValueError, match="interpolation"):
        resample_to(a, c, "cubic")
