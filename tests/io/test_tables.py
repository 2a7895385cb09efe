"""Reports as strict JSON: NaN and infinities are written as null, so any JSON parser reads them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from uda3d.io.tables import strict_json, write_json


def _refuse(constant: str):
    raise ValueError(f"non-standard JSON constant {constant}")


def test_non_finite_numbers_become_null_and_the_file_is_strict_json(tmp_path):
    report = {"psnr": math.nan, "rho": np.float32("inf"), "ok": np.float64(1.5), "n": 3, "flag": True,
              "rows": [{"p": -math.inf}, (1, 2)], "path": tmp_path}
    path = write_json(tmp_path / "report.json", report)
    back = json.loads(path.read_text(), parse_constant=_refuse)
    assert back == {"psnr": None, "rho": None, "ok": 1.5, "n": 3, "flag": True, "rows": [{"p": None}, [1, 2]],
                    "path": str(tmp_path)}


def test_strict_json_keeps_finite_values():
    assert strict_json({"a": [0.25, "x", None]}) == {"a": [0.25, "x", None]}
    with pytest.raises(ValueError):
        json.loads('{"a": NaN}', parse_constant=_refuse)
