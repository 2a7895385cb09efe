"""Declarative search spaces (``search_spaces/*.yaml``), validated before any trial starts.

A space names the adaptation hyperparameters to search and how: each parameter maps to a
distribution (``uniform``, ``loguniform``, ``int``, ``choice``); the metric and mode the search
optimises; the number of samples; the ASHA scheduler and its grace period; the Optuna sampler, its
seed and (TPE) its number of random start-up trials (default a third of the samples, at most
Optuna's 10); resources per trial and the number of concurrent trials; for ``uda3d study``, the seeds
each grid point runs with and the ``design`` (``grid``: every combination of the choice values;
``one_at_a_time``: each parameter's values with the others at the baseline). Every bound is checked by
building an ``AdaptConfig`` at both ends of its range, so the limits live in one place (a negative
lr or an ele_percent outside (0, 100] fails here, naming the file and the key). Parsing uses PyYAML
(already a Ray dependency); conversion to Ray Tune's sampling objects happens in ``to_tune``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uda3d.config import AdaptConfig
from uda3d.errors import ConfigError

DISTRIBUTIONS = ("uniform", "loguniform", "int", "choice")
SAMPLERS = ("tpe", "random")
SCHEDULERS = ("asha", "fifo")
MODES = ("min", "max")
DESIGNS = ("grid", "one_at_a_time")
TOP_KEYS = {"name", "description", "metric", "mode", "num_samples", "max_concurrent_trials", "scheduler", "search",
            "resources", "params", "fixed", "seeds", "design"}
TUNABLE = {f.name for f in dataclasses.fields(AdaptConfig)} - {"seed", "amp", "slice_order"}


@dataclass(frozen=True)
class ParamSpec:
    """One searched parameter."""

    name: str
    distribution: str
    low: float | None = None
    high: float | None = None
    values: tuple[Any, ...] = ()


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space (see the module docstring)."""

    name: str
    source: str
    metric: str
    mode: str
    num_samples: int
    params: tuple[ParamSpec, ...]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    scheduler: str = "asha"
    grace_period: int = 1
    reduction_factor: int = 2
    sampler: str = "tpe"
    sampler_seed: int = 0
    startup_trials: int = 2     # TPE's random start-up trials before it models the results
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent_trials: int = 1
    seeds: tuple[int, ...] = (0,)
    design: str = "grid"       # how ``uda3d study`` crosses the choice values (``uda3d.tuning.study``)


def _require(mapping: Mapping[str, Any], key: str, where: str, source: str) -> Any:
    if key not in mapping:
        raise ConfigError(f"{where}{key}", "missing", source)
    return mapping[key]


def _number(value: Any, key: str, source: str, integer: bool = False) -> float:
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok:
        raise ConfigError(key, f"expected {'an integer' if integer else 'a number'}, got {value!r}", source)
    return value


def _check_value(name: str, value: Any, key: str, source: str, fixed: Mapping[str, Any]) -> None:
    """Build an AdaptConfig with ``name=value`` (and the fixed values) so its own checks run."""
    try:
        AdaptConfig(**{**fixed, name: value})
    except ConfigError as e:
        raise ConfigError(key, e.problem, source) from None
    except TypeError as e:
        raise ConfigError(key, f"bad value {value!r} ({e})", source) from None


def parse_param(name: str, spec: Any, source: str, fixed: Mapping[str, Any]) -> ParamSpec:
    key = f"params.{name}"
    if not isinstance(name, str) or name not in TUNABLE:
        raise ConfigError(key, f"unknown parameter; expected one of {sorted(TUNABLE)}", source)
    if not isinstance(spec, Mapping):
        raise ConfigError(key, "expected a mapping with 'type' and its bounds or values", source)
    kind = _require(spec, "type", f"{key}.", source)
    if kind not in DISTRIBUTIONS:
        raise ConfigError(f"{key}.type", f"expected one of {list(DISTRIBUTIONS)}, got {kind!r}", source)
    unknown = sorted(set(spec) - ({"type", "values"} if kind == "choice" else {"type", "low", "high"}))
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}", f"unknown key for a {kind} distribution", source)
    if kind == "choice":
        values = _require(spec, "values", f"{key}.", source)
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{key}.values", "expected a non-empty list", source)
        for v in values:
            _check_value(name, v, f"{key}.values", source, fixed)
        return ParamSpec(name, kind, values=tuple(values))
    low = _number(_require(spec, "low", f"{key}.", source), f"{key}.low", source, integer=kind == "int")
    high = _number(_require(spec, "high", f"{key}.", source), f"{key}.high", source, integer=kind == "int")
    if low > high:
        raise ConfigError(f"{key}.low", f"low {low} > high {high}", source)
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"{key}.low", f"loguniform needs low > 0, got {low}", source)
    # Checked as a trial draws them: uniform and loguniform draw floats, which an integer field refuses.
    low, high = (int(low), int(high)) if kind == "int" else (float(low), float(high))
    _check_value(name, low, f"{key}.low", source, fixed)
    _check_value(name, high, f"{key}.high", source, fixed)
    return ParamSpec(name, kind, low, high)


def parse_space(raw: Any, source: str) -> SearchSpace:
    """Validate a loaded YAML mapping; every error names ``source`` and the key."""
    if not isinstance(raw, Mapping):
        raise ConfigError("search space", "expected a mapping at the top level", source)
    unknown = sorted(str(k) for k in set(raw) - TOP_KEYS)  # YAML keys may be numbers
    if unknown:
        raise ConfigError(unknown[0], f"unknown key; expected one of {sorted(TOP_KEYS)}", source)
    for section in ("fixed", "scheduler", "search", "resources", "params"):
        if raw.get(section) is not None and not isinstance(raw[section], Mapping):
            raise ConfigError(section, f"expected a mapping, got {raw[section]!r}", source)
    fixed = dict(raw.get("fixed") or {})
    for name in fixed:
        if not isinstance(name, str) or name not in TUNABLE | {"seed"}:
            raise ConfigError(f"fixed.{name}", f"unknown parameter; expected one of {sorted(TUNABLE)}", source)
    try:
        AdaptConfig(**fixed)
    except ConfigError as e:
        raise ConfigError(f"fixed.{e.field}", e.problem, source) from None
    params_raw = _require(raw, "params", "", source)
    if not isinstance(params_raw, Mapping) or not params_raw:
        raise ConfigError("params", "expected a non-empty mapping of parameter -> distribution", source)
    params = tuple(parse_param(name, spec, source, fixed) for name, spec in params_raw.items())
    mode = raw.get("mode", "min")
    if mode not in MODES:
        raise ConfigError("mode", f"expected one of {list(MODES)}, got {mode!r}", source)
    metric = raw.get("metric", "augmented_source_mae")
    if not isinstance(metric, str) or not metric:
        raise ConfigError("metric", f"expected a metric name, got {metric!r}", source)
    num_samples = _number(raw.get("num_samples", 8), "num_samples", source, integer=True)
    if num_samples < 1:
        raise ConfigError("num_samples", f"expected >= 1, got {num_samples}", source)
    scheduler = dict(raw.get("scheduler") or {"type": "asha"})
    kind = scheduler.pop("type", "asha")
    if kind not in SCHEDULERS:
        raise ConfigError("scheduler.type", f"expected one of {list(SCHEDULERS)}, got {kind!r}", source)
    grace = _number(scheduler.pop("grace_period", 1), "scheduler.grace_period", source, integer=True)
    reduction = _number(scheduler.pop("reduction_factor", 2), "scheduler.reduction_factor", source, integer=True)
    if scheduler:
        raise ConfigError(f"scheduler.{sorted(scheduler)[0]}", "unknown key", source)
    if grace < 1 or reduction < 2:
        raise ConfigError("scheduler", "expected grace_period >= 1 and reduction_factor >= 2", source)
    search = dict(raw.get("search") or {})
    sampler = search.pop("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise ConfigError("search.sampler", f"expected one of {list(SAMPLERS)}, got {sampler!r}", source)
    seed = _number(search.pop("seed", 0), "search.seed", source, integer=True)
    # Optuna's own default (10 random start-up trials) would make a study of 8 trials a random search.
    startup = _number(search.pop("startup_trials", min(10, max(1, num_samples // 3))), "search.startup_trials",
                      source, integer=True)
    if startup < 1:
        raise ConfigError("search.startup_trials", f"expected >= 1, got {startup}", source)
    if search:
        raise ConfigError(f"search.{sorted(search)[0]}", "unknown key", source)
    resources = dict(raw.get("resources") or {})
    cpus = _number(resources.pop("cpu", 1.0), "resources.cpu", source)
    gpus = _number(resources.pop("gpu", 0.0), "resources.gpu", source)
    if resources:
        raise ConfigError(f"resources.{sorted(resources)[0]}", "unknown key; expected cpu, gpu", source)
    if cpus <= 0 or gpus < 0:
        raise ConfigError("resources", f"expected cpu > 0 and gpu >= 0, got {cpus}, {gpus}", source)
    concurrent = _number(raw.get("max_concurrent_trials", 1), "max_concurrent_trials", source, integer=True)
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise ConfigError("seeds", f"expected a list of non-negative integers, got {seeds!r}", source)
    if concurrent < 1:
        raise ConfigError("max_concurrent_trials", f"expected >= 1, got {concurrent}", source)
    design = raw.get("design", "grid")
    if design not in DESIGNS:
        raise ConfigError("design", f"expected one of {list(DESIGNS)}, got {design!r}", source)
    return SearchSpace(name=str(raw.get("name", Path(source).stem)), source=source, metric=metric, mode=mode,
                       num_samples=num_samples, params=params, fixed=fixed, scheduler=kind, grace_period=grace,
                       reduction_factor=reduction, sampler=sampler, sampler_seed=seed, startup_trials=startup,
                       cpus_per_trial=float(cpus),
                       gpus_per_trial=float(gpus), max_concurrent_trials=concurrent, seeds=tuple(seeds),
                       design=design)


# YAML 1.2 floats: PyYAML follows YAML 1.1, where `1e-3` (no dot) is a string, and a search space
# written as `low: 1e-3` would be refused as "expected a number".
_FLOAT_1_2 = re.compile(r"^[-+]?(?:\d[\d_]*(?:\.\d*)?|\.\d+)[eE][-+]?\d+$")


def _yaml_loader():
    """A ``yaml.SafeLoader`` that also reads YAML 1.2 floats such as ``1e-3`` as numbers."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_1_2, list("-+0123456789."))
    return Loader


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a search-space YAML file."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.load(path.read_text(), Loader=_yaml_loader())  # noqa: S506 (a SafeLoader subclass)
    except OSError as e:
        raise ConfigError("--space", f"cannot read it ({e.strerror})", str(path)) from None
    except yaml.YAMLError as e:
        raise ConfigError("--space", f"not valid YAML ({str(e).splitlines()[0]})", str(path)) from None
    return parse_space(raw, str(path))


def to_tune(space: SearchSpace) -> dict[str, Any]:
    """Ray Tune sampling objects for the searched parameters (fixed values passed through)."""
    from ray import tune

    out: dict[str, Any] = dict(space.fixed)
    for p in space.params:
        if p.distribution == "uniform":
            out[p.name] = tune.uniform(p.low, p.high)
        elif p.distribution == "loguniform":
            out[p.name] = tune.loguniform(p.low, p.high)
        elif p.distribution == "int":
            out[p.name] = tune.randint(int(p.low), int(p.high) + 1)   # randint's upper bound is exclusive
        else:
            out[p.name] = tune.choice(list(p.values))
    return out
