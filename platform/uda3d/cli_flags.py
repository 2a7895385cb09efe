"""Command-line flags generated from the config dataclasses, and the configs built back from them.

``add_fields`` adds a dataclass's fields as flags: the name from the field's (``n_layers_d`` ->
``--n-layers-d``, or an explicit one where a command names it otherwise, as ``--adapt-lr`` for
``AdaptConfig.lr``), the type and default from the field, the help from the class docstring's
``Attributes:`` entry or the field's trailing comment, defaults shown. ``config_from`` builds the
dataclass back from the parsed flags, and an error it raises names the flag the value came from.
Only ``argparse`` and the standard library are imported here: ``uda3d --help`` stays instant.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import inspect
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from uda3d.config import CROPS, NORMALISATIONS, PreprocessConfig, ScalingOptions, TrackingConfig
from uda3d.errors import ConfigError


def int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``, with a message that says which kind was expected."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


positive_int = int_at_least(1, "a positive integer")
non_negative_int = int_at_least(0, "a non-negative integer")


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


@functools.cache
def field_help(cls: type) -> dict[str, str]:
    """Each field's help: its ``Attributes:`` entry in the class docstring, else its trailing ``# comment``."""
    helps: dict[str, str] = {}
    doc = inspect.getdoc(cls) or ""
    section = re.search(r"^Attributes:\n((?:[ \t]+\S.*\n?)+)", doc, re.M)
    names: list[str] = []
    for line in section.group(1).splitlines() if section else []:
        entry = re.match(r"^ {4}(\w+(?:, \w+)*): (.*)", line)
        if entry:
            names = entry.group(1).split(", ")
            helps.update(dict.fromkeys(names, entry.group(2).strip()))
        else:
            for name in names:
                helps[name] += " " + line.strip()
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        source = ""
    for comment in re.finditer(r"^ +(\w+): [^#\n]*#\s*(.+)$", source, re.M):
        helps.setdefault(comment.group(1), comment.group(2).strip())
    # the first sentence: the rest of a docstring (evidence, references) is for readers of the code
    return {name: re.split(r"(?<=\.) (?=[A-Z])", text.replace("``", ""))[0] for name, text in helps.items()}


def _unwrap_optional(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        others = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(others) == 1:
            return others[0]
    return hint


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


def add_fields(p: argparse._ActionsContainer, cls: type, *, fields: tuple[str, ...] | None = None,
               exclude: tuple[str, ...] = (), prefix: str = "", flags: Mapping[str, str] | None = None,
               types_: Mapping[str, Callable[[str], Any]] | None = None,
               choices: Mapping[str, tuple[str, ...]] | None = None, defaults: Mapping[str, Any] | None = None,
               helps: Mapping[str, str] | None = None, metavars: Mapping[str, Any] | None = None,
               key: str | None = None) -> None:
    """Add the fields of the dataclass ``cls`` to ``p`` as flags; ``config_from(args, cls, key)`` builds it back.

    Args:
        p: a parser or an argument group.
        cls: the config dataclass.
        fields: only these fields, in this order (default: every field not in ``exclude``).
        exclude: fields left out (nested configs, fields no command sets).
        prefix: put before each flag name (``backbone-`` gives ``--backbone-lr``), unless ``flags`` names it.
        flags: explicit flag names by field (``{"shape": "--crop-shape"}``).
        types_: argparse types by field (default: ``int`` fields take a positive integer, ``seed`` a
            non-negative one, other scalars their own type).
        choices, defaults, helps, metavars: by field, instead of what the field says.
        key: where the field -> flag map is kept (default the class name; calls with the same key add
            up); two configs of one class in one command need two keys.

    A ``bool`` field that defaults to ``False`` is a ``--name`` switch; one that defaults to ``True`` a
    ``--no-name`` one. Tuples take ``nargs`` values (their length, or ``+``).
    """
    flags, types_, choices = dict(flags or {}), dict(types_ or {}), dict(choices or {})
    defaults, helps, metavars = dict(defaults or {}), dict(helps or {}), dict(metavars or {})
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    docs = field_help(cls)
    made: dict[str, tuple[str, str]] = {}
    for name in fields or [n for n in by_name if n not in exclude]:
        hint = _unwrap_optional(hints[name])
        default = defaults.get(name, _default(by_name[name]))
        flag = flags.get(name, f"--{prefix}{name}".replace("_", "-"))
        text = helps.get(name, docs.get(name, "")).replace("%", "%%")  # argparse formats help with %
        kwargs: dict[str, Any] = {}
        if hint is bool:
            if default:
                flag = flags.get(name, f"--no-{prefix}{name}".replace("_", "-"))
            kwargs["action"] = "store_false" if default else "store_true"
        else:
            element = hint
            if typing.get_origin(hint) is tuple:
                args = typing.get_args(hint)
                element = args[0]
                kwargs["nargs"] = "+" if len(args) == 2 and args[1] is Ellipsis else len(args)
            if name in types_:
                kwargs["type"] = types_[name]
            elif element is int:
                kwargs["type"] = non_negative_int if name == "seed" else positive_int
            elif element in (float, Path):
                kwargs["type"] = element
            if name in choices:
                kwargs["choices"] = choices[name]
            if name in metavars:
                kwargs["metavar"] = metavars[name]
            text = text if "(default" in text else f"{text} (default: %(default)s)".lstrip()
        # a --no-x switch keeps the field's value (x), so its dest is the field's name
        dest = (f"{prefix}{name}" if kwargs.get("action") == "store_false" else flag[2:]).replace("-", "_")
        p.add_argument(flag, dest=dest, default=default, help=text, **kwargs)
        made[name] = (dest, flag)
    key = f"_fields_{key or cls.__name__}"  # a second call for the same class adds to the first's fields
    p.set_defaults(**{key: {**(p.get_default(key) or {}), **made}})


@contextlib.contextmanager
def flag_names(names: Mapping[str, str]) -> Iterator[None]:
    """Name the flag a config value came from: ``shape: ...`` becomes ``--crop-shape: ...``.

    Configs check their fields by their own names; where a command's flag has another name (or one
    config field has several flags, as ``lr`` in the pipeline), the error names the flag typed.
    """
    try:
        yield
    except ConfigError as exc:
        if exc.source is None and exc.field in names:
            raise ConfigError(names[exc.field], exc.problem) from None
        raise


def config_from(args: argparse.Namespace, cls: type, key: str | None = None, **extra: Any) -> Any:
    """The dataclass ``cls`` from the flags ``add_fields`` added (lists become tuples) and ``extra`` values."""
    made: dict[str, tuple[str, str]] = getattr(args, f"_fields_{key or cls.__name__}")
    values = {name: getattr(args, dest) for name, (dest, _) in made.items()}
    values = {name: tuple(v) if isinstance(v, list) else v for name, v in values.items()}
    with flag_names({name: flag for name, (_, flag) in made.items()}):
        return cls(**{**values, **extra})


# --- option groups shared by several commands ----------------------------------------------------

def add_tracking_options(p: argparse._ActionsContainer, suppress_off: bool = False,
                         experiment_help: str = "MLflow experiment") -> None:
    """MLflow: experiment, tracking URI and the switch that turns tracking off (``suppress_off``: hidden)."""
    p.add_argument("--experiment", default="uda3d", help=experiment_help)
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///WORKDIR/mlflow.db)")
    p.add_argument("--no-tracking", action="store_true",
                   help=argparse.SUPPRESS if suppress_off else "do not record the run in MLflow")


def tracking_from(args: argparse.Namespace):
    """The ``TrackingConfig`` of ``add_tracking_options``' flags (``--workdir`` holds the default store)."""
    from uda3d.tracking import resolve_tracking

    if args.no_tracking:
        return TrackingConfig(uri=None)
    return resolve_tracking(args.workdir, args.experiment, args.tracking_uri)


def add_run_options(p: argparse.ArgumentParser, default_name: str) -> None:
    """One Ray Train stage's run: where it writes, its name, resuming, and MLflow."""
    g = p.add_argument_group("run")
    g.add_argument("--workdir", type=Path, default=Path("uda3d-runs"),
                   help="cache, Ray results and the default MLflow store (sqlite) live here")
    g.add_argument("--run-name", default=default_name, help=f"Ray/MLflow run name (default {default_name})")
    g.add_argument("--resume", action="store_true", help="continue the run of this name from its last checkpoint")
    add_tracking_options(g)
    g.add_argument("--verbose", action="store_true", help="show Ray Train's own per-report logs")


def add_preprocess_options(p: argparse.ArgumentParser, stored: bool = False) -> None:
    """Crop and normalisation flags; ``stored``: a checkpoint's own preprocessing is the default."""
    names = ("shape", "normalisation", "crop", "spacing")
    add_fields(p, PreprocessConfig, fields=names, flags={"shape": "--crop-shape"},
               types_={"spacing": positive_float}, choices={"normalisation": NORMALISATIONS, "crop": CROPS},
               metavars={"shape": ("D", "H", "W"), "spacing": ("MM", "MM", "MM")},
               defaults=dict.fromkeys(names) if stored else None,
               helps={n: f"{field_help(PreprocessConfig)[n]} (default: the checkpoint's)" for n in names}
               if stored else None)


def add_scaling_options(p: argparse.ArgumentParser) -> None:
    add_fields(p.add_argument_group("Ray"), ScalingOptions, types_={"max_failures": int})
