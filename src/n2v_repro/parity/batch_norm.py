"""Stock Jittor's batch norm, taken apart: its formulas in PyTorch, one change at a time.

jittor.nn.BatchNorm (Jittor 1.3.11) differs from torch.nn.BatchNorm2d in three ways:
(1) the running variance keeps the biased batch variance (PyTorch: the unbiased one), a
difference of semantics; (2) the batch variance is E[x^2] - E[x]^2 in float32 (PyTorch: a
two-pass formula), and (3) it normalises as x * w + (b - mean * w) with w = weight / std
(PyTorch: (x - mean) / std * weight + bias), which cancels when |mean| >> std; (2) and (3)
change only the rounding. Each class below adds one of them to the one before, so the
parity step can run PyTorch with each and split stock Jittor's difference from PyTorch into
these causes and the rest (Jittor's own float32 arithmetic: reduction order, conv kernels).
`JittorFormulas` in float64 is the reference of stock Jittor's semantics and, in float32,
the yardstick of its rounding (parity.DEFINITION).
"""

from __future__ import annotations

import numpy as np
import torch

from n2v_repro.parity.finding import EMULATION_ORDER


def sequential_sum(v: torch.Tensor) -> torch.Tensor:
    """Sum (B, C, H, W) per channel one element after another in (b, h, w) order, in v's dtype.

    Jittor's CPU reduce does so (its mean is this over the count, bit for bit); PyTorch sums
    pairwise, which rounds far less over 10^4 elements.
    """
    flat = v.detach().transpose(0, 1).reshape(v.shape[1], -1).cpu().numpy()
    return torch.from_numpy(np.cumsum(flat, axis=1, dtype=flat.dtype)[:, -1].copy()).to(v)


class SequentialMean(torch.autograd.Function):
    """Per-channel mean by `sequential_sum`; its gradient is spread evenly, as Jittor's."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
        ctx.shape = x.shape  # type: ignore[attr-defined]
        return sequential_sum(x) / (x.numel() // x.shape[1])

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        shape = ctx.shape  # type: ignore[attr-defined]
        return (grad / (shape.numel() // shape[1]))[None, :, None, None].expand(shape)


class SequentialBroadcast(torch.autograd.Function):
    """A (C,) vector over (B, C, H, W); its gradient summed back by `sequential_sum`."""

    @staticmethod
    def forward(ctx: object, v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return v[None, :, None, None].expand(like.shape)

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return sequential_sum(grad), None


class ComposedBatchNorm2d(torch.nn.Module):
    """PyTorch's BatchNorm2d semantics composed of tensor ops (none of Jittor's changes)."""

    biased_running_var = False
    one_pass_variance = False
    folded_affine = False
    sequential_sums = False

    def __init__(self, channels: int, eps: float, momentum: float):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = torch.nn.Parameter(torch.ones(channels))
        self.bias = torch.nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        sequential = self.sequential_sums and x.dtype == torch.float32

        def mean(v: torch.Tensor) -> torch.Tensor:
            return SequentialMean.apply(v) if sequential else v.mean((0, 2, 3))

        def per_channel(v: torch.Tensor) -> torch.Tensor:
            return SequentialBroadcast.apply(v, x) if sequential else v[None, :, None, None]

        if self.training:
            mu = mean(x)
            if self.one_pass_variance:
                var = (mean(x * x) - mu * mu).clamp_min(0.0)
            else:
                var = mean((x - per_channel(mu)) ** 2)
            count = x.numel() // x.shape[1]
            kept = var if self.biased_running_var else var * (count / max(count - 1, 1))
            with torch.no_grad():
                self.running_mean += (mu - self.running_mean) * self.momentum
                self.running_var += (kept - self.running_var) * self.momentum
        else:
            mu, var = self.running_mean, self.running_var
        if self.folded_affine:
            w = self.weight / torch.sqrt(var + self.eps)
            return x * per_channel(w) + per_channel(self.bias - mu * w)
        x_hat = (x - per_channel(mu)) / torch.sqrt(per_channel(var) + self.eps)
        return x_hat * per_channel(self.weight) + per_channel(self.bias)


class BiasedRunningVariance(ComposedBatchNorm2d):
    biased_running_var = True


class OnePassVariance(BiasedRunningVariance):
    one_pass_variance = True


class JittorFormulas(OnePassVariance):
    """jittor.nn.BatchNorm's semantics and formulas, in PyTorch."""

    folded_affine = True


class JittorSums(JittorFormulas):
    """... summed as Jittor's CPU reduce sums (float32 only; float64 needs no emulating)."""

    sequential_sums = True


# The emulations, E0..E3 in order: each adds one cause to the one before.
EMULATIONS: dict[str, type[ComposedBatchNorm2d]] = dict(
    zip(
        EMULATION_ORDER,
        (ComposedBatchNorm2d, BiasedRunningVariance, OnePassVariance, JittorFormulas, JittorSums),
        strict=True,
    )
)
