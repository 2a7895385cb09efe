"""What ``uda3d compare-methods`` compares, with which budgets (cheap to import: the CLI reads its defaults)."""

from __future__ import annotations

from dataclasses import dataclass, field

from uda3d.adaptation.guards import GuardConfig
from uda3d.config import AdaptConfig, BackboneConfig, HarmoniserConfig, PreprocessConfig, VAEConfig
from uda3d.errors import ConfigError
from uda3d.tracking import TrackingConfig


@dataclass(frozen=True)
class CompareConfig:
    """What to compare, with which budgets (the benchmark passes the demo's small networks)."""

    dataroot: str
    workdir: str
    seeds: int = 3
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    finetune_epochs: int = 20
    finetune_lr_factor: float = 0.5          # fine-tune lr = backbone lr x this
    checkpoint_every: int = 5
    supervised_epochs: int = 20
    vae: VAEConfig = field(default_factory=VAEConfig)
    slice_size: int = 256
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    harmoniser: HarmoniserConfig = field(default_factory=HarmoniserConfig)
    guards: GuardConfig = field(default_factory=lambda: GuardConfig(max_source_drop=0.5))
    selection_copies: int = 2
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    tracking: TrackingConfig = field(default_factory=lambda: TrackingConfig(uri=None))
    progress: bool = True

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise ConfigError("--seeds", f"expected a positive integer, got {self.seeds}")
        if self.finetune_epochs < 1 or self.checkpoint_every < 1 or self.supervised_epochs < 1:
            raise ConfigError("epochs", "fine-tune, checkpoint and supervised epochs must be positive")
