"""Property-based tests of config validation (hypothesis).

For any dict a YAML file or a Tune trial could hand over — right and wrong types, NaN, infinities,
bounds, unknown keys — ``from_dict`` either builds a config whose every field is valid, or raises
``ConfigError`` whose one line names a field that is actually wrong; never another exception. The
validity rules below are written independently of ``uda3d.config``: they are the specification.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from uda3d.config import (
    AdaptConfig,
    BackboneConfig,
    GuardConfig,
    HarmoniserConfig,
    PreprocessConfig,
    RobustAugmentConfig,
    SpatialAugmentConfig,
    VAEConfig,
    from_dict,
)
from uda3d.errors import ConfigError

Check = Callable[[Any], bool]


def number(ok: Callable[[float], bool]) -> Check:
    return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and ok(v)


def integer(low: int) -> Check:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


def one_of(*values: Any) -> Check:
    return lambda v: isinstance(v, str) and v in values


def flag(v: Any) -> bool:
    return isinstance(v, bool)


def orientation(v: Any) -> bool:
    pairs = [set("LR"), set("AP"), set("SI")]
    return (isinstance(v, str) and len(v) == 3 and set(v.upper()) <= set("LRAPSI")
            and all(sum(c in pair for c in v.upper()) == 1 for pair in pairs))


def spacing(v: Any) -> bool:
    return v is None or (isinstance(v, (list, tuple)) and len(v) == 3
                         and all(number(lambda x: 0.05 <= x <= 20)(x) for x in v))


def crop_shape(v: Any) -> bool:
    return v is None or (isinstance(v, (list, tuple)) and len(v) == 3
                         and all(integer(8)(s) and s % 8 == 0 for s in v))


# Per config: each field's rule, and rules across fields as (fields named, check of the merged values).
SPECS: dict[type, tuple[dict[str, Check], list[tuple[tuple[str, ...], Callable[[dict], bool]]]]] = {
    PreprocessConfig: ({"orientation": orientation, "shape": crop_shape,
                        "normalisation": one_of("minmax", "percentile"), "crop": one_of("brain", "fixed"),
                        "spacing": spacing}, []),
    RobustAugmentConfig: ({"probability": number(lambda v: 0 <= v <= 1), "bias_coeff": number(lambda v: v >= 0),
                           "gamma_low": number(lambda v: v > 0), "gamma_high": number(lambda v: v > 0),
                           "noise_std": number(lambda v: v >= 0), "blur_sigma": number(lambda v: v >= 0.5),
                           "histogram_points": integer(4),
                           "remap_knots": lambda v: integer(0)(v) and v != 1},
                          [(("gamma_low", "gamma_high"), lambda c: c["gamma_low"] <= c["gamma_high"])]),
    BackboneConfig: ({"generator": one_of("sit", "unet"), "ngf": integer(1), "ndf": integer(1),
                      "n_layers_d": integer(1), "lr": number(lambda v: 0 < v < 1),
                      "beta1": number(lambda v: 0 <= v < 1), "lambda_l1": number(lambda v: v >= 0),
                      "lambda_fm": number(lambda v: v >= 0), "epochs": integer(0), "epochs_decay": integer(0),
                      "l1_warmup_epochs": integer(0), "val_every": integer(1), "grad_accum": integer(1), "amp": flag,
                      "augment": flag,
                      "robust_augment": flag,
                      "robust": lambda v: v == {} or isinstance(v, RobustAugmentConfig),
                      "spatial_augment": flag, "spatial": lambda v: v == {} or isinstance(v, SpatialAugmentConfig),
                      "aux_weight": number(lambda v: v >= 0), "checkpointing": flag, "seed": integer(0)},
                     [(("epochs", "epochs_decay"), lambda c: c["epochs"] + c["epochs_decay"] >= 1),
                      (("epochs", "epochs_decay", "l1_warmup_epochs"),
                       lambda c: c["l1_warmup_epochs"] <= c["epochs"] + c["epochs_decay"]),
                      (("aux_weight", "generator"), lambda c: c["aux_weight"] == 0 or c["generator"] == "sit")]),
    VAEConfig: ({"gf_dim": integer(1), "latent_channels": integer(1), "kl_weight": number(lambda v: v >= 0),
                 "lr": number(lambda v: 0 < v < 1), "epochs": integer(1), "seed": integer(0)}, []),
    AdaptConfig: ({"ele_percent": number(lambda v: 0 < v <= 100), "kl_weight": number(lambda v: v >= 0),
                   "lr": number(lambda v: 0 < v < 1), "epochs": integer(1),
                   "target_subjects": lambda v: v is None or integer(1)(v),
                   "slice_order": one_of("intended", "faithful"), "source_step": flag,
                   "prior": one_of("subject", "population"), "amp": flag, "checkpointing": flag,
                   "seed": integer(0)}, []),
    HarmoniserConfig: ({"knots": integer(2), "steps": integer(1), "lr": number(lambda v: 0 < v < 10),
                        "voxels": integer(16), "projections": integer(1), "seed": integer(0)}, []),
    GuardConfig: ({"max_source_drop": number(lambda v: v >= 0), "max_intensity_drift": number(lambda v: v >= 0),
                   "max_hf_rise": number(lambda v: v >= 0), "max_background_rise": number(lambda v: v >= 0)},
                  []),
}

WILD = st.one_of(
    st.integers(-3, 300), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(),
    st.text(max_size=4), st.sampled_from(["sit", "unet", "IPL", "ipl", "minmax", "intended", "population"]),
    st.lists(st.integers(-8, 64), max_size=4), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _near(default: Any) -> st.SearchStrategy:
    """Values around a field's default: mostly valid, sometimes just across a bound."""
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, int):
        return st.integers(-2, max(2 * default, 8))
    if isinstance(default, float):
        return st.floats(-0.5, 2 * default + 1, allow_nan=False)
    if isinstance(default, str):
        return st.just(default)
    if default is None or isinstance(default, tuple):
        return st.one_of(st.none(), st.lists(st.sampled_from([0, 8, 16, 20, 32, 0.5, 1.0, 25.0]), min_size=2,
                                             max_size=4))
    return st.just({})  # a nested config: its defaults


@st.composite
def config_dicts(draw, cls: type) -> dict:
    values: dict[Any, Any] = {}
    for f in dataclasses.fields(cls):
        if draw(st.integers(0, 9)) < 6:
            continue  # keep the default
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        values[f.name] = draw(st.one_of(_near(default), WILD) if draw(st.booleans()) else _near(default))
    if draw(st.integers(0, 19)) == 0:
        values[draw(st.sampled_from(["learning_rate", "Lr", 3, "epoch"]))] = 1
    return values


def _merged(cls: type, values: dict) -> dict:
    out = {f.name: getattr(cls(), f.name) for f in dataclasses.fields(cls)}
    out.update(values)
    return out


def _broken_fields(cls: type, values: dict) -> set[str]:
    """The fields the specification says are wrong (a wrong single field, or every field of a broken rule)."""
    rules, across = SPECS[cls]
    unknown = {str(k) for k in values if k not in rules}
    if unknown:
        return unknown
    merged = _merged(cls, values)
    wrong = {name for name, ok in rules.items() if name in values and not ok(values[name])}
    for names, ok in across:  # a rule across fields applies once each of its fields is valid alone
        if not wrong & set(names) and not ok(merged):
            wrong |= set(names)
    return wrong


@pytest.mark.parametrize("cls", list(SPECS), ids=lambda c: c.__name__)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_from_dict_builds_a_valid_config_or_names_the_wrong_field(cls, data):
    values = data.draw(config_dicts(cls))
    broken = _broken_fields(cls, values)
    try:
        config = from_dict(cls, values, source="config.yaml")
    except ConfigError as exc:
        message = str(exc)
        assert broken, f"valid values rejected: {values!r} -> {message}"
        assert "\n" not in message and message.startswith("config.yaml: ")
        assert any(name in message.replace("-", "_") for name in broken), (broken, message)
        return
    assert not broken, f"invalid {sorted(broken)} accepted: {values!r}"
    rules, _ = SPECS[cls]
    for name, ok in rules.items():  # what was built is valid too (e.g. lists became tuples)
        value = getattr(config, name)
        assert ok({} if isinstance(value, RobustAugmentConfig) else value), (name, value)


@settings(max_examples=100, deadline=None)
@given(value=st.floats(allow_nan=True, allow_infinity=True))
@example(value=math.nan)
@example(value=math.inf)
@example(value=-math.inf)
def test_no_float_bound_lets_nan_or_infinity_through(value):
    for cls, name in ((AdaptConfig, "lr"), (AdaptConfig, "kl_weight"), (VAEConfig, "kl_weight"),
                      (BackboneConfig, "lambda_fm"), (GuardConfig, "max_intensity_drift")):
        try:
            config = from_dict(cls, {name: value})
        except ConfigError as exc:
            assert name in str(exc)
            continue
        assert math.isfinite(getattr(config, name))


SCALAR = st.one_of(st.integers(-3, 200), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(),
                   st.text(max_size=3), st.sampled_from(["uniform", "loguniform", "int", "choice", "subject", "tpe"]))
BOUND = st.one_of(st.floats(-1, 150), st.integers(-1, 150), SCALAR)
PARAM = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["uniform", "loguniform", "int", "normal"]), "low": BOUND,
                           "high": BOUND}),
    st.fixed_dictionaries({"type": st.just("choice"), "values": st.lists(SCALAR, max_size=3)}),
    SCALAR, st.dictionaries(st.sampled_from(["type", "low", "high", "step"]), SCALAR, max_size=3))
PARAMS = st.dictionaries(st.sampled_from(["ele_percent", "lr", "kl_weight", "target_subjects", "epochs", "prior",
                                          "source_step", "momentum"]), PARAM, max_size=3)
SECTION = st.dictionaries(st.sampled_from(["epochs", "lr", "type", "grace_period", "reduction_factor", "sampler",
                                           "seed", "cpu", "gpu", "bogus"]), SCALAR, max_size=2)


@st.composite
def spaces(draw) -> dict:
    """Search spaces whose sections are mappings, with any keys and values inside them."""
    raw: dict[str, Any] = {"params": draw(PARAMS)}
    for key in draw(st.lists(st.sampled_from(["fixed", "scheduler", "search", "resources"]), unique=True)):
        raw[key] = draw(SECTION)
    for key in draw(st.lists(st.sampled_from(["mode", "metric", "num_samples", "max_concurrent_trials", "seeds",
                                              "design", "bogus"]), unique=True, max_size=3)):
        raw[key] = draw(st.one_of(SCALAR, st.lists(SCALAR, max_size=2)))
    return raw


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=spaces())
def test_a_search_space_is_valid_throughout_or_refused_naming_the_file(raw):
    from uda3d.tuning.space import parse_space

    try:
        space = parse_space(raw, "space.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("space.yaml: ") and "\n" not in str(exc)
        return
    assert space.params and space.num_samples >= 1 and space.mode in ("min", "max")
    for p in space.params:  # every value a trial can draw builds a valid adaptation config
        ends = p.values if p.distribution == "choice" else (p.low, p.high)
        assert p.distribution == "choice" or p.low <= p.high
        for value in ends:
            AdaptConfig(**{**space.fixed, p.name: value})
