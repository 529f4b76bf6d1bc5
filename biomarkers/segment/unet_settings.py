"""How the segmentation U-Net is trained: one typed value, :class:`UNetTraining`, the one source of
every default (the ``train-unet`` verb shows them, the workflow schema's ``unet`` block agrees:
``tests/deep/test_unet.py`` checks).

Free of torch, so the command line lists the defaults without loading it.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from biomarkers.deep.augmentation import Augmentation

#: Isotropic voxel spacing (mm) the command line and the workflow train the network at; the
#: library's own default (``spacing_mm`` None) is each image's grid.
SPACING_MM = 4.0


@dataclass(frozen=True)
class UNetTraining:
    """Settings of :func:`~biomarkers.segment.unet_train.train_unet`.

    Attributes
    ----------
    epochs, patches_per_epoch, batch_size : int
        Training length: ``patches_per_epoch`` patches per epoch, in batches of ``batch_size``.
    lr, weight_decay : float
        AdamW settings.
    seed : int
        Seeds patch sampling, augmentation, weight initialisation and dropout.
    device : {"auto", "cpu", "cuda"}
        ``"auto"`` trains on CUDA when available.
    patch_size : tuple of int
        Patch size in voxels (z, y, x); each a multiple of ``2**depth``.
    base_channels, depth, dropout
        :class:`~biomarkers.deep.unet.UNet3D` arguments.
    lesion_fraction : float
        Share of patches centred on a lesion voxel.
    hot_fraction : float
        Share of the other patches centred on a hot (SUV >= 2.5) non-lesion voxel
        (:class:`~biomarkers.deep.patches.PatchSampler`); 0 samples them uniformly.
    organ_fraction : float
        Organ-aware network: share of the background patches centred on an organ, the organ
        drawn uniformly (the rest follow ``hot_fraction``); ignored by a lesion-only network.
    spacing_mm : tuple of float, optional
        Voxel spacing (z, y, x) the network works at; None trains on each case's own grid.
    augmentation : Augmentation
        Patch augmentation (``Augmentation.none()`` disables it; :meth:`with_blur` adds the
        resolution augmentation).

    Raises
    ------
    ValueError
        A length that is not positive, a patch that the network's depth does not divide, or a
        spacing that is not three positive values.
    """

    epochs: int = 5
    patches_per_epoch: int = 64
    batch_size: int = 2
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "auto"
    patch_size: tuple[int, int, int] = (48, 48, 48)
    base_channels: int = 8
    depth: int = 3
    dropout: float = 0.0
    lesion_fraction: float = 0.5
    hot_fraction: float = 0.0
    organ_fraction: float = 0.0
    spacing_mm: tuple[float, float, float] | None = None
    augmentation: Augmentation = field(default_factory=Augmentation)

    def __post_init__(self) -> None:
        patch = tuple(int(p) for p in self.patch_size)
        if self.epochs < 1 or self.patches_per_epoch < 1 or self.batch_size < 1:
            raise ValueError("epochs, patches_per_epoch and batch_size must be positive")
        if len(patch) != 3 or any(p < 1 or p % 2**self.depth for p in patch):
            raise ValueError(f"patch_size {patch} must be three multiples of 2**depth = {2**self.depth}")
        object.__setattr__(self, "patch_size", patch)
        if self.spacing_mm is not None:
            spacing = tuple(float(v) for v in self.spacing_mm)
            if len(spacing) != 3 or min(spacing) <= 0:
                raise ValueError(f"spacing_mm must be three positive values, got {spacing}")
            object.__setattr__(self, "spacing_mm", spacing)

    def with_blur(self, fwhm_mm: float, probability: float = 0.5) -> "UNetTraining":
        """These settings with the resolution augmentation: ``probability`` of the patches get their
        PET blurred by a Gaussian of FWHM up to ``fwhm_mm`` per axis (in the network's voxels), so
        that a centre with a coarser scanner than the training centres' is segmented as well;
        ``fwhm_mm`` 0 leaves them as they are.

        Raises
        ------
        ValueError
            A negative FWHM, or a blur without the network's voxel spacing (``spacing_mm``).
        """
        if fwhm_mm < 0:
            raise ValueError(f"blur_fwhm_mm must be non-negative, got {fwhm_mm}")
        if fwhm_mm == 0:
            return self
        if self.spacing_mm is None:
            raise ValueError("the blur augmentation (blur_fwhm_mm) needs the network's voxel spacing (spacing_mm)")
        blur = replace(self.augmentation, blur_probability=probability,
                       max_blur_fwhm_voxels=tuple(fwhm_mm / s for s in self.spacing_mm))
        return replace(self, augmentation=blur)

    def record(self, organ_aware: bool) -> dict:
        """The settings a checkpoint records under ``training`` (before the cases and the device)."""
        return {"epochs": int(self.epochs), "patches_per_epoch": int(self.patches_per_epoch),
                "batch_size": int(self.batch_size), "lr": float(self.lr), "weight_decay": float(self.weight_decay),
                "seed": int(self.seed), "lesion_fraction": float(self.lesion_fraction),
                "hot_fraction": float(self.hot_fraction),
                "organ_fraction": float(self.organ_fraction if organ_aware else 0.0),
                "augmentation": self.augmentation.record()}
