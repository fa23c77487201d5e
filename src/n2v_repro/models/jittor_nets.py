"""The networks in Jittor. torch_nets.py is the same file line for line in PyTorch.

Every layer is Jittor's own op, as PyTorch's side uses PyTorch's: the two frameworks are
compared stock, batch norm included (jittor.nn.BatchNorm, as Jittor's users write it).
Differences from the PyTorch file are Jittor's API only: `execute` instead of `forward`,
`jt.concat` instead of `torch.cat`. `ExactBatchNorm2d`, PyTorch's semantics composed of Jittor
ops, is the opt-in variant `jittor-exactbn` (backends.registry). Call
`n2v_repro.backends.jittor_env.prepare_jittor_env()` before importing this module.
"""

from __future__ import annotations

import jittor as jt
import numpy as np
from jittor import nn

from n2v_repro.models.spec import (
    ARCHS,
    N2N_DECODER,
    N2N_FEATURES,
    N2N_HEAD,
    N2V2_BASE,
    N2V_BASE,
    N2V_WIDTHS,
    REDNET_DEPTH,
    REDNET_FEATURES,
    blur_kernel,
    rednet_skips,
)

# The port (and joeylitalien/noise2noise-pytorch, which it followed) uses ReLU inside the
# network and LeakyReLU(0.1) only after the last conv.
HEAD_SLOPE = 0.1
# Keras' BatchNormalization defaults (CSBDeep): momentum 0.99 <=> PyTorch momentum 0.01.
BN_EPS = 1e-3
BN_MOMENTUM = 0.01


def conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


def upconv3x3(cin: int, cout: int) -> nn.ConvTranspose2d:
    # Doubles H and W exactly: (H-1)*2 - 2*1 + 3 + 1 = 2H.
    return nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1)


def max_pool2x(x: jt.Var) -> jt.Var:
    return nn.pool(x, 2, "maximum", stride=2)


def max_blur_pool2x(x: jt.Var) -> jt.Var:
    """N2V2's max-blur-pool (spec.BLUR_TAPS): (B, C, H, W) -> (B, C, H/2, W/2) for even H, W."""
    x = nn.pool(x, 2, "maximum", stride=1)  # (B, C, H - 1, W - 1)
    channels = x.shape[1]
    # A fresh Var from numpy in each call, gradient stopped: a constant, never a parameter,
    # so neither trained nor in state_dict (Jittor collects a module's Var attributes).
    kernel = np.broadcast_to(np.array(blur_kernel(), str(x.dtype)), (channels, 1, 3, 3))
    kernel = jt.array(np.ascontiguousarray(kernel)).stop_grad()
    # floor((H - 1 + 2 - 3) / 2) + 1 = H/2 for even H.
    return nn.conv2d(x, kernel, stride=2, padding=1, groups=channels)


class ExactBatchNorm2d(nn.Module):
    """Batch norm with PyTorch's BatchNorm2d semantics, the opt-in variant `jittor-exactbn`.

    It normalises with the biased batch variance, two-pass, and updates the running variance
    with the unbiased one; jittor.nn.BatchNorm (stock) keeps the biased one, computes the
    variance as E[x^2] - E[x]^2 and normalises as x * w + (b - mean * w). The normalisation
    runs in float64, so its gradients are as close to a float64 reference as PyTorch's own
    float32 ones; how far stock Jittor's are, and why, is the parity check's batch-norm
    finding (parity.batch_norm).
    """

    def __init__(self, channels: int, eps: float, momentum: float):
        self.eps = eps
        self.momentum = momentum
        self.weight = jt.ones((channels,), "float32")
        self.bias = jt.zeros((channels,), "float32")
        self.running_mean = jt.zeros((channels,), "float32").stop_grad()
        self.running_var = jt.ones((channels,), "float32").stop_grad()

    def execute(self, x: jt.Var) -> jt.Var:
        x32, x = x, x.float64()
        if self.is_training():
            mean = x.mean(dims=[0, 2, 3])  # (C,)
            var = ((x - mean.broadcast(x, [0, 2, 3])) ** 2).mean(dims=[0, 2, 3])
            count = x.shape[0] * x.shape[2] * x.shape[3]
            unbiased = var * (count / max(count - 1, 1))
            m = self.momentum
            # detach(), not stop_grad(): Jittor's stop_grad() marks the Var itself, which
            # would cut the gradient through the batch mean used below.
            self.running_mean.update(self.running_mean * (1 - m) + mean.detach().float32() * m)
            self.running_var.update(self.running_var * (1 - m) + unbiased.detach().float32() * m)
        else:
            mean, var = self.running_mean.float64(), self.running_var.float64()
        # (x - mean) * inv_std, as PyTorch: Jittor's x * scale + (bias - mean * scale) cancels
        # catastrophically when |mean| >> std and gave gradients 5-17% off at batch 16.
        inv_std = 1.0 / jt.sqrt(var + self.eps)
        x_hat = (x - mean.broadcast(x, [0, 2, 3])) * inv_std.broadcast(x, [0, 2, 3])
        x_hat = x_hat.float32()  # (B, C, H, W)
        return x_hat * self.weight.broadcast(x32, [0, 2, 3]) + self.bias.broadcast(x32, [0, 2, 3])


# The batch norms of backends.registry.BATCH_NORM: Jittor's own, or the exact variant.
BATCH_NORMS = {"stock": nn.BatchNorm, "exact": ExactBatchNorm2d}

# --- n2n_unet ------------------------------------------------------------------------------


class InputBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        self.conv1 = conv3x3(cin, cout)
        self.conv2 = conv3x3(cout, cout)

    def execute(self, x: jt.Var) -> jt.Var:
        x = nn.relu(self.conv1(x))
        x = nn.relu(self.conv2(x))
        return max_pool2x(x)


class DownBlock(nn.Module):
    def __init__(self, channels: int):
        self.conv = conv3x3(channels, channels)

    def execute(self, x: jt.Var) -> jt.Var:
        return max_pool2x(nn.relu(self.conv(x)))


class BottomBlock(nn.Module):
    def __init__(self, channels: int):
        self.conv = conv3x3(channels, channels)
        self.upconv = upconv3x3(channels, channels)

    def execute(self, x: jt.Var) -> jt.Var:
        return self.upconv(nn.relu(self.conv(x)))


class UpBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        self.conv1 = conv3x3(cin, cout)
        self.conv2 = conv3x3(cout, cout)
        self.upconv = upconv3x3(cout, cout)

    def execute(self, x: jt.Var) -> jt.Var:
        x = nn.relu(self.conv1(x))
        x = nn.relu(self.conv2(x))
        return self.upconv(x)


class OutputBlock(nn.Module):
    def __init__(self, cin: int):
        self.conv1 = conv3x3(cin, N2N_HEAD[0])
        self.conv2 = conv3x3(N2N_HEAD[0], N2N_HEAD[1])
        self.conv3 = conv3x3(N2N_HEAD[1], 1)

    def execute(self, x: jt.Var) -> jt.Var:
        x = nn.relu(self.conv1(x))
        x = nn.relu(self.conv2(x))
        return nn.leaky_relu(self.conv3(x), HEAD_SLOPE)


class N2NUNet(nn.Module):
    """Noise2Noise U-Net as in the port: shared encoder and decoder blocks, stride 32."""

    def __init__(self):
        f, d = N2N_FEATURES, N2N_DECODER  # 48, 96
        self.enc_in = InputBlock(1, f)
        self.enc_down = DownBlock(f)  # applied four times
        self.bottom = BottomBlock(f)
        self.dec_first = UpBlock(2 * f, d)
        self.dec_up = UpBlock(d + f, d)  # applied three times
        self.head = OutputBlock(d + 1)

    def execute(self, x: jt.Var) -> jt.Var:
        pool1 = self.enc_in(x)  # (B, 48, 32, 32)
        pool2 = self.enc_down(pool1)  # (B, 48, 16, 16)
        pool3 = self.enc_down(pool2)  # (B, 48, 8, 8)
        pool4 = self.enc_down(pool3)  # (B, 48, 4, 4)
        pool5 = self.enc_down(pool4)  # (B, 48, 2, 2)
        up5 = self.bottom(pool5)  # (B, 48, 4, 4)
        up4 = self.dec_first(jt.concat((up5, pool4), dim=1))  # (B, 96, 8, 8)
        up3 = self.dec_up(jt.concat((up4, pool3), dim=1))  # (B, 96, 16, 16)
        up2 = self.dec_up(jt.concat((up3, pool2), dim=1))  # (B, 96, 32, 32)
        up1 = self.dec_up(jt.concat((up2, pool1), dim=1))  # (B, 96, 64, 64)
        return self.head(jt.concat((up1, x), dim=1))  # (B, 1, 64, 64)


# --- n2v_unet ------------------------------------------------------------------------------


class DoubleConv(nn.Module):
    """CSBDeep level: 2 x (3x3 conv + batch norm + ReLU)."""

    def __init__(self, cin: int, mid: int, cout: int, batch_norm: type = nn.BatchNorm):
        self.conv1 = conv3x3(cin, mid)
        self.bn1 = batch_norm(mid, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.conv2 = conv3x3(mid, cout)
        self.bn2 = batch_norm(cout, eps=BN_EPS, momentum=BN_MOMENTUM)

    def execute(self, x: jt.Var) -> jt.Var:
        x = nn.relu(self.bn1(self.conv1(x)))
        return nn.relu(self.bn2(self.conv2(x)))


class N2VUNet(nn.Module):
    """CSBDeep U-Net of the N2V reference recipe: depth 2, 96 features, residual, stride 4.

    `n2v2`: its N2V2 variant (Hoeck et al. 2022): max-blur-pool, no top-level skip, no
    residual.
    """

    def __init__(self, base: int = N2V_BASE, n2v2: bool = False, batch_norm: type = nn.BatchNorm):
        self.n2v2 = n2v2
        self.down0 = DoubleConv(1, base, base, batch_norm)
        self.down1 = DoubleConv(base, 2 * base, 2 * base, batch_norm)
        self.middle = DoubleConv(2 * base, 4 * base, 2 * base, batch_norm)
        self.up1 = DoubleConv(4 * base, 2 * base, base, batch_norm)
        self.up0 = DoubleConv(base if n2v2 else 2 * base, base, base, batch_norm)
        self.head = nn.Conv2d(base, 1, 1)

    def execute(self, x: jt.Var) -> jt.Var:
        pool = max_blur_pool2x if self.n2v2 else max_pool2x
        skip0 = self.down0(x)  # (B, 96, 64, 64)
        skip1 = self.down1(pool(skip0))  # (B, 192, 32, 32)
        mid = self.middle(pool(skip1))  # (B, 192, 16, 16)
        up1 = self.up1(jt.concat((upsample2x(mid), skip1), dim=1))  # (B, 96, 32, 32)
        if self.n2v2:
            # N2V2 drops the top skip and the residual, the paper's sources of N2V's
            # checkerboard artefacts (full-resolution input features reach the head).
            up0 = self.up0(upsample2x(up1))  # (B, 96, 64, 64)
            return self.head(up0)  # no residual, (B, 1, 64, 64)
        up0 = self.up0(jt.concat((upsample2x(up1), skip0), dim=1))  # (B, 96, 64, 64)
        return self.head(up0) + x  # residual, (B, 1, 64, 64)


def upsample2x(x: jt.Var) -> jt.Var:
    # Nearest neighbour by index arithmetic: exact, and its gradient is a plain 2x2 sum.
    b, c, h, w = x.shape
    return x.reindex([b, c, 2 * h, 2 * w], ["i0", "i1", "i2/2", "i3/2"])


# --- rednet10/20/30 ------------------------------------------------------------------------


class REDNet(nn.Module):
    """The port's REDNet-N (Mao et al. 2016).

    n = N/2 convs, n transposed convs, symmetric skips from `spec.rednet_skips`, residual
    with the input; stride 2 (first and last layer). No ReLU after the residual, unlike the
    port: our inputs are z-scored, so a final ReLU would clip every pixel darker than the
    training mean (docs/models.md).
    """

    def __init__(self, arch: str):
        n, f = REDNET_DEPTH[arch], REDNET_FEATURES
        self.depth = n
        self.skips = rednet_skips(arch)
        self.conv1 = nn.Conv2d(1, f, 3, stride=2, padding=1)  # (B, 64, H/2, W/2)
        for i in range(2, n + 1):
            setattr(self, f"conv{i}", conv3x3(f, f))
        for i in range(1, n):
            setattr(self, f"deconv{i}", nn.ConvTranspose2d(f, f, 3, padding=1))
        # (H/2 - 1)*2 - 2 + 3 + 1 = H for even H.
        last = nn.ConvTranspose2d(f, 1, 3, stride=2, padding=1, output_padding=1)
        setattr(self, f"deconv{n}", last)

    def execute(self, x: jt.Var) -> jt.Var:
        feats = {}
        y = x
        for i in range(1, self.depth + 1):
            y = nn.relu(getattr(self, f"conv{i}")(y))
            feats[i] = y
        for i in range(1, self.depth):
            y = nn.relu(getattr(self, f"deconv{i}")(y))
            if i in self.skips:
                y = nn.relu(y + feats[self.skips[i]])
        return getattr(self, f"deconv{self.depth}")(y) + x  # (B, 1, H, W)


def build_model(arch: str, batch_norm: type = nn.BatchNorm) -> nn.Module:
    """Build `arch`; `batch_norm` (channels, eps, momentum) makes its batch norms."""
    if arch == "n2n_unet":
        return N2NUNet()
    if arch in N2V_WIDTHS:
        return N2VUNet(N2V_WIDTHS[arch], n2v2=arch in N2V2_BASE, batch_norm=batch_norm)
    if arch in REDNET_DEPTH:
        return REDNet(arch)
    raise ValueError(f"unknown arch {arch!r}; expected one of {', '.join(ARCHS)}")
