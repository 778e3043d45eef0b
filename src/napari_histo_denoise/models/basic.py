"""The basic autoencoder: a four-level U-Net with skip connections (34,544,963 parameters)."""

from __future__ import annotations

import torch
from torch import nn

from .blocks import check_input, conv_bn_act, final_head, up_bn_act


def _encoder_level(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        *conv_bn_act(in_ch, out_ch), *conv_bn_act(out_ch, out_ch), nn.MaxPool2d(2)
    )


def _decoder_level(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(*up_bn_act(in_ch, out_ch), *conv_bn_act(out_ch, out_ch))


class HistoAutoencoder(nn.Module):
    """U-Net autoencoder of the seed report's "BASIC AUTOENCODER" table.

    Each encoder level is two Conv3x3-BN-LeakyReLU stages and a 2x2 max pool.
    The skips are the pooled outputs of encoder levels 1-3, concatenated to the
    input of decoder levels 1-3 (the seed's table, whose decoder input widths are
    768 = 512 + 256, 384 = 256 + 128 and 192 = 128 + 64).

    Input and output are N x 3 x H x W in [0, 1]; H and W must be multiples of 16.
    """

    architecture = "basic"

    def __init__(self) -> None:
        super().__init__()
        self.encoder1 = _encoder_level(3, 64)
        self.encoder2 = _encoder_level(64, 128)
        self.encoder3 = _encoder_level(128, 256)
        self.encoder4 = _encoder_level(256, 512)
        self.bottleneck = nn.Sequential(*conv_bn_act(512, 1024), *conv_bn_act(1024, 1024))
        self.decoder4 = _decoder_level(1024, 512)
        self.decoder3 = _decoder_level(512 + 256, 256)
        self.decoder2 = _decoder_level(256 + 128, 128)
        self.decoder1 = _decoder_level(128 + 64, 64)
        self.final = final_head(64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x)
        e1 = self.encoder1(x)
        e2 = self.encoder2(e1)
        e3 = self.encoder3(e2)
        d = self.decoder4(self.bottleneck(self.encoder4(e3)))
        d = self.decoder3(torch.cat([d, e3], dim=1))
        d = self.decoder2(torch.cat([d, e2], dim=1))
        d = self.decoder1(torch.cat([d, e1], dim=1))
        return self.final(d)
