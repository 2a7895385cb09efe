"""Frozen, validated configuration dataclasses and the one way to build them from a dict.

Configs are checked where they enter (CLI flags, YAML, a Tune trial's dict) and passed down as
dataclasses; ``from_dict`` rejects unknown keys so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, TypeVar

from uda3d.errors import ConfigError

T = TypeVar("T")

ORIENTATIONS_OK = set("LRAPSI")
NORMALISATIONS = ("minmax", "percentile")


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    """How volumes become network inputs (METHOD.md section 1).

    Attributes:
        orientation: axis code the arrays are reoriented to (the method uses ``IPL``).
        shape: crop/pad size after reorientation; ``None`` scales the method's 144x192x192 crop of a
            155x240x240 volume to the input size (multiples of 8).
        normalisation: ``minmax`` per volume and channel (the method) or ``percentile`` (1st/99th).
    """

    orientation: str = "IPL"
    shape: tuple[int, int, int] | None = None
    normalisation: str = "minmax"

    def __post_init__(self) -> None:
        code = self.orientation.upper()
        axes = {frozenset("LR"), frozenset("AP"), frozenset("SI")}
        if len(code) != 3 or not set(code) <= ORIENTATIONS_OK or {frozenset(
                next(a for a in axes if c in a)) for c in code} != axes:
            raise ConfigError("orientation", f"expected a 3-letter axis code like 'IPL', got {self.orientation!r}")
        if self.shape is not None:
            if len(self.shape) != 3 or any(int(s) < 8 or int(s) % 8 for s in self.shape):
                raise ConfigError("shape", f"expected 3 multiples of 8, got {list(self.shape)}")
        if self.normalisation not in NORMALISATIONS:
            raise ConfigError("normalisation", f"expected one of {list(NORMALISATIONS)}, got {self.normalisation!r}")


def from_dict(cls: type[T], values: dict[str, Any], source: str | None = None) -> T:
    """Build the dataclass ``cls`` from ``values``; unknown keys and wrong types raise ``ConfigError``."""
    if not isinstance(values, dict):
        raise ConfigError(cls.__name__, f"expected a mapping, got {type(values).__name__}", source)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(unknown[0], f"unknown key; expected one of {sorted(fields)}", source)
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        if isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
        expected = hints.get(name)
        if expected in (int, float, str, bool) and not _is_instance(value, expected):
            raise ConfigError(name, f"expected {expected.__name__}, got {value!r}", source)
    return cls(**kwargs)


def _is_instance(value: Any, expected: type) -> bool:
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)
