"""A small 3D U-Net for lesion segmentation from PET (and CT) input channels.

Layout (``depth`` = number of downsamplings, ``c`` = ``base_channels``)::

    input (N, in_channels, z, y, x)
      level 0:  block(in -> c)          ---------------- skip ----------------.
      down:     2x2x2 conv, stride 2                                           |
      level 1:  block(c -> 2c)          ------ skip ------.                    |
      ...                                                 |                    |
      bottleneck: block(2^(depth-1) c -> 2^depth c)       |                    |
      up:  2x2x2 transposed conv, stride 2, concatenate the skip, block ...    |
      head: 1x1x1 conv -> n_classes logits <-----------------------------------'

``n_classes = 1``: one lesion logit (sigmoid; lesion vs background). ``n_classes > 1``: one
logit per class (softmax), e.g. background, the physiological organs and lesion for the
organ-aware network of :mod:`biomarkers.segment.unet_train`.

A block is two ``3x3x3 conv -> instance norm (affine) -> leaky ReLU`` units, followed by
channel dropout when ``dropout > 0``. Instance norm, not batch norm: training batches hold
only a few patches, for which batch statistics are too noisy. Downsampling uses strided
convolutions instead of max pooling, whose CUDA backward pass is not deterministic.

Input sizes need not be multiples of ``2**depth``: :meth:`UNet3D.forward` pads each spatial
axis at its end, by repeating the edge voxels, up to the next multiple and crops the logits
back to the input size. The sliding-window inference of :mod:`biomarkers.segment.unet_infer` feeds
windows of the training patch size (a multiple of ``2**depth``) and pads with the channels'
background values itself, so this internal padding only matters for direct calls.

Note that instance norm computes its statistics over the whole input: the network's output
at a voxel depends (weakly) on the extent of the input, so whole-volume and sliding-window
predictions agree closely but not exactly.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from biomarkers.deep.normalise import normalisation_record
from biomarkers.deep.training import resolve_device
from biomarkers.errors import InputError, ModelBundleError


class ConvBlock(nn.Sequential):
    """Two ``conv 3x3x3 -> InstanceNorm3d -> LeakyReLU`` units, then optional channel dropout."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0) -> None:
        layers: list[nn.Module] = []
        for n_in in (in_channels, out_channels):
            layers += [nn.Conv3d(n_in, out_channels, kernel_size=3, padding=1, bias=False),
                       nn.InstanceNorm3d(out_channels, affine=True),
                       nn.LeakyReLU(0.01, inplace=True)]
        if dropout > 0:
            layers.append(nn.Dropout3d(dropout))
        super().__init__(*layers)


class UNet3D(nn.Module):
    """3D U-Net with ``n_classes`` output logit channels (see the module docstring).

    Parameters
    ----------
    in_channels : int
        Input channels: 2 for PET and CT, 1 for PET alone (order of
        :func:`biomarkers.deep.normalise.input_channels`).
    base_channels : int
        Feature maps at full resolution; doubled at every level.
    depth : int
        Number of downsampling steps (the bottleneck has ``base_channels * 2**depth``
        feature maps at ``1 / 2**depth`` of the input resolution).
    dropout : float
        Channel dropout after every block (0 disables it).
    n_classes : int
        Output logits: 1 (lesion, sigmoid) or one per class (softmax).
    """

    def __init__(self, in_channels: int = 2, base_channels: int = 8, depth: int = 3,
                 dropout: float = 0.0, n_classes: int = 1) -> None:
        super().__init__()
        if in_channels < 1 or base_channels < 1 or depth < 1 or n_classes < 1:
            raise ValueError(f"in_channels, base_channels, depth and n_classes must be positive, got "
                             f"{in_channels}, {base_channels}, {depth}, {n_classes}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.in_channels, self.base_channels = int(in_channels), int(base_channels)
        self.depth, self.dropout, self.n_classes = int(depth), float(dropout), int(n_classes)
        widths = [self.base_channels * 2**i for i in range(self.depth + 1)]
        self.encoder = nn.ModuleList([ConvBlock(self.in_channels, widths[0], self.dropout)])
        self.down = nn.ModuleList()
        for i in range(self.depth):
            self.down.append(nn.Conv3d(widths[i], widths[i], kernel_size=2, stride=2, bias=False))
            self.encoder.append(ConvBlock(widths[i], widths[i + 1], self.dropout))
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for i in reversed(range(self.depth)):
            self.up.append(nn.ConvTranspose3d(widths[i + 1], widths[i], kernel_size=2, stride=2, bias=False))
            self.decoder.append(ConvBlock(2 * widths[i], widths[i], self.dropout))
        self.head = nn.Conv3d(widths[0], self.n_classes, kernel_size=1)

    def config(self) -> dict:
        """The constructor arguments, as stored in checkpoints."""
        config = {"in_channels": self.in_channels, "base_channels": self.base_channels,
                  "depth": self.depth, "dropout": self.dropout}
        if self.n_classes != 1:  # lesion-only networks keep the configuration they always had
            config["n_classes"] = self.n_classes
        return config

    @property
    def size_multiple(self) -> int:
        """Spatial sizes that need no internal padding are multiples of this (``2**depth``)."""
        return 2**self.depth

    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input of shape (N, {self.in_channels}, z, y, x), got {tuple(x.shape)}")
        size = tuple(int(s) for s in x.shape[2:])
        m = self.size_multiple
        extra = [(-s) % m for s in size]
        if any(extra):  # F.pad lists the last axis first
            x = F.pad(x, (0, extra[2], 0, extra[1], 0, extra[0]), mode="replicate")
        return x, size

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        h = self.encoder[0](x)
        for down, block in zip(self.down, self.encoder[1:]):
            skips.append(h)
            h = block(down(h))
        return h, skips

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Bottleneck feature map ``(N, base_channels * 2**depth, ceil(z / 2**depth), ...)``.

        The input is padded as in :meth:`forward`.
        """
        return self._encode(self._pad(x)[0])[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, n_classes, z, y, x)`` for input ``(N, in_channels, z, y, x)``."""
        x, (sz, sy, sx) = self._pad(x)
        h, skips = self._encode(x)
        for up, block, skip in zip(self.up, self.decoder, reversed(skips)):
            h = block(torch.cat([up(h), skip], dim=1))
        return self.head(h)[:, :, :sz, :sy, :sx]


#: Checkpoint format tag; bump when the layout changes.
CHECKPOINT_FORMAT = "biomarkers.unet3d/2"
#: Formats :func:`load_unet` reads.
READABLE_FORMATS = ("biomarkers.unet3d/1", CHECKPOINT_FORMAT)


def load_unet(path: str | Path, device: str = "cpu") -> tuple[UNet3D, dict]:
    """Load a checkpoint written by :func:`biomarkers.segment.unet_train.train_unet` onto ``device`` (eval mode).

    Loads with ``map_location`` and ``weights_only=True``, so a checkpoint trained on a GPU
    loads on a CPU-only machine and no arbitrary code is unpickled.

    Returns
    -------
    model : UNet3D
    info : dict
        The checkpoint without ``state_dict`` (patch size, normalisation, training record, ...).

    Raises
    ------
    InputError
        The file does not exist.
    ModelBundleError
        The file is not a U-Net checkpoint of this format, or its normalisation differs from
        the one this version of the pipeline applies.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("U-Net checkpoint does not exist", path=path)
    dev = resolve_device(device)
    try:
        state = torch.load(path, map_location=dev, weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged or foreign file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelBundleError(f"{path}: not a readable U-Net checkpoint ({first})") from None
    if not isinstance(state, dict) or state.get("format") not in READABLE_FORMATS:
        raise ModelBundleError(f"{path}: not a U-Net checkpoint of format {' or '.join(READABLE_FORMATS)}")
    state.setdefault("classes", ["lesion"])  # format 1: lesion-only, each image's own grid
    state.setdefault("organ_labels", [])
    state.setdefault("spacing_mm", None)
    config = state["model_config"]
    expected = normalisation_record(config["in_channels"] == 2)
    if state["normalisation"] != expected:
        raise ModelBundleError(f"{path}: checkpoint normalisation {state['normalisation']} differs from "
                               f"this pipeline's {expected}; retrain or use the matching version")
    model = UNet3D(**config)
    model.load_state_dict(state["state_dict"])
    model.to(dev).eval()
    return model, {k: v for k, v in state.items() if k != "state_dict"}
