"""The deep autoencoder: a ResNet + U-Net (133,288,259 parameters)."""

from __future__ import annotations

import torch
from torch import nn

from .blocks import ResidualBlock, check_input, conv_bn_act, final_head, up_bn_act


def _encoder_level(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        *conv_bn_act(in_ch, out_ch, stride=2), ResidualBlock(out_ch), ResidualBlock(out_ch)
    )


def _decoder_level(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(*up_bn_act(in_ch, out_ch), ResidualBlock(out_ch))


class DeepHistoAutoencoder(nn.Module):
    """ResNet + U-Net autoencoder of the seed report's "DEEP AUTOENCODER" table.

    A 7x7 stem, four encoder levels (a stride-2 Conv3x3-BN-LeakyReLU and two
    residual blocks each), three residual blocks at 1/16 resolution, and four
    decoder levels (ConvTranspose-BN-LeakyReLU and one residual block). The
    skips are the outputs of encoder levels 1-3, concatenated to the inputs of
    decoder levels 1-3 (1024 = 512 + 512, 512 = 256 + 256, 256 = 128 + 128 in
    the seed's table).

    Input and output are N x 3 x H x W in [0, 1]; H and W must be multiples of 16.
    """

    architecture = "deep"

    def __init__(self) -> None:
        super().__init__()
        self.initial = nn.Sequential(*conv_bn_act(3, 64, kernel=7))
        self.encoder1 = _encoder_level(64, 128)
        self.encoder2 = _encoder_level(128, 256)
        self.encoder3 = _encoder_level(256, 512)
        self.encoder4 = _encoder_level(512, 1024)
        self.bottleneck = nn.Sequential(*(ResidualBlock(1024) for _ in range(3)))
        self.decoder4 = _decoder_level(1024, 512)
        self.decoder3 = _decoder_level(512 + 512, 256)
        self.decoder2 = _decoder_level(256 + 256, 128)
        self.decoder1 = _decoder_level(128 + 128, 64)
        self.final = final_head(64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x)
        e1 = self.encoder1(self.initial(x))
        e2 = self.encoder2(e1)
        e3 = self.encoder3(e2)
        d = self.decoder4(self.bottleneck(self.encoder4(e3)))
        d = self.decoder3(torch.cat([d, e3], dim=1))
        d = self.decoder2(torch.cat([d, e2], dim=1))
        d = self.decoder1(torch.cat([d, e1], dim=1))
        return self.final(d)
