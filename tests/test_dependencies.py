"""Dependency bounds: lower bounds from use, upper bounds only for a named break, and one tested set."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from uda3d.cohort import anatomy
from uda3d.errors import ConfigError

tomllib = pytest.importorskip("tomllib")  # Python 3.11+, what CI runs

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = REPO / "pyproject.toml"


def _dependencies() -> list[Requirement]:
    return [Requirement(r) for r in tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]]


def _dependency_comments() -> dict[str, str]:
    """Each requirement string of ``dependencies`` with the comment on its line and the comment lines after it."""
    block = re.search(r"^dependencies = \[\n(.*?)^\]", PYPROJECT.read_text(), re.S | re.M).group(1)
    comments: dict[str, str] = {}
    current = None
    for line in block.splitlines():
        quoted = re.match(r'\s*"([^"]+)",?\s*(?:#(.*))?$', line)
        if quoted:
            current = quoted.group(1)
            comments[current] = quoted.group(2) or ""
        elif current and re.match(r"\s{20,}#", line):  # a comment continued under the previous one
            comments[current] += " " + line.split("#", 1)[1]
        else:
            current = None
    return comments


def test_every_upper_bound_or_exclusion_names_its_break():
    comments = _dependency_comments()
    assert len(comments) == len(_dependencies())
    for requirement, comment in comments.items():
        capped = any(s.operator in ("<", "<=", "!=", "==", "~=") for s in Requirement(requirement).specifier)
        if capped:
            assert "break" in comment, f"{requirement}: an upper bound without the break it avoids"


def test_the_pins_that_blocked_other_toolkits_are_gone():
    specs = {r.name: r.specifier for r in _dependencies()}
    for name in ("torch", "ray", "pyarrow", "monai", "nibabel", "numpy", "optuna", "nilearn"):
        assert not any(s.operator in ("<", "<=") for s in specs[name]), name
    assert "3.18.0" not in specs["mlflow"] and "3.17.2" in specs["mlflow"] and "3.19.0" in specs["mlflow"]
    assert "2.15.0" in specs["torch"] and "2.61.0" in specs["ray"] and "26.0.1" in specs["pyarrow"]


def test_the_tested_set_satisfies_the_bounds():
    """cluster/requirements-cluster.txt (the versions the tests passed with) and the README's torch pin."""
    specs = {r.name.lower(): r for r in _dependencies()}
    pins = {}
    for line in (REPO / "cluster" / "requirements-cluster.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            requirement = Requirement(line)
            pins[requirement.name.lower()] = next(iter(requirement.specifier)).version
    assert {"torch", "ray", "mlflow", "pyarrow", "monai", "nibabel", "nilearn", "optuna"} <= set(pins)
    for name, version in pins.items():
        if name in specs:
            assert version in specs[name].specifier, f"{name}=={version} outside {specs[name]}"
    assert pins["torch"] == "2.13.0"
    assert "torch==2.13.0" in (REPO / "README.md").read_text()


def test_ray_data_is_asked_for_because_the_slice_store_uses_it():
    ray = next(r for r in _dependencies() if r.name == "ray")
    assert {"data", "default", "train", "tune"} <= ray.extras


def test_a_missing_nilearn_says_what_to_install(monkeypatch):
    anatomy.mni_templates.cache_clear()
    monkeypatch.setitem(sys.modules, "nilearn.datasets", None)  # import of it now raises ImportError
    try:
        with pytest.raises(ConfigError, match=r"nilearn: cannot be imported .*pip install 'nilearn>=0\.14'"):
            anatomy.mni_templates(2)
    finally:
        anatomy.mni_templates.cache_clear()
