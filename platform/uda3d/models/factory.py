"""Build the networks a config names."""

from __future__ import annotations

from torch import nn

from uda3d.config import BackboneConfig
from uda3d.models.patchgan import PatchDiscriminator3D
from uda3d.models.sit import SITGenerator
from uda3d.models.unet import UNetGenerator

INPUT_CHANNELS = 2   # T2, FLAIR
OUTPUT_CHANNELS = 1  # T1


def build_generator(config: BackboneConfig) -> nn.Module:
    """The config's generator; with ``aux_weight > 0`` the SIT generator with its auxiliary TTT head."""
    if config.aux_weight > 0:
        from uda3d.models.ttt import TTTGenerator

        return TTTGenerator(INPUT_CHANNELS, OUTPUT_CHANNELS, ngf=config.ngf)
    if config.generator == "sit":
        return SITGenerator(INPUT_CHANNELS, OUTPUT_CHANNELS, ngf=config.ngf)
    return UNetGenerator(INPUT_CHANNELS, OUTPUT_CHANNELS, ngf=config.ngf)


def build_discriminator(config: BackboneConfig) -> PatchDiscriminator3D:
    return PatchDiscriminator3D(INPUT_CHANNELS + OUTPUT_CHANNELS, ndf=config.ndf, n_layers=config.n_layers_d)
