"""Fixed PET/CT input normalisation: the same SUV gives the same input everywhere."""
import numpy as np
import pytest

from biomarkers.deep.normalise import PET_SCALE_SUV, ct_channel, input_channels, normalisation_record, pet_channel


def test_pet_channel_is_fixed_log_scale():
    suv = np.array([-1.0, 0.0, 2.5, PET_SCALE_SUV, 40.0])
    expected = np.log1p(np.clip(suv, 0, None)) / np.log1p(PET_SCALE_SUV)
    np.testing.assert_allclose(pet_channel(suv), expected, rtol=1e-6)
    assert pet_channel(suv)[3] == pytest.approx(1.0)
    # independent of the rest of the volume (no per-volume statistics)
    assert pet_channel(np.array([2.5]))[0] == pet_channel(np.array([2.5, 100.0]))[0]


def test_ct_channel_and_stack():
    np.testing.assert_allclose(ct_channel(np.array([-3000, -1000, 0, 400, 3000])), [-1, -1, 0, 0.4, 1])
    x = input_channels(np.ones((2, 3, 4)), np.zeros((2, 3, 4)))
    assert x.shape == (2, 2, 3, 4) and x.dtype == np.float32
    assert input_channels(np.ones((2, 3, 4))).shape == (1, 2, 3, 4)
    with pytest.raises(ValueError, match="resample CT onto PET"):
        input_channels(np.ones((2, 3, 4)), np.zeros((2, 3, 5)))
    assert set(normalisation_record(True)) == {"pet", "ct"} and set(normalisation_record(False)) == {"pet"}
