"""``main``: --debug/--quiet on either side of the command, the library's log on stdout, a light ``--help``."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from uda3d import cli
from uda3d.cli import build_parser, main


@pytest.mark.parametrize("argv", [["--quiet", "--debug", "demo"], ["demo", "--quiet", "--debug"],
                                  ["--quiet", "demo", "--debug"]])
def test_debug_and_quiet_work_before_or_after_the_command(argv):
    args = build_parser(lazy=True).parse_args(argv)
    assert args.quiet and args.debug


def test_debug_and_quiet_are_off_unless_given():
    args = build_parser(lazy=True).parse_args(["demo"])
    assert not args.quiet and not args.debug


def test_debug_after_the_command_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="no split folders"):
        main(["validate-data", str(tmp_path), "--debug"])


def test_the_library_log_is_plain_lines_on_stdout_and_warnings_go_to_stderr(monkeypatch, capsys, tmp_path):
    def narrate(args) -> int:
        logging.getLogger("uda3d.demo").info("[1/5] cohort")
        logging.getLogger("uda3d.pipeline").warning("a GPU was asked for")
        logging.getLogger("uda3d.pipeline").debug("only with --debug")
        return 0

    monkeypatch.setattr(cli, "cmd_validate_data", narrate)
    for _ in range(3):  # tests call main many times in one process: no handler is added twice
        assert main(["validate-data", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["[1/5] cohort"] * 3
    assert err.splitlines() == ["WARNING uda3d.pipeline: a GPU was asked for"] * 3
    assert sum(getattr(h, "uda3d_cli", False) for h in logging.getLogger("uda3d").handlers) == 2


def test_help_imports_no_heavy_library():
    code = ("import sys\nfrom uda3d.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'ray', 'mlflow') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"
    assert "COMMAND" in result.stdout and "train-backbone" in result.stdout
