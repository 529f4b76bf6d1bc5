"""Fixed (data-independent) normalisation of PET and CT into network input channels.

Fixed transforms, not per-volume z-scores, so that an SUV of 5 means the same input in every
patient and centre (a per-volume normalisation would change the meaning of SUV between patients
with different tumour burden):

* PET channel: ``log1p(max(SUV, 0)) / log1p(PET_SCALE_SUV)``, i.e. 0 at SUV 0 and 1 at SUV 20,
  compressing the long tail of hot lesions and bladder activity;
* CT channel: ``clip(HU, -1000, 1000) / 1000``.

The constants are written into every checkpoint that uses them (:func:`normalisation_record`),
so a model trained elsewhere is fed exactly what it was trained on.
"""
from __future__ import annotations

import numpy as np

#: SUV mapped to 1 by the PET channel.
PET_SCALE_SUV = 20.0
#: HU window of the CT channel.
CT_WINDOW_HU = (-1000.0, 1000.0)


def pet_channel(suv: np.ndarray) -> np.ndarray:
    """PET input channel (float32) from SUV."""
    suv = np.clip(np.asarray(suv, dtype=np.float32), 0.0, None)
    return (np.log1p(suv) / np.float32(np.log1p(PET_SCALE_SUV))).astype(np.float32)


def pet_suv(channel: np.ndarray) -> np.ndarray:
    """SUV (float32) from the PET input channel: the inverse of :func:`pet_channel` on SUV >= 0."""
    channel = np.asarray(channel, dtype=np.float32)
    return np.expm1(channel * np.float32(np.log1p(PET_SCALE_SUV))).astype(np.float32)


def ct_channel(hu: np.ndarray) -> np.ndarray:
    """CT input channel (float32) from Hounsfield units."""
    lo, hi = CT_WINDOW_HU
    return (np.clip(np.asarray(hu, dtype=np.float32), lo, hi) / np.float32(hi)).astype(np.float32)


def input_channels(suv: np.ndarray, hu: np.ndarray | None = None) -> np.ndarray:
    """Stack the channels (C, z, y, x): PET, then CT when given (same grid)."""
    channels = [pet_channel(suv)]
    if hu is not None:
        if np.shape(hu) != np.shape(suv):
            raise ValueError(f"CT shape {np.shape(hu)} differs from PET shape {np.shape(suv)}; resample CT onto PET")
        channels.append(ct_channel(hu))
    return np.stack(channels)


def normalisation_record(with_ct: bool) -> dict:
    """The normalisation, as recorded in checkpoints."""
    record = {"pet": {"transform": "log1p(max(suv,0))/log1p(scale)", "scale_suv": PET_SCALE_SUV}}
    if with_ct:
        record["ct"] = {"transform": "clip(hu,lo,hi)/hi", "window_hu": list(CT_WINDOW_HU)}
    return record
