"""The method's adaptation objective (docs/method.md section 3), as pure tensor functions.

A generated target T1 and an unpaired real source T1 are each encoded slice by slice by the frozen
slice VAE; the element-wise Gaussian KL(real || fake) is taken over every latent element
(slices x channels x 2 x 2); the elements above the (100 - ele_percent)-th percentile are kept
(strictly greater, the percentile taken as a ``kthvalue`` order statistic with rank
k = 1 + round(q / 100 x (n - 1)), as the method's code does) and the loss is their mean times
``kl_weight``. With ele_percent = 55 the 45 % of elements that already agree best are ignored;
ele_percent = 100 keeps all but the minimum.

Slice order: the method's code reorders the generator's (D, H, W) volume to (H, W, D) with a raw
``view``, which scrambles voxels so the VAE sees non-anatomical "slices" (docs/method.md section 7).
``slice_order="intended"`` (the default, used for every result we report) slices the volume in the
anatomical plane the slice VAE was trained on; ``"faithful"`` reproduces the raw view for
comparison with the original code.

Population prior (a variant, ``AdaptConfig.prior="population"``): instead of one random source
subject's posterior, the reference is one Gaussian per latent element (slice, channel, position),
moment-matched to the posteriors of *all* source training T1 volumes: its mean is the mean of their
means and its variance the law-of-total-variance sum (variance of the means + mean of the
variances), the single Gaussian closest in KL to their equal-weight mixture.
"""

from __future__ import annotations

import torch

from uda3d.config import SLICE_ORDERS
from uda3d.errors import ConfigError
from uda3d.losses.kl import gaussian_kl


def kth_percentile(values: torch.Tensor, q: float) -> torch.Tensor:
    """The q-th percentile as one order statistic: ``kthvalue`` with k = 1 + round(q/100 (n - 1))."""
    flat = values.reshape(-1)
    k = 1 + round(0.01 * float(q) * (flat.numel() - 1))
    return flat.kthvalue(k).values


def top_percent_mean(values: torch.Tensor, ele_percent: float) -> torch.Tensor:
    """Mean of the elements strictly above the (100 - ele_percent)-th percentile.

    If no element is strictly above it (all equal), the mean of all elements is returned instead of
    the NaN an empty mean would give.
    """
    if not 0 < ele_percent <= 100:
        raise ConfigError("ele_percent", f"expected 0 < ele_percent <= 100, got {ele_percent}")
    flat = values.reshape(-1)
    threshold = kth_percentile(flat, 100.0 - ele_percent)
    kept = flat[flat > threshold]
    return kept.mean() if kept.numel() else flat.mean()


def latent_alignment_loss(mu_real: torch.Tensor, logsig_real: torch.Tensor, mu_fake: torch.Tensor,
                          logsig_fake: torch.Tensor, ele_percent: float = 55.0,
                          kl_weight: float = 1.0) -> torch.Tensor:
    """kl_weight x mean of the largest ele_percent % of KL(N(mu_r, s_r) || N(mu_f, s_f)) elements.

    Args:
        mu_real, logsig_real: posterior of the real source T1 slices, e.g. (S, C, 2, 2).
        mu_fake, logsig_fake: posterior of the generated target T1 slices, same shape.
    """
    if mu_real.shape != mu_fake.shape:
        raise ValueError(f"real latents {tuple(mu_real.shape)} and fake latents {tuple(mu_fake.shape)} differ")
    kl = gaussian_kl(mu_real, logsig_real, mu_fake, logsig_fake)
    return kl_weight * top_percent_mean(kl, ele_percent)


def order_for_slicing(volume: torch.Tensor, slice_order: str = "intended") -> torch.Tensor:
    """The (D, H, W) volume the slicer sees: itself, or the method's raw view to (H, W, D)."""
    if slice_order == "intended":
        return volume
    if slice_order == "faithful":
        d, h, w = volume.shape
        return volume.reshape(h, w, d)  # a view, not a permute: scrambles voxels exactly as the method
    raise ConfigError("slice_order", f"expected one of {list(SLICE_ORDERS)}, got {slice_order!r}")


def fit_population_prior(mus: torch.Tensor, logsigs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-element Gaussian moment-matched to N volumes' posteriors: (N, ...) -> (mu, logsig) of shape (...).

    ``logsig`` is the log standard deviation, as the VAE's posteriors are parameterised.
    """
    if mus.shape != logsigs.shape or mus.shape[0] < 1:
        raise ValueError(f"expected matching (N, ...) posteriors, got {tuple(mus.shape)} and {tuple(logsigs.shape)}")
    mean = mus.mean(0)
    variance = mus.var(0, unbiased=False) + torch.exp(2 * logsigs).mean(0)
    return mean, 0.5 * torch.log(variance)
