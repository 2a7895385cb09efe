"""Flags generated from a config dataclass: name, type, default and help from the field; the config built back."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from uda3d.cli_flags import add_fields, config_from, field_help
from uda3d.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Toy:
    """A config as the library writes them.

    Attributes:
        width: channels of the first layer,
            continued on a second line.
        lr, momentum: the optimiser's settings.
        augment: flip the inputs. Evidence for it lives elsewhere.
    """

    width: int = 8
    lr: float = 1e-3
    momentum: float = 0.9
    augment: bool = True
    amp: bool = False
    shape: tuple[int, int, int] = (4, 4, 4)
    names: tuple[str, ...] = ("a",)
    limit: int | None = None   # stop after this many steps
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.lr < 1:
            raise ConfigError("lr", f"expected 0 < lr < 1, got {self.lr}")


def _parser(**kwargs) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_fields(parser, Toy, **kwargs)
    return parser


def test_help_is_the_attribute_entry_or_the_comment_and_its_first_sentence():
    helps = field_help(Toy)
    assert helps["width"] == "channels of the first layer, continued on a second line."
    assert helps["lr"] == helps["momentum"] == "the optimiser's settings."
    assert helps["augment"] == "flip the inputs."
    assert helps["limit"] == "stop after this many steps"
    assert "seed" not in helps


def test_each_field_becomes_a_flag_with_its_type_and_default():
    parser = _parser()
    actions = {a.option_strings[0]: a for a in parser._actions if a.option_strings}
    assert set(actions) == {"-h", "--width", "--lr", "--momentum", "--no-augment", "--amp", "--shape", "--names",
                            "--limit", "--seed"}
    assert actions["--width"].default == 8 and actions["--shape"].nargs == 3 and actions["--names"].nargs == "+"
    assert actions["--width"].help == "channels of the first layer, continued on a second line. (default: %(default)s)"
    assert "(default: 8)" in parser.format_help()
    assert config_from(parser.parse_args([]), Toy) == Toy()
    args = parser.parse_args(["--width", "16", "--no-augment", "--amp", "--shape", "8", "8", "8", "--limit", "3"])
    assert config_from(args, Toy) == Toy(width=16, augment=False, amp=True, shape=(8, 8, 8), limit=3)


@pytest.mark.parametrize("argv", [["--width", "0"], ["--seed", "-1"], ["--width", "two"]])
def test_counts_are_positive_and_seeds_non_negative(argv):
    with pytest.raises(argparse.ArgumentError, match="expected a (positive|non-negative) integer"):
        _parser().parse_args(argv)


def test_prefix_names_and_errors_name_the_flag_typed():
    parser = _parser(fields=("width", "lr"), prefix="toy-", flags={"width": "--toy-channels"})
    args = parser.parse_args(["--toy-channels", "2", "--toy-lr", "5"])
    with pytest.raises(ConfigError, match=r"^--toy-lr: expected 0 < lr < 1, got 5"):
        config_from(args, Toy)
    assert config_from(parser.parse_args(["--toy-channels", "2"]), Toy, seed=3) == Toy(width=2, seed=3)


def test_a_second_call_for_the_same_config_adds_to_its_fields():
    parser = argparse.ArgumentParser()
    add_fields(parser, Toy, fields=("width",))
    add_fields(parser.add_argument_group("more"), Toy, fields=("amp",))
    assert config_from(parser.parse_args(["--amp", "--width", "3"]), Toy) == Toy(width=3, amp=True)
