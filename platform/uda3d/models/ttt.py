"""The SIT generator with a second head that rebuilds its inputs, for test-time training (TTT).

Sun et al. (ICML 2020) train a network jointly on its task and a self-supervised task that shares
the encoder; at test time the encoder alone is tuned on the self-supervised loss of the new data,
and the task head, untouched, reads better features. Darestani, Liu and Heckel (ICML 2022) showed
the same recovers most of the distribution-shift loss of MRI reconstruction networks. Here the
task head is the SIT decoder (T1) and the auxiliary head a light mirror of it that rebuilds FLAIR
and T2 from a damaged copy (``uda3d.losses.cross_contrast``); both read the encoder's three levels.

``forward`` returns T1 as the plain SIT generator does (scoring, synthesis and every adaptation
take this model unchanged); ``forward(x, task="aux")`` returns the reconstruction through the same
``forward`` so DDP synchronises the auxiliary gradients too.
"""

from __future__ import annotations

import torch
from torch import nn

from uda3d.models.blocks import conv_block
from uda3d.models.cpu_conv import DepthSplitConv3d
from uda3d.models.sit import SITGenerator

ENCODER_PREFIXES = ("enc1.", "enc2.", "enc3.")
AUX_PREFIX = "aux."


class AuxiliaryDecoder(nn.Module):
    """(e1, e2, e3) -> (B, channels, D, H, W) in [0, 1]: transposed convs up, skips fused by 1x1 convs."""

    def __init__(self, ngf: int, channels: int) -> None:
        super().__init__()
        width = max(4, ngf // 2)
        self.up3 = conv_block(3, ngf, width, kernel_size=3, stride=2, padding=1, transposed=True, output_padding=1)
        self.fuse2 = DepthSplitConv3d(width + ngf, width, 1)
        self.up2 = conv_block(3, width, width, kernel_size=3, stride=2, padding=1, transposed=True, output_padding=1)
        self.fuse1 = DepthSplitConv3d(width + ngf, width, 1)
        self.up1 = conv_block(3, width, width, kernel_size=3, stride=2, padding=1, transposed=True, output_padding=1)
        self.out = nn.Sequential(DepthSplitConv3d(width, channels, 3, padding=1), nn.Sigmoid())

    def forward(self, features: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        e1, e2, e3 = features
        x = self.fuse2(torch.cat([self.up3(e3), e2], 1))
        x = self.fuse1(torch.cat([self.up2(x), e1], 1))
        return self.out(self.up1(x))


class TTTGenerator(SITGenerator):
    """SIT generator + auxiliary input-reconstruction head sharing its encoder."""

    def __init__(self, in_channels: int = 2, out_channels: int = 1, ngf: int = 64) -> None:
        super().__init__(in_channels, out_channels, ngf)
        self.aux = AuxiliaryDecoder(ngf, in_channels)
        for m in self.aux.modules():
            if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, task: str = "t1") -> torch.Tensor:
        features = self.encode(x)
        if task == "aux":
            return self.aux(features)
        if task != "t1":
            raise ValueError(f"task must be 't1' or 'aux', got {task!r}")
        return self.decode(features)


def _parameters(model: nn.Module, prefixes: tuple[str, ...]) -> list[nn.Parameter]:
    return [p for name, p in model.named_parameters() if name.startswith(prefixes)]


def encoder_parameters(model: nn.Module, scope: str = "encoder") -> list[nn.Parameter]:
    """The parameters TTT may change: the shared encoder, or only its first level (``scope="first"``)."""
    return _parameters(model, ENCODER_PREFIXES if scope == "encoder" else ENCODER_PREFIXES[:1])


def auxiliary_task_parameters(model: nn.Module) -> list[nn.Parameter]:
    """What the auxiliary task trains during source training: the shared encoder and the auxiliary head."""
    return _parameters(model, ENCODER_PREFIXES + (AUX_PREFIX,))


def load_generator_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load generator weights; a ``TTTGenerator`` may take a plain SIT state (its auxiliary head stays fresh).

    Lets a plain source backbone grow the head for its joint fine-tune (the SIT keys are shared);
    any other mismatch still raises.
    """
    if not isinstance(model, TTTGenerator):
        model.load_state_dict(state)
        return
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shapes differ: another width
        raise ValueError(f"state does not fit this generator: {str(exc).splitlines()[-1].strip()}") from None
    if unexpected or any(not k.startswith(AUX_PREFIX) for k in missing):
        raise ValueError(f"state does not fit this generator: unexpected {unexpected[:3]}, missing "
                         f"{[k for k in missing if not k.startswith(AUX_PREFIX)][:3]}")

