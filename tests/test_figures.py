"""Figures fit for a paper: >= 150 dpi, axes in words with units, no offset notation, colour bars on differences."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from uda3d.tuning.study import study_plot
from uda3d.viz import FIGURE_DPI, metric_label, param_label, save_figure, synthesis_plot

# a study whose points differ by thousandths of a dB: matplotlib alone would label them "+1.835e1"
POINTS = [{"value": 1e-6, "mean": 18.3513, "std": 0.0008, "n": 3},
          {"value": 1e-5, "mean": 18.3351, "std": 0.0035, "n": 3},
          {"value": 1e-4, "mean": 18.3544, "std": 0.0012, "n": 3}]


def _png_dpi(path) -> tuple[float, float]:
    with Image.open(path) as image:
        return image.info["dpi"]


def _assert_plain(ax) -> None:
    for axis in (ax.xaxis, ax.yaxis):
        assert axis.get_offset_text().get_text() == ""
    assert not any("e" in t.get_text().lower() for t in ax.get_yticklabels())


def test_a_study_figure_is_the_change_from_no_adaptation_in_db_at_print_resolution(tmp_path):
    fig = study_plot("lr", POINTS, "target_test_psnr", reference=18.355)
    ax = fig.axes[0]
    path = save_figure(fig, tmp_path / "study.png")
    assert FIGURE_DPI >= 150
    assert min(_png_dpi(path)) >= 150
    width, height = fig.get_size_inches()
    with Image.open(path) as image:
        assert image.size == (round(width * FIGURE_DPI), round(height * FIGURE_DPI))
    assert ax.get_ylabel() == "change in target-test PSNR from no adaptation (dB)"
    assert ax.get_xlabel() == "learning rate"
    _assert_plain(ax)
    # the y values are the change, the error bars the seed spread
    line = ax.lines[0]
    assert np.allclose(line.get_ydata(), [p["mean"] - 18.355 for p in POINTS])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("seed std" in t for t in legend) and "no adaptation (18.355 dB)" in legend


def test_without_a_reference_the_absolute_level_is_plotted_without_an_offset(tmp_path):
    fig = study_plot("ele_percent", [{**p, "value": v} for p, v in zip(POINTS, (25, 55, 90))], "target_test_psnr",
                     reference=None)
    save_figure(fig, tmp_path / "abs.png")
    ax = fig.axes[0]
    assert ax.get_ylabel() == "target-test PSNR (dB)"
    _assert_plain(ax)
    assert any(t.get_text().startswith("18.3") for t in ax.get_yticklabels())


def test_difference_maps_have_a_colour_bar(tmp_path):
    rng = np.random.default_rng(0)
    inputs, target, output = rng.random((2, 8, 8, 8)), rng.random((8, 8, 8)), rng.random((8, 8, 8))
    fig = synthesis_plot(inputs, target, output)
    assert len(fig.axes) == 5 * 3 + 1  # five rows of three planes, one colour bar
    assert "|synth - true|" in fig.axes[-1].get_ylabel()
    path = save_figure(fig, tmp_path / "synth.png")
    assert min(_png_dpi(path)) >= 150
    assert len(synthesis_plot(inputs, None, output).axes) == 3 * 3  # no truth, no difference, no bar


@pytest.mark.parametrize(("key", "label"), [("target_test_psnr", "target-test PSNR (dB)"),
                                            ("source_val_psnr", "source-val PSNR (dB)"),
                                            ("psnr_method", "PSNR method (dB)"),
                                            ("target_test_ssim", "target-test SSIM")])
def test_metric_labels_carry_units(key, label):
    assert metric_label(key) == label


def test_param_labels_are_words():
    assert param_label("lr") == "learning rate" and param_label("new_knob") == "new knob"


def test_the_pipelines_comparison_figure_has_one_colour_bar_for_its_difference_maps(tiny_cohort, tmp_path,
                                                                                    monkeypatch):
    import torch

    import uda3d.viz
    from uda3d.config import PreprocessConfig
    from uda3d.viz import comparison_figure

    drawn = []
    real_save = uda3d.viz.save_figure
    monkeypatch.setattr(uda3d.viz, "save_figure", lambda fig, *a, **k: (drawn.append(fig), real_save(fig, *a, **k))[1])
    generator = torch.nn.Sequential(torch.nn.Conv3d(2, 1, 1), torch.nn.Sigmoid()).eval()
    path = comparison_figure(tmp_path / "comparison.png", tiny_cohort, "domain2_test", {"a": generator, "b": generator},
                             PreprocessConfig())
    assert min(_png_dpi(path)) >= 150
    (fig,) = drawn
    colour_bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(colour_bars) == 1 and "|output - true|" in colour_bars[0].get_ylabel()
