"""The SIT ("Scout-Identify-Transform") 3D generator the method uses (docs/method.md section 1).

Encoder: three Conv(k4, s2, p1) -> IN -> ReLU stages (C_in -> ngf -> ngf -> ngf), each halving the
size. Decoder, deepest first: DenseShortcut -> IN -> ReLU -> ConvT(k3, s2, p1, op1); then at each
upper level concat with the encoder skip, 1x1 conv back to ngf, DenseShortcut(s), ConvT up; the top
level upsamples to 8 channels; the head is IN -> ReLU -> Conv(k3, 8 -> 1) -> Sigmoid, so outputs
lie in [0, 1] like the min-max scaled targets. Normalisation is InstanceNorm without affine
parameters and weights are Kaiming-initialised, as in the method's code. Inputs must be divisible by 8.
"""

from __future__ import annotations

import torch
from torch import nn

from uda3d.models.blocks import check_divisible, checkpointed, conv_block, instance_norm
from uda3d.models.cpu_conv import DepthSplitConv3d

HEAD_CHANNELS = 8
DOWNSAMPLING = 8


class DenseShortcut(nn.Module):
    """Three pre-activated (IN -> ReLU -> Conv k3) layers with dense, learnably weighted shortcuts.

    x_{i+1} = conv_i(relu(IN(x_i))) + sum_{j <= i} w_{ij} * x_j, with per-channel weights w_{ij}
    drawn from N(0, 1) at initialisation (the method's DenseShortcut).
    """

    def __init__(self, channels: int, layers: int = 3) -> None:
        super().__init__()
        self.norms = nn.ModuleList(instance_norm(3, channels) for _ in range(layers))
        self.convs = nn.ModuleList(DepthSplitConv3d(channels, channels, 3, padding=1) for _ in range(layers))
        self.weights = nn.ParameterList(nn.Parameter(torch.randn(i + 1, channels)) for i in range(layers))
        self.checkpointing = False  # ``models.blocks.set_checkpointing``: recompute each layer in backward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = [x]
        for i in range(len(self.convs)):
            states.append(checkpointed(self._layer(i), *states, enabled=self.checkpointing))
        return states[-1]

    def _layer(self, i: int):
        norm, conv, w = self.norms[i], self.convs[i], self.weights[i]

        def layer(*states: torch.Tensor) -> torch.Tensor:
            out = conv(torch.relu(norm(states[-1])))
            for j, s in enumerate(states):
                out = out + w[j].view(1, -1, 1, 1, 1) * s
            return out

        return layer


def _up(in_ch: int, out_ch: int) -> nn.Module:
    return conv_block(3, in_ch, out_ch, kernel_size=3, stride=2, padding=1, transposed=True, output_padding=1)


def _post(channels: int) -> nn.Sequential:
    return nn.Sequential(instance_norm(3, channels), nn.ReLU())


class SITGenerator(nn.Module):
    """SIT generator: (B, in_channels, D, H, W) -> (B, out_channels, D, H, W) in [0, 1].

    Args:
        in_channels: input modalities (2: T2, FLAIR).
        out_channels: 1 (T1).
        ngf: channels of every encoder/decoder level (64 in the method).
    """

    def __init__(self, in_channels: int = 2, out_channels: int = 1, ngf: int = 64) -> None:
        super().__init__()
        self.enc1 = conv_block(3, in_channels, ngf, kernel_size=4, stride=2, padding=1)
        self.enc2 = conv_block(3, ngf, ngf, kernel_size=4, stride=2, padding=1)
        self.enc3 = conv_block(3, ngf, ngf, kernel_size=4, stride=2, padding=1)
        self.dec3 = nn.Sequential(DenseShortcut(ngf), _post(ngf), _up(ngf, ngf))
        self.fuse2 = DepthSplitConv3d(2 * ngf, ngf, 1)
        self.dec2 = nn.Sequential(DenseShortcut(ngf), _post(ngf), _up(ngf, ngf))
        self.fuse1 = DepthSplitConv3d(2 * ngf, ngf, 1)
        self.dec1 = nn.Sequential(DenseShortcut(ngf), _post(ngf), DenseShortcut(ngf), _post(ngf),
                                  _up(ngf, HEAD_CHANNELS))
        self.head = nn.Sequential(_post(HEAD_CHANNELS), DepthSplitConv3d(HEAD_CHANNELS, out_channels, 3, padding=1),
                                  nn.Sigmoid())
        self.checkpointing = False  # ``models.blocks.set_checkpointing``: recompute each piece in backward
        self._init_weights()

    def _run(self, piece: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``piece(x)``; with checkpointing each element of a sequence is recomputed on its own, so
        backward holds one element's activations at a time (the dense blocks recompute per layer)."""
        if not self.checkpointing or not isinstance(piece, nn.Sequential) or piece is self.head:
            return checkpointed(piece, x, enabled=self.checkpointing)
        for element in piece:
            x = element(x) if isinstance(element, DenseShortcut) else checkpointed(element, x, enabled=True)
        return x

    def _fuse(self, fuse: nn.Module, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """1x1 conv over [decoder, skip]: the concatenation (2 ngf channels) is not kept when checkpointing."""
        return checkpointed(lambda a, b: fuse(torch.cat([a, b], 1)), deep, skip, enabled=self.checkpointing)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The encoder's three levels (e1, e2, e3): what an auxiliary head can share (``uda3d.models.ttt``)."""
        check_divisible(tuple(x.shape[2:]), DOWNSAMPLING, "the SIT generator")
        e1 = self._run(self.enc1, x)                        # (B, ngf, D/2, H/2, W/2)
        e2 = self._run(self.enc2, e1)                       # (B, ngf, D/4, ...)
        e3 = self._run(self.enc3, e2)                       # (B, ngf, D/8, ...)
        return e1, e2, e3

    def decode(self, features: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """T1 from the encoder's levels."""
        e1, e2, e3 = features
        d2 = self._run(self.dec3, e3)                                  # (B, ngf, D/4, ...)
        d1 = self._run(self.dec2, self._fuse(self.fuse2, d2, e2))     # (B, ngf, D/2, ...)
        d0 = self._run(self.dec1, self._fuse(self.fuse1, d1, e1))     # (B, 8, D, H, W)
        return self._run(self.head, d0)                                # (B, out, D, H, W) in [0, 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))
