"""Progress reports that read well on a terminal and in a log file alike.

tqdm (the project's progress library) redraws its bar in place with carriage returns. On a terminal
that is what a person wants; in a file, which is where a Ray worker's or a Ray job's stderr goes
(and ``uda3d pipeline > log 2>&1``), every redraw piles onto one line, and tqdm writes ``\\r`` even
when it knows the stream is not a terminal. So ``progress`` gives a tqdm bar only when the stream is
a terminal, and otherwise a ``LineProgress``: one plain line each time another ``every_percent`` of
the total is done, or a single line at the end (an epoch's batch loop: one line per epoch). The line
mode is a few lines of our own rather than a logging handler so that it needs no logging set-up in
Ray workers, where the root logger drops INFO by default.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any, TypeVar

T = TypeVar("T")


def is_terminal(stream: IO[str]) -> bool:
    """Whether ``stream`` is an interactive terminal (a closed or odd stream counts as not)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class LineProgress:
    """Progress as whole lines, no carriage returns: ``desc: 30/100 subject (30%), 12.3 s``.

    Iterate over it like a tqdm bar, or call ``update``/``close`` (also usable as a context manager).

    Args:
        iterable: what to iterate over (optional when only ``update`` is used).
        desc: the line's prefix.
        total: the number of items; taken from ``len(iterable)`` when it has one.
        unit: the word after the count.
        every_percent: write a line each time the done share crosses a multiple of this; 100 writes one
            line when the loop ends. With no known total only the final line is written.
        stream: where lines go (default: ``sys.stderr`` at construction).
        disable: write nothing.
    """

    def __init__(self, iterable: Iterable[T] | None = None, desc: str = "", total: int | None = None,
                 unit: str = "it", every_percent: float = 10.0, stream: IO[str] | None = None,
                 disable: bool = False) -> None:
        if not 0 < every_percent <= 100:
            raise ValueError(f"every_percent: expected 0 < every_percent <= 100, got {every_percent}")
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.desc, self.total, self.unit = iterable, desc, total, unit
        self.every_percent, self.disable = every_percent, disable
        self.stream = stream if stream is not None else sys.stderr
        self.n = 0
        self._written_at = -1  # the count of the last line written
        self._step = 0  # how many every_percent steps have been reported
        self._start = time.monotonic()
        self._closed = False

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("LineProgress: nothing to iterate over; pass an iterable or use update()")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more items; write a line if that crosses the next ``every_percent`` step."""
        self.n += n
        if not self.total:
            return
        step = math.floor(100.0 * self.n / self.total / self.every_percent + 1e-9)
        if step > self._step:
            self._step = step
            self._write()

    def close(self) -> None:
        """Write the final count, unless the last line already gave it."""
        if not self._closed:
            self._closed = True
            if self.n != self._written_at:
                self._write()

    def _write(self) -> None:
        self._written_at = self.n
        if self.disable:
            return
        elapsed = time.monotonic() - self._start
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        share = f" ({100.0 * self.n / self.total:.0f}%)" if self.total else ""
        prefix = f"{self.desc}: " if self.desc else ""
        self.stream.write(f"{prefix}{count} {self.unit}{share}, {elapsed:.1f} s\n")
        self.stream.flush()


def progress(iterable: Iterable[T] | None = None, *, desc: str = "", total: int | None = None, unit: str = "it",
             every_percent: float = 10.0, leave: bool = True, disable: bool = False,
             stream: IO[str] | None = None) -> Any:
    """A tqdm bar on a terminal, plain lines (``LineProgress``) anywhere else.

    Args:
        iterable, desc, total, unit, disable: as tqdm's.
        every_percent: in line mode, a line per this share of the total (100: one line at the end, the
            right choice for an inner loop that runs once per epoch).
        leave: tqdm's ``leave`` (keep the finished bar); line mode always keeps its lines.
        stream: where to write (default ``sys.stderr``, looked up at call time so captures see it).

    Returns:
        Something to iterate over, or to ``update`` and ``close``, like a tqdm bar.
    """
    stream = stream if stream is not None else sys.stderr
    if is_terminal(stream):
        from tqdm import tqdm

        return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, disable=disable, file=stream)
    return LineProgress(iterable, desc=desc, total=total, unit=unit, every_percent=every_percent, stream=stream,
                        disable=disable)


__all__ = ["LineProgress", "is_terminal", "progress"]
