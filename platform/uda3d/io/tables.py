"""Tables and reports as files: CSV (the standard library's ``csv``) and JSON, each written atomically.

One writer for every table the platform produces (trials, study points, run comparisons, method
comparisons, reports), so they share quoting, column order and the write-then-rename rule.
"""

from __future__ import annotations

import csv
import io
import json
import math
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
    """``value`` as indented, strict JSON: NaN and infinities become ``null`` (strict parsers reject
    ``NaN``); numbers that are not JSON types (numpy, tensors) go through ``float``."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(strict_json(value), indent=2, allow_nan=False) + "\n")
    return Path(path)


def strict_json(value: Any) -> Any:
    """``value`` with non-finite floats as None, tuples as lists and other scalars as float or str."""
    if isinstance(value, Mapping):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if value is None or isinstance(value, (bool, str, int)):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return number if math.isfinite(number) else None
