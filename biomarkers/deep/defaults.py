"""Defaults of the networks that the command line shows without importing torch.

The one source of each: the library's functions, the command line and the workflow schema
(``deep_features``) take them from here (``tests/deep/test_embed.py`` checks the schema agrees).
"""
from __future__ import annotations

from dataclasses import dataclass

#: Length of the autoencoder's bottleneck (the deep_* vector) and its training epochs.
LATENT, EPOCHS = 16, 10


@dataclass(frozen=True)
class AutoencoderTraining:
    """How :func:`~biomarkers.deep.autoencoder.train_autoencoder` trains: ``latent`` features per
    lesion, ``epochs`` passes over the patches in batches of ``batch_size`` (the remainder spread
    over the batches), Adam's learning rate ``lr``, the ``seed`` of initialisation, batch order and
    flips, ``width`` channels of the first convolution, and the ``device`` ("auto": CUDA when
    available).

    Raises
    ------
    ValueError
        Fewer than one epoch or patch per batch, or a learning rate that is not positive.
    """

    latent: int = LATENT
    epochs: int = EPOCHS
    batch_size: int = 16
    lr: float = 1e-3
    seed: int = 0
    width: int = 8
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"need epochs >= 1, batch_size >= 1, lr > 0; got {self.epochs}, {self.batch_size}, "
                             f"{self.lr}")
