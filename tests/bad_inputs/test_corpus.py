"""Every case of the bad-input corpus through the real CLI: exit code 2, one line naming the file or
field and what was expected, no traceback, and nothing written."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.bad_inputs.corpus import CASES, Case
from uda3d.cli import main

# validate-data reports every problem on its own line, then how many there were.
COUNT_LINE = re.compile(r".*: \d+ problem\(s\)$")


def _snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:  # argparse rejects an option by exiting
        return int(exit_.code)


def test_the_corpus_is_wide_enough():
    assert len(CASES) >= 15 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(case: Case, tiny_cohort, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default output folder would land here and be seen
    ws = tmp_path / "ws"
    shutil.copytree(tiny_cohort, ws / "root")
    argv, named = case.build(ws)
    before = _snapshot(tmp_path)

    code = _run(argv)
    out, err = capsys.readouterr()

    assert code == 2, (out, err)
    lines = [line for line in err.strip().splitlines() if not COUNT_LINE.match(line)]
    assert len(lines) == 1, err
    [line] = lines
    assert named in line, (named, line)
    assert re.search(case.expect, line), (case.expect, line)
    assert "Traceback" not in err
    assert _snapshot(tmp_path) == before  # nothing created, nothing removed
