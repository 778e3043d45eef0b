"""Building blocks shared by the two seed architectures.

Module names inside each block follow the seed report's layer names, so the
state-dict keys of a model are exactly the names in its architecture map.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..settings import TILE_MULTIPLE

#: Negative slope of every LeakyReLU. The seed report names the layer type only;
#: 0.2 is the customary slope for image autoencoders of this design.
LEAKY_SLOPE = 0.2

#: Each model halves the resolution four times, so H and W must divide by 16.
SIZE_MULTIPLE = TILE_MULTIPLE


def conv_bn_act(in_ch: int, out_ch: int, *, kernel: int = 3, stride: int = 1) -> list[nn.Module]:
    """Return ``[Conv2d, BatchNorm2d, LeakyReLU]`` with "same" padding."""
    return [
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2),
        nn.BatchNorm2d(out_ch),
        nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
    ]


def up_bn_act(in_ch: int, out_ch: int) -> list[nn.Module]:
    """Return ``[ConvTranspose2d, BatchNorm2d, LeakyReLU]`` that doubles H and W."""
    return [
        nn.ConvTranspose2d(in_ch, out_ch, kernel_size=4, stride=2, padding=1),
        nn.BatchNorm2d(out_ch),
        nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
    ]


def final_head(in_ch: int) -> nn.Sequential:
    """The seed's FINAL block: Conv3x3 + BN + LeakyReLU, then Conv1x1 to RGB and Sigmoid."""
    return nn.Sequential(*conv_bn_act(in_ch, in_ch), nn.Conv2d(in_ch, 3, 1), nn.Sigmoid())


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity shortcut.

    ``relu(x + bn2(conv2(relu(bn1(conv1(x))))))``, channels and size unchanged.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + x, inplace=True)


def check_input(x: torch.Tensor) -> None:
    """Raise a ValueError unless ``x`` is N x 3 x H x W with H and W multiples of 16."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected a tensor of shape (N, 3, H, W), got {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE or h == 0 or w == 0:
        raise ValueError(
            f"height and width must be positive multiples of {SIZE_MULTIPLE} "
            f"(the model halves them four times), got {h} x {w}; "
            "pad the image first, or use napari_histo_denoise.denoise, which pads and tiles"
        )
