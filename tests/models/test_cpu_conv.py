"""DepthSplitConv3d: the convolution of the whole volume, run on oneDNN instead of PyTorch's unfold kernel."""

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from uda3d.models.cpu_conv import DepthSplitConv3d, depth_split_conv3d, takes_slow_cpu_kernel


@pytest.mark.parametrize("shape,kernel,padding", [
    ((1, 16, 28, 24, 24), 3, 1),   # the demo network's upper dense blocks
    ((1, 16, 27, 24, 24), 3, 1),   # odd depth: the halves differ by one plane
    ((1, 4, 9, 7, 6), 3, 0),       # no padding
    ((1, 32, 6, 5, 5), 1, 0),      # 1x1 fuse convolution
    ((1, 3, 2, 4, 4), 3, 1),       # two output planes: one per half
    ((1, 3, 1, 4, 4), 3, 1),       # one output plane: the plain convolution
])
def test_depth_split_matches_conv3d_in_values_and_gradients(shape, kernel, padding):
    torch.manual_seed(0)
    weight = torch.randn(5, shape[1], kernel, kernel, kernel, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(5, dtype=torch.float64, requires_grad=True)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    split = depth_split_conv3d(x, weight, bias, (padding,) * 3)
    grad_out = torch.randn_like(split)
    got = torch.autograd.grad(split, (x, weight, bias), grad_out)
    plain = F.conv3d(x, weight, bias, padding=padding)
    want = torch.autograd.grad(plain, (x, weight, bias), grad_out)
    assert split.shape == plain.shape
    torch.testing.assert_close(split, plain)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_module_keeps_conv3d_parameters_and_matches_it_in_fp32():
    torch.manual_seed(1)
    conv = DepthSplitConv3d(16, 16, 3, padding=1)
    reference = torch.nn.Conv3d(16, 16, 3, padding=1)
    reference.load_state_dict(conv.state_dict())
    x = torch.randn(1, 16, 14, 12, 12)
    assert takes_slow_cpu_kernel(x, conv)
    torch.testing.assert_close(conv(x), reference(x), rtol=1e-5, atol=1e-5)


def test_split_path_runs_on_onednn_where_the_plain_one_does_not():
    conv = DepthSplitConv3d(16, 16, 3, padding=1)
    x = torch.randn(1, 16, 14, 12, 12)

    def kernels(module) -> set[str]:
        with profile(activities=[ProfilerActivity.CPU]) as prof, torch.no_grad():
            module(x)
        return {e.key for e in prof.key_averages()}

    if not torch.backends.mkldnn.is_available():
        pytest.skip("this PyTorch build has no oneDNN")
    assert "aten::slow_conv3d_forward" in kernels(lambda t: F.conv3d(t, conv.weight, conv.bias, padding=1))
    used = kernels(conv)
    assert "aten::mkldnn_convolution" in used and "aten::slow_conv3d_forward" not in used


def test_inputs_the_rule_already_sends_to_onednn_are_left_alone():
    conv = DepthSplitConv3d(16, 16, 3, padding=1)
    assert not takes_slow_cpu_kernel(torch.zeros(2, 16, 14, 12, 12), conv)          # a batch of two
    assert not takes_slow_cpu_kernel(torch.zeros(1, 16, 56, 48, 48), conv)          # 16*56*48 > 20480
    assert not takes_slow_cpu_kernel(torch.zeros(1, 16, 14, 12, 12, dtype=torch.float64), conv)
    strided = DepthSplitConv3d(4, 4, 3, stride=2, padding=1)
    x = torch.randn(1, 4, 8, 8, 8)
    torch.testing.assert_close(strided(x), F.conv3d(x, strided.weight, strided.bias, stride=2, padding=1))
