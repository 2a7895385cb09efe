"""Tables and reports as files: CSV (the standard library's ``csv``) and JSON, each written atomically.

One writer for every table the platform produces (trials, study points, run comparisons, method
comparisons, reports), so they share quoting, column order and the write-then-rename rule.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from uda3d.io.atomic import atomic_file


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> Path:
    """``rows`` as CSV; columns default to every key in first-seen order (keys outside ``columns`` are dropped)."""
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_file(path) as tmp:
        tmp.write_text(buffer.getvalue())
    return Path(path)


def write_json(path: str | Path, value: Any) -> Path:
    """``value`` as indented JSON; numbers that are not JSON types (numpy, tensors) go through ``float``."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(value, indent=2, default=_fallback) + "\n")
    return Path(path)


def _fallback(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)
