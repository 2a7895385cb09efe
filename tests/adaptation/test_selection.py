"""The label-free selection signal: reproducible augmented copies, MAE against a hand computation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from uda3d.adaptation.selection import augmented_source_error, augmented_source_set


def _items():
    g = torch.Generator().manual_seed(0)
    items = []
    for i in range(2):
        x = torch.rand(2, 12, 12, 12, generator=g)
        x[:, :3] = 0
        mask = (x > 0).any(0)
        items.append({"id": f"s{i}", "input": x, "target": (torch.rand(1, 12, 12, 12, generator=g) * mask),
                      "mask": mask[None]})
    return items


class ChannelMean(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.scale * x.mean(1, keepdim=True)


def test_augmented_set_is_seeded_and_leaves_targets_alone():
    items = _items()
    a, b = augmented_source_set(items, copies=2, seed=3), augmented_source_set(items, copies=2, seed=3)
    c = augmented_source_set(items, copies=2, seed=4)
    assert len(a.inputs) == 4
    assert all(torch.equal(x, y) for x, y in zip(a.inputs, b.inputs))
    assert not all(torch.equal(x, y) for x, y in zip(a.inputs, c.inputs))
    assert torch.equal(a.targets[0], items[0]["target"][0]) and torch.equal(a.targets[3], items[1]["target"][0])
    assert not torch.equal(a.inputs[0], items[0]["input"])
    with pytest.raises(ValueError):
        augmented_source_set(items, copies=0)


def test_augmented_source_error_is_the_brain_mae():
    data = augmented_source_set(_items(), copies=1, seed=1)
    model = ChannelMean()
    expected = sum(float((x.mean(0) - y)[m].abs().mean()) for x, y, m in zip(data.inputs, data.targets, data.masks))
    assert augmented_source_error(model, data) == pytest.approx(expected / len(data.inputs), rel=1e-5)


def test_choose_by_source_psnr_takes_the_highest_and_names_the_others():
    from uda3d.adaptation.selection import CandidateScore, choose_by_source_psnr

    scores = [CandidateScore("plain", 0.10, 20.0), CandidateScore("robust", 0.05, 19.5),
              CandidateScore("ttt_joint", 0.09, 20.4)]
    name, reason = choose_by_source_psnr(scores)
    assert name == "ttt_joint" and "20.40" in reason and "plain 20.00" in reason and "robust 19.50" in reason


def test_kspace_perturbation_is_held_out_reproducible_and_keeps_the_background():
    from uda3d.adaptation.selection import kspace_perturb, kspace_source_set

    x = torch.zeros(2, 24, 24, 24)
    x[:, 4:20, 4:20, 4:20] = torch.rand(2, 16, 16, 16) * 0.9 + 0.1
    a = kspace_perturb(x, torch.Generator().manual_seed(0))
    b = kspace_perturb(x, torch.Generator().manual_seed(0))
    c = kspace_perturb(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float((a - x).abs().mean()) > 0.01                 # it changes the image
    assert float(a[:, :4].abs().max()) == 0.0                  # background stays zero
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0      # rescaled into [0, 1] inside the brain
    items = [{"input": x, "target": x[:1], "mask": (x[:1] > 0)}]
    assert len(kspace_source_set(items, copies=3).inputs) == 3
