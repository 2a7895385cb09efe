"""The fair protocol's pieces in compare-methods: the control's budget, the target sites sharing one
source, target batches without T1, the label-free pick, and signal eligibility."""

from __future__ import annotations

import math

import pytest
import torch

from uda3d.compare.methods import control_epochs, load_sites, pick_uda, signal_validity
from uda3d.compare.table import MethodResult
from uda3d.config import CANDIDATES, CompareConfig, SelfTrainConfig, TTTConfig
from uda3d.data.in_memory import Data
from uda3d.errors import ConfigError, DataError


def _config(**changes) -> CompareConfig:
    return CompareConfig(**{"dataroot": "x", "workdir": "w", **changes})


def test_control_epochs_add_the_largest_source_step_count_of_the_target_side_methods():
    config = _config(finetune_epochs=20, ttt=TTTConfig(epochs=4), self_train=SelfTrainConfig(epochs=5, rounds=2))
    # self-training: 5 x 2 x 6 target volumes = 60 source steps = 10 epochs of 6 source volumes
    assert control_epochs(config, n_source=6, n_target=6) == 30
    assert control_epochs(config, n_source=4, n_target=6) == 20 + math.ceil(60 / 4)
    only_source = _config(finetune_epochs=20, methods=("robust", "robust_spatial", "ttt_joint", "ttt_subject"))
    assert control_epochs(only_source, 6, 6) == 20   # per-subject TTT takes no source step
    no_anchor = _config(finetune_epochs=20, methods=("ttt_site",), ttt=TTTConfig(epochs=4, source_step=False))
    assert control_epochs(no_anchor, 6, 6) == 20


def test_config_rejects_unknown_methods_and_signals():
    with pytest.raises(ConfigError, match="--methods"):
        _config(methods=("robust", "magic"))
    with pytest.raises(ConfigError, match="--methods"):
        _config(methods=("source_ft",))            # a reference, always run
    with pytest.raises(ConfigError, match="--selection-signal"):
        _config(selection_signal="target_psnr")


def test_unlabelled_batches_carry_no_target_t1():
    item = {"id": "s", "input": torch.zeros(2, 8, 8, 8), "mask": torch.ones(1, 8, 8, 8),
            "target": torch.ones(1, 8, 8, 8)}
    data = Data({"domain2_train": [item]})
    [batch] = data.unlabelled("domain2_train")
    assert "target" not in batch and batch["input"].shape == (1, 2, 8, 8, 8)
    assert "target" in data.batches("domain2_train")[0]   # scoring still sees it


def test_extra_target_sites_must_share_the_source_splits(tiny_cohort, tmp_path):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(tiny_cohort, other)
    victim = sorted((other / "domain1_train").iterdir())[0]
    shutil.move(victim, other / "domain1_val" / victim.name)   # another source split than --dataroot's
    with pytest.raises(DataError, match="must share the source splits"):
        load_sites(_config(dataroot=str(tiny_cohort), workdir=str(tmp_path / "w"), extra_dataroots=(str(other),)))
    same = tmp_path / "same"
    shutil.copytree(tiny_cohort, same)
    sites = load_sites(_config(dataroot=str(tiny_cohort), workdir=str(tmp_path / "w"), extra_dataroots=(str(same),)))
    assert list(sites) == [tiny_cohort.name, "same"]


def _result(method: str, seed: int, source_val: float, signals: dict[str, float], target_psnr: float) -> MethodResult:
    return MethodResult(method, seed, {"t": {"psnr": target_psnr}}, {"s": {"psnr": 20.0}}, source_val,
                        {"source_val_psnr": source_val, **signals})


def test_pick_uda_follows_the_signal_within_the_source_guard_and_never_reads_target_scores():
    results = [_result("no_adaptation", 0, 20.0, {"kspace_source_mae": 0.10}, 18.0),
               _result("robust", 0, 19.8, {"kspace_source_mae": 0.08}, 10.0),      # target score ignored
               _result("ttt_site", 0, 19.0, {"kspace_source_mae": 0.05}, 30.0),    # breaks the 0.5 dB guard
               _result("supervised", 0, 19.0, {"kspace_source_mae": 0.01}, 40.0),  # never a candidate
               _result("source_ft", 0, 25.0, {"kspace_source_mae": 0.01}, 40.0)]   # the control: never either
    [pick] = pick_uda(results, _config(signal_usable=True, selection_signal="kspace_source_mae"))
    assert pick["method"] == "robust"
    [pick] = pick_uda(results, _config())        # the default: the highest source-val PSNR
    assert pick["method"] == "no_adaptation" and "highest source_val_psnr" in pick["reason"]
    [fallback] = pick_uda(results, _config(signal_usable=False, fallback_method="ttt_site"))
    assert fallback["method"] == "ttt_site" and "fallback" in fallback["reason"]


def test_signal_validity_rejects_a_signal_built_from_a_candidates_training_transforms():
    records = [{"site": "a", "method": m, "seed": s, "oracle_psnr": 18.0 + i + s,
                "aug_source_mae": 0.1 - 0.01 * i, "kspace_source_mae": 0.1 - 0.01 * i, "source_val_psnr": 20.0 + i}
               for i, m in enumerate(("no_adaptation", "source_ft", "robust")) for s in range(2)]
    result = signal_validity(records, _config())
    assert not result["aug_source_mae"]["eligible"] and not result["aug_source_mae"]["usable"]
    assert result["aug_source_mae"]["excluded_by"] == ["robust"]
    assert result["kspace_source_mae"]["eligible"] and result["kspace_source_mae"]["usable"]
    assert result["kspace_source_mae"]["rho_oriented"] > 0.6
    assert math.isnan(result["held_out_aux_loss"]["rho"])            # no TTT model in the records
    assert CANDIDATES["robust"] >= {"intensity"}


def test_a_selection_signal_built_from_a_candidates_training_perturbations_is_refused_before_any_training():
    with pytest.raises(ConfigError, match="'aug_source_mae'.*intensity.*'robust'"):
        _config(selection_signal="aug_source_mae")
    _config(selection_signal="aug_source_mae", methods=("ttt_joint", "kl"))     # no candidate trained on it
    _config(selection_signal="aug_source_mae", signal_usable=False)             # not used to pick: allowed
