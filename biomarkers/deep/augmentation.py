"""The settings of the U-Net's patch augmentation (what each does: :mod:`biomarkers.deep.patches`).

Free of numpy and torch, so that the training settings and the command line's defaults load fast.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Augmentation:
    """Augmentation settings (see the module docstring); ``Augmentation.none()`` disables all."""

    flip: bool = True
    max_rotation_deg: float = 10.0
    max_scale: float = 0.10
    noise_sd: float = 0.02
    blur_probability: float = 0.0
    max_blur_fwhm_voxels: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        if not 0.0 <= self.blur_probability <= 1.0:
            raise ValueError(f"blur_probability must be in [0, 1], got {self.blur_probability}")
        fwhm = tuple(float(v) for v in self.max_blur_fwhm_voxels)
        if len(fwhm) != 3 or min(fwhm) < 0:
            raise ValueError(f"max_blur_fwhm_voxels must be three non-negative values, got {self.max_blur_fwhm_voxels}")
        object.__setattr__(self, "max_blur_fwhm_voxels", fwhm)

    @classmethod
    def none(cls) -> "Augmentation":
        return cls(flip=False, max_rotation_deg=0.0, max_scale=0.0, noise_sd=0.0)

    @property
    def blurs(self) -> bool:
        return self.blur_probability > 0 and max(self.max_blur_fwhm_voxels) > 0

    def record(self) -> dict:
        """Settings as a plain dict (lists, not tuples), for checkpoints."""
        record = asdict(self)
        record["max_blur_fwhm_voxels"] = list(self.max_blur_fwhm_voxels)
        return record
