"""Every command lists the options it listed when recorded: a refactor of the CLI changes no flag by accident.

``options.json`` was written from the parser before the CLI was generated from the configs; a flag
added or removed on purpose is added to or removed from it in the same commit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from uda3d.cli import build_parser

RECORDED = json.loads((Path(__file__).parent / "options.json").read_text())


def _options(parser) -> list[str]:
    names = []
    for action in parser._actions:
        if action.option_strings:
            names.extend(action.option_strings)
        elif action.dest not in ("command", "help") and action.nargs != 0:
            names.append(action.dest)  # a positional, by its name
    return sorted(names)


def _parsers() -> dict[str, object]:
    parser = build_parser()
    return {"": parser, **parser.command_parsers}


def test_the_same_commands_as_recorded():
    assert sorted(_parsers()) == sorted(RECORDED)


@pytest.mark.parametrize("command", sorted(RECORDED))
def test_each_command_lists_the_recorded_options(command):
    assert _options(_parsers()[command]) == RECORDED[command]
