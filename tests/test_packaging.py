"""A non-editable install carries what the commands read: the shipped search spaces (``uda3d study``, the demo)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_a_wheel_install_finds_the_shipped_search_spaces(tmp_path):
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(REPO)],
                   check=True, cwd=tmp_path)
    [wheel] = (tmp_path / "dist").glob("uda3d-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(tmp_path / "site"), str(wheel)], check=True)
    elsewhere = tmp_path / "elsewhere"  # no search_spaces/ in the working folder
    elsewhere.mkdir()
    code = ("import uda3d; from uda3d.tuning.study import shipped_space; from uda3d.tuning.space import load_space; "
            "print(uda3d.__file__); print(load_space(shipped_space('demo')).name, shipped_space('sensitivity'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(tmp_path / "site")}).stdout.splitlines()
    site = str(tmp_path / "site")
    assert out[0].startswith(site)  # the installed copy, not this checkout
    name, path = out[1].split(" ", 1)
    assert name == "demo" and path.startswith(site) and path.endswith("search_spaces/sensitivity.yaml")
