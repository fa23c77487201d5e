"""The networks in PyTorch. jittor_nets.py builds them layer for layer in Jittor.

Shapes in comments are (B, C, H, W) for a 64x64 input. Parameter names follow
`arch_spec.parameter_shapes`; weights are loaded from `init_weights`, so the constructors'
own initialisation does not matter.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

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


# --- n2n_unet ------------------------------------------------------------------------------


class InputBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = conv3x3(cin, cout)
        self.conv2 = conv3x3(cout, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return F.max_pool2d(x, 2)


class DownBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = conv3x3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.relu(self.conv(x)), 2)


class BottomBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = conv3x3(channels, channels)
        self.upconv = upconv3x3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upconv(F.relu(self.conv(x)))


class UpBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = conv3x3(cin, cout)
        self.conv2 = conv3x3(cout, cout)
        self.upconv = upconv3x3(cout, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return self.upconv(x)


class OutputBlock(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.conv1 = conv3x3(cin, N2N_HEAD[0])
        self.conv2 = conv3x3(N2N_HEAD[0], N2N_HEAD[1])
        self.conv3 = conv3x3(N2N_HEAD[1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return F.leaky_relu(self.conv3(x), HEAD_SLOPE)


class N2NUNet(nn.Module):
    """Noise2Noise U-Net as in the port: shared encoder and decoder blocks, stride 32."""

    def __init__(self):
        super().__init__()
        f, d = N2N_FEATURES, N2N_DECODER  # 48, 96
        self.enc_in = InputBlock(1, f)
        self.enc_down = DownBlock(f)  # applied four times
        self.bottom = BottomBlock(f)
        self.dec_first = UpBlock(2 * f, d)
        self.dec_up = UpBlock(d + f, d)  # applied three times
        self.head = OutputBlock(d + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool1 = self.enc_in(x)  # (B, 48, 32, 32)
        pool2 = self.enc_down(pool1)  # (B, 48, 16, 16)
        pool3 = self.enc_down(pool2)  # (B, 48, 8, 8)
        pool4 = self.enc_down(pool3)  # (B, 48, 4, 4)
        pool5 = self.enc_down(pool4)  # (B, 48, 2, 2)
        up5 = self.bottom(pool5)  # (B, 48, 4, 4)
        up4 = self.dec_first(torch.cat((up5, pool4), dim=1))  # (B, 96, 8, 8)
        up3 = self.dec_up(torch.cat((up4, pool3), dim=1))  # (B, 96, 16, 16)
        up2 = self.dec_up(torch.cat((up3, pool2), dim=1))  # (B, 96, 32, 32)
        up1 = self.dec_up(torch.cat((up2, pool1), dim=1))  # (B, 96, 64, 64)
        return self.head(torch.cat((up1, x), dim=1))  # (B, 1, 64, 64)


# --- n2v_unet ------------------------------------------------------------------------------


class DoubleConv(nn.Module):
    """CSBDeep level: 2 x (3x3 conv + batch norm + ReLU)."""

    def __init__(self, cin: int, mid: int, cout: int, batch_norm: type = nn.BatchNorm2d):
        super().__init__()
        self.conv1 = conv3x3(cin, mid)
        self.bn1 = batch_norm(mid, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.conv2 = conv3x3(mid, cout)
        self.bn2 = batch_norm(cout, eps=BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(x)))


class N2VUNet(nn.Module):
    """CSBDeep U-Net of the N2V reference recipe: depth 2, 96 features, residual, stride 4.

    `n2v2`: its N2V2 variant (Hoeck et al. 2022): max-blur-pool, no top-level skip, no
    residual.
    """

    def __init__(self, base: int = N2V_BASE, n2v2: bool = False, batch_norm: type = nn.BatchNorm2d):
        super().__init__()
        self.n2v2 = n2v2
        self.down0 = DoubleConv(1, base, base, batch_norm)
        self.down1 = DoubleConv(base, 2 * base, 2 * base, batch_norm)
        self.middle = DoubleConv(2 * base, 4 * base, 2 * base, batch_norm)
        self.up1 = DoubleConv(4 * base, 2 * base, base, batch_norm)
        self.up0 = DoubleConv(base if n2v2 else 2 * base, base, base, batch_norm)
        self.head = nn.Conv2d(base, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool = max_blur_pool2x if self.n2v2 else max_pool2x
        skip0 = self.down0(x)  # (B, 96, 64, 64)
        skip1 = self.down1(pool(skip0))  # (B, 192, 32, 32)
        mid = self.middle(pool(skip1))  # (B, 192, 16, 16)
        up1 = self.up1(torch.cat((upsample2x(mid), skip1), dim=1))  # (B, 96, 32, 32)
        if self.n2v2:
            # N2V2 drops the top skip and the residual, the paper's sources of N2V's
            # checkerboard artefacts (full-resolution input features reach the head).
            up0 = self.up0(upsample2x(up1))  # (B, 96, 64, 64)
            return self.head(up0)  # no residual, (B, 1, 64, 64)
        up0 = self.up0(torch.cat((upsample2x(up1), skip0), dim=1))  # (B, 96, 64, 64)
        return self.head(up0) + x  # residual, (B, 1, 64, 64)


def max_pool2x(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, 2)


def max_blur_pool2x(x: torch.Tensor) -> torch.Tensor:
    """N2V2's max-blur-pool (spec.BLUR_TAPS): (B, C, H, W) -> (B, C, H/2, W/2) for even H, W."""
    x = F.max_pool2d(x, 2, stride=1)  # (B, C, H - 1, W - 1)
    channels = int(x.shape[1])  # a constant when traced: ONNX needs a kernel of known shape
    # Built in each call in x's dtype and device: a constant, not a parameter or a buffer.
    kernel = torch.tensor(blur_kernel(), dtype=x.dtype, device=x.device)
    kernel = kernel.expand(channels, 1, 3, 3).contiguous()
    # floor((H - 1 + 2 - 3) / 2) + 1 = H/2 for even H.
    return F.conv2d(x, kernel, stride=2, padding=1, groups=channels)


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


# --- rednet10/20/30 ------------------------------------------------------------------------


class REDNet(nn.Module):
    """The port's REDNet-N (Mao et al. 2016).

    n = N/2 convs, n transposed convs, symmetric skips from `spec.rednet_skips`, residual
    with the input; stride 2 (first and last layer). No ReLU after the residual, unlike the
    port: our inputs are z-scored, so a final ReLU would clip every pixel darker than the
    training mean (docs/models.md).
    """

    def __init__(self, arch: str):
        super().__init__()
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = {}
        y = x
        for i in range(1, self.depth + 1):
            y = F.relu(getattr(self, f"conv{i}")(y))
            feats[i] = y
        for i in range(1, self.depth):
            y = F.relu(getattr(self, f"deconv{i}")(y))
            if i in self.skips:
                y = F.relu(y + feats[self.skips[i]])
        return getattr(self, f"deconv{self.depth}")(y) + x  # (B, 1, H, W)


def build_model(arch: str, batch_norm: type = nn.BatchNorm2d) -> nn.Module:
    """Build `arch`; `batch_norm` (channels, eps, momentum) makes its batch norms."""
    if arch == "n2n_unet":
        return N2NUNet()
    if arch in N2V_WIDTHS:
        return N2VUNet(N2V_WIDTHS[arch], n2v2=arch in N2V2_BASE, batch_norm=batch_norm)
    if arch in REDNET_DEPTH:
        return REDNet(arch)
    raise ValueError(f"unknown arch {arch!r}; expected one of {', '.join(ARCHS)}")
