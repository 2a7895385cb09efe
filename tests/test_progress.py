"""Progress: a bar on a terminal, whole lines without carriage returns in a log (Ray workers and jobs)."""

from __future__ import annotations

import io

import pytest

from uda3d.data.validate import validate_root
from uda3d.progress import LineProgress, is_terminal, progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_one_line_per_ten_percent_and_no_carriage_return():
    log = io.StringIO()
    assert list(progress(range(100), desc="load", unit="subject", stream=log)) == list(range(100))
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("load: 10/100 subject (10%)") and lines[-1].startswith("load: 100/100 subject (100%)")


def test_an_epoch_loop_gets_one_line_per_epoch_even_without_a_length():
    log = io.StringIO()
    for epoch in range(1, 4):
        for _ in progress((b for b in range(7)), desc=f"epoch {epoch}/3", every_percent=100, stream=log):
            pass
    assert log.getvalue().splitlines() == [line for line in log.getvalue().splitlines() if " 7 it, " in line]
    assert [line.split(":")[0] for line in log.getvalue().splitlines()] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]


def test_update_and_close_write_the_final_count_once():
    log = io.StringIO()
    with progress(total=3, desc="synthesize", unit="subject", stream=log, every_percent=50) as bar:
        for _ in range(3):
            bar.update(1)
    assert [line.split(",")[0] for line in log.getvalue().splitlines()] == [
        "synthesize: 2/3 subject (67%)", "synthesize: 3/3 subject (100%)"]


def test_fewer_items_than_steps_give_one_line_each_at_most():
    log = io.StringIO()
    list(progress(range(3), stream=log))
    assert len(log.getvalue().splitlines()) == 3


def test_disable_writes_nothing_and_a_terminal_gets_tqdm():
    log = io.StringIO()
    assert list(progress(range(5), stream=log, disable=True)) == list(range(5))
    assert log.getvalue() == ""
    bar = progress(range(5), stream=Terminal(), desc="x")
    assert type(bar).__name__ == "tqdm"
    bar.close()
    assert is_terminal(Terminal()) and not is_terminal(io.StringIO())


def test_every_percent_is_checked():
    with pytest.raises(ValueError, match="every_percent"):
        LineProgress(range(3), every_percent=0)


def test_a_captured_library_run_prints_no_carriage_return(tiny_cohort, capsys):
    validate_root(tiny_cohort, progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith("validate:")]
    assert 1 <= len(lines) <= 10 and "(100%)" in lines[-1]
