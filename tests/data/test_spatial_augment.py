"""Spatial augmentation: one draw warps every input channel and the T1 target alike, repeatably."""

from __future__ import annotations

import pytest
import torch

from uda3d.config import BackboneConfig, SpatialAugmentConfig, from_dict
from uda3d.data.spatial_augment import spatial_augment
from uda3d.errors import ConfigError
from uda3d.training.pix2pix import Pix2PixTrainer, fit_backbone

SHAPE = (24, 24, 24)
BLOB = (slice(5, 8), slice(14, 17), slice(9, 12))  # off-centre, so a rotation moves it
ALWAYS = SpatialAugmentConfig(probability=1.0, rotate_deg=25.0)


def _pair() -> tuple[torch.Tensor, torch.Tensor]:
    inputs, target = torch.zeros(2, *SHAPE), torch.zeros(1, *SHAPE)
    inputs[0][BLOB], inputs[1][BLOB], target[0][BLOB] = 1.0, 0.5, 0.8
    return inputs, target


def _centroid(volume: torch.Tensor) -> torch.Tensor:
    grid = torch.stack(torch.meshgrid(*[torch.arange(s, dtype=torch.float64) for s in volume.shape], indexing="ij"))
    v = volume.double()
    return (grid * v).flatten(1).sum(1) / v.sum()


@pytest.mark.parametrize("elastic", [False, True])
def test_landmark_lands_at_the_same_place_in_every_channel_and_the_target(elastic):
    inputs, target = _pair()
    config = SpatialAugmentConfig(probability=1.0, rotate_deg=25.0, elastic=elastic)
    out_x, out_y = spatial_augment(inputs, target, torch.Generator().manual_seed(0), config)
    assert out_x.shape == inputs.shape and out_y.shape == target.shape
    assert out_x.dtype == inputs.dtype and out_y.dtype == target.dtype
    before = _centroid(target[0])
    where = _centroid(out_y[0])
    assert torch.linalg.norm(where - before) > 1.0  # it did move
    for c in range(out_x.shape[0]):
        torch.testing.assert_close(_centroid(out_x[c]), where, atol=1e-3, rtol=0)
        assert int(out_x[c].argmax()) == int(out_y[0].argmax())


def test_same_seed_repeats_and_another_seed_differs():
    inputs, target = _pair()
    a = spatial_augment(inputs, target, torch.Generator().manual_seed(5), ALWAYS)
    b = spatial_augment(inputs, target, torch.Generator().manual_seed(5), ALWAYS)
    c = spatial_augment(inputs, target, torch.Generator().manual_seed(6), ALWAYS)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[1], c[1])


def test_probability_zero_leaves_the_pair_unchanged_and_target_may_be_absent():
    inputs, target = _pair()
    x, y = spatial_augment(inputs, target, torch.Generator().manual_seed(1), SpatialAugmentConfig(probability=0.0))
    assert torch.equal(x, inputs) and torch.equal(y, target)
    x, y = spatial_augment(inputs, None, torch.Generator().manual_seed(1), ALWAYS)
    assert y is None and x.shape == inputs.shape and not torch.equal(x, inputs)


@pytest.mark.parametrize("kwargs,field", [
    ({"probability": -0.1}, "probability"),
    ({"probability": 1.5}, "probability"),
    ({"rotate_deg": -1.0}, "rotate_deg"),
    ({"scale": 1.0}, "scale"),
    ({"translate_vox": -2.0}, "translate_vox"),
    ({"elastic_sigma_low": 9.0}, "elastic_sigma"),
    ({"elastic_magnitude_low": -1.0}, "elastic_magnitude"),
    ({"rotate_deg": float("nan")}, "rotate_deg"),
    ({"elastic": "yes"}, "elastic"),
])
def test_bad_config_names_the_field(kwargs, field):
    with pytest.raises(ConfigError) as err:
        SpatialAugmentConfig(**kwargs)
    assert err.value.field == field


def test_backbone_config_reads_the_nested_spatial_config_from_a_dict():
    config = from_dict(BackboneConfig, {"spatial_augment": True, "spatial": {"probability": 1.0, "elastic": True}})
    assert config.spatial_augment and config.spatial == SpatialAugmentConfig(probability=1.0, elastic=True)
    assert BackboneConfig().spatial_augment is False
    with pytest.raises(ConfigError) as err:
        from_dict(BackboneConfig, {"spatial": {"rotate": 5.0}})
    assert err.value.field == "spatial.rotate"   # named by its path


def test_backbone_trains_with_spatial_augmentation(monkeypatch):
    import uda3d.training.pix2pix as pix2pix

    calls = []
    monkeypatch.setattr(pix2pix, "spatial_augment", lambda *a: calls.append(a) or spatial_augment(*a))
    torch.manual_seed(0)
    batch = {"input": torch.rand(1, 2, 16, 16, 16), "target": torch.rand(1, 1, 16, 16, 16)}
    config = BackboneConfig(ngf=4, ndf=4, lr=2e-3, epochs=1, epochs_decay=0, augment=False, spatial_augment=True,
                            spatial=SpatialAugmentConfig(probability=1.0))
    trainer = Pix2PixTrainer(config, torch.device("cpu"))
    history: list[dict] = []
    fit_backbone(trainer, lambda epoch: [batch], None, history.append)
    assert len(history) == 1 and torch.isfinite(torch.tensor(history[0]["loss_g"]))
    assert len(calls) == 1 and calls[0][3] == config.spatial
