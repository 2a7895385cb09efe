"""Search spaces: the shipped ones load; bad ones are rejected before any trial, naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from uda3d.errors import ConfigError
from uda3d.tuning.space import load_space, to_tune

SPACES = Path(__file__).resolve().parents[2] / "search_spaces"


@pytest.mark.parametrize("name", ["adaptation", "data_amount", "sensitivity"])
def test_shipped_spaces_load_and_convert(name):
    space = load_space(SPACES / f"{name}.yaml")
    tune_space = to_tune(space)
    assert {p.name for p in space.params} <= set(tune_space)
    assert space.num_samples >= 1 and space.mode in ("min", "max")


def test_adaptation_space_samples_inside_its_bounds():
    from ray.tune.search.sample import Domain

    space = load_space(SPACES / "adaptation.yaml")
    tune_space = to_tune(space)
    for p in space.params:
        domain = tune_space[p.name]
        assert isinstance(domain, Domain)
        draws = [domain.sample() for _ in range(200)]
        assert all(p.low <= d <= p.high for d in draws), p.name
    assert {d for d in (tune_space["target_subjects"].sample() for _ in range(400))} == {1, 2, 3, 4}


BAD = {
    "unknown parameter": ("params:\n  momentum: {type: uniform, low: 0, high: 1}\n",
                          r"params\.momentum: unknown parameter"),
    "low > high": ("params:\n  lr: {type: loguniform, low: 1.0e-3, high: 1.0e-5}\n", r"params\.lr\.low: low .* > high"),
    "ele_percent above 100": ("params:\n  ele_percent: {type: uniform, low: 10, high: 120}\n",
                              r"params\.ele_percent\.high: expected 0 < ele_percent <= 100"),
    "ele_percent zero": ("params:\n  ele_percent: {type: uniform, low: 0, high: 50}\n",
                         r"params\.ele_percent\.low: expected 0 < ele_percent <= 100"),
    "negative lr": ("params:\n  lr: {type: uniform, low: -1.0e-5, high: 1.0e-5}\n",
                    r"params\.lr\.low: expected 0 < lr < 1"),
    "unknown distribution": ("params:\n  lr: {type: normal, low: 0, high: 1}\n", r"params\.lr\.type: expected one of"),
    "unknown top key": ("paramz: {}\n", r"paramz: unknown key"),
    "bad mode": ("mode: lowest\nparams:\n  lr: {type: choice, values: [1.0e-5]}\n", r"mode: expected one of"),
    "bad choice": ("params:\n  target_subjects: {type: choice, values: [0, 2]}\n",
                   r"params\.target_subjects\.values: expected a positive integer"),
    "wrong type": ("params:\n  target_subjects: {type: int, low: one, high: 3}\n",
                   r"params\.target_subjects\.low: expected an integer"),
    "continuous draws for an integer": ("params:\n  target_subjects: {type: uniform, low: 1, high: 3}\n",
                                        r"params\.target_subjects\.low: expected int or null, got 1\.0"),
    "no start-up trials": ("search: {sampler: tpe, startup_trials: 0}\n"
                           "params:\n  lr: {type: choice, values: [1.0e-5]}\n",
                           r"search\.startup_trials: expected >= 1"),
    "section not a mapping": ("fixed: 5\nparams:\n  lr: {type: choice, values: [1.0e-5]}\n",
                              r"fixed: expected a mapping, got 5"),
    "number as a key": ("7: x\nparams:\n  lr: {type: choice, values: [1.0e-5]}\n", r"7: unknown key"),
    "number as a parameter": ("params:\n  3: {type: choice, values: [1]}\n", r"params\.3: unknown parameter"),
    "bad scheduler": ("scheduler: {type: asha, grace: 2}\nparams:\n  lr: {type: choice, values: [1.0e-5]}\n",
                      r"scheduler\.grace: unknown key"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_spaces_name_the_file_and_the_key(tmp_path, case):
    text, pattern = BAD[case]
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=pattern) as info:
        load_space(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_yaml_1_2_floats_such_as_1e_minus_3_are_numbers(tmp_path):
    """PyYAML reads `1e-3` (no dot) as a string; a search space means a number by it."""
    path = tmp_path / "space.yaml"
    path.write_text("fixed: {lr: 2e-6}\nparams:\n  lr: {type: loguniform, low: 1e-7, high: 1E-4}\n"
                    "  ele_percent: {type: uniform, low: 2.5e1, high: 1e2}\n")
    space = load_space(path)
    lr = next(p for p in space.params if p.name == "lr")
    ele = next(p for p in space.params if p.name == "ele_percent")
    assert (lr.low, lr.high, ele.low, ele.high) == (1e-7, 1e-4, 25.0, 100.0)
    assert space.fixed["lr"] == 2e-6


@pytest.mark.parametrize("metric, why", [("target_test_psnr", "is computed from target T1"),
                                         ("val_psnr", "is not a metric the trials report")])
def test_tune_refuses_a_metric_it_cannot_choose_by_without_labels(tmp_path, capsys, metric, why):
    from uda3d.cli import main

    space = tmp_path / "space.yaml"
    space.write_text(f"metric: {metric}\nmode: max\nparams:\n  lr: {{type: choice, values: [1.0e-5]}}\n")
    code = main(["tune", "--space", str(space), "--dataroot", str(tmp_path), "--backbone", str(tmp_path),
                 "--vae", str(tmp_path), "--workdir", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert code == 2 and f"{space}: metric: '{metric}' {why}" in err
    assert not (tmp_path / "w").exists()
