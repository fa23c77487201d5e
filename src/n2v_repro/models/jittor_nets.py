"""The networks in Jittor. torch_nets.py is the same file, layer for layer, in PyTorch.

Differences from the PyTorch file: Jittor's API (`execute` instead of `forward`), a
BatchNorm2d written here so that the running variance is updated exactly as PyTorch does
(Jittor's own uses the biased variance), and, when training on the CPU, the work between
the convolutions in fused C++ kernels (`conv_relu`, `conv_bn_relu`, `conv_bias`, `add_relu`,
`max_pool2x`, `cat_channels`) that split channels over the OpenMP threads: Jittor's own
element-wise kernels run on one thread. They compute the values of Jittor's composed ops
(tests/test_jittor_kernels.py); evaluation (jt.no_grad) and CUDA use the composed ops.
Call `n2v_repro.backends.jittor_env.prepare_jittor_env()` before importing this module.
"""

from __future__ import annotations

import jittor as jt
from jittor import nn

from n2v_repro.models import jittor_winograd
from n2v_repro.models.spec import (
    ARCHS,
    N2N_DECODER,
    N2N_FEATURES,
    N2N_HEAD,
    N2V_BASE,
    N2V_WIDTHS,
    REDNET_DEPTH,
    REDNET_FEATURES,
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
    if not _cpu_training():
        return nn.pool(x, 2, "maximum", stride=2)
    return _MaxPool2x()(x)


# The element-wise work around the convolutions, fused into kernels that split channels over
# the OpenMP threads: Jittor's own element-wise kernels run on one thread, so on a 2-core CPU
# the bias adds, ReLUs and batch norms (one pass each way, each) were the part of a training
# step that did not get faster with threads. Values are those of Jittor's composed ops:
# v = conv + bias in float32, relu(v) = v > 0 ? v : 0, and the ReLU's gradient passes where
# its output is > 0. Channel sums accumulate in float64.
_KERNEL_HEADER = "#include <cmath>\n#include <cstring>"

# in0 x (B, C, H, W), in1 bias (C,) -> out0 x + bias, then relu() when RELU.
_BIAS_FORWARD = r"""
const int B = in0_shape0, C = in0_shape1, HW = in0_shape2 * in0_shape3;
#pragma omp parallel for schedule(static)
for (int bc = 0; bc < B * C; bc++) {
    const float bias = in1_p[bc % C];
    const float* x = in0_p + (size_t)bc * HW;
    float* y = out0_p + (size_t)bc * HW;
    for (int i = 0; i < HW; i++) {
        const float v = x[i] + bias;
        y[i] = RELU ? (v > 0 ? v : 0) : v;
    }
}
"""
# in0 x, in1 x2 (B, C, H, W), in2 bias (C,) -> out0 relu((x + x2) + bias).
_SUM_BIAS_RELU_FORWARD = r"""
const int B = in0_shape0, C = in0_shape1, HW = in0_shape2 * in0_shape3;
#pragma omp parallel for schedule(static)
for (int bc = 0; bc < B * C; bc++) {
    const float bias = in2_p[bc % C];
    const float* x = in0_p + (size_t)bc * HW;
    const float* x2 = in1_p + (size_t)bc * HW;
    float* y = out0_p + (size_t)bc * HW;
    for (int i = 0; i < HW; i++) {
        const float v = (x[i] + x2[i]) + bias;
        y[i] = v > 0 ? v : 0;
    }
}
"""
# in0 y = relu(x + bias), in1 dy -> out0 dx, out1 d bias (C,).
_BIAS_RELU_BACKWARD = r"""
const int B = in0_shape0, C = in0_shape1, HW = in0_shape2 * in0_shape3;
#pragma omp parallel for schedule(static)
for (int c = 0; c < C; c++) {
    double sum = 0;
    for (int b = 0; b < B; b++) {
        const size_t at = ((size_t)b * C + c) * HW;
        const float* y = in0_p + at;
        const float* dy = in1_p + at;
        float* dx = out0_p + at;
        #pragma omp simd reduction(+:sum)
        for (int i = 0; i < HW; i++) {
            const float g = y[i] > 0 ? dy[i] : 0;
            dx[i] = g;
            sum += g;
        }
    }
    out1_p[c] = (float)sum;
}
"""
# in0 dy (B, C, H, W) -> out0 d bias (C,): the gradient of x + bias (dx is dy itself).
_BIAS_BACKWARD = r"""
const int B = in0_shape0, C = in0_shape1, HW = in0_shape2 * in0_shape3;
#pragma omp parallel for schedule(static)
for (int c = 0; c < C; c++) {
    double sum = 0;
    for (int b = 0; b < B; b++) {
        const float* dy = in0_p + ((size_t)b * C + c) * HW;
        #pragma omp simd reduction(+:sum)
        for (int i = 0; i < HW; i++) sum += dy[i];
    }
    out0_p[c] = (float)sum;
}
"""
# in0 a, in1 b (same shape) -> out0 relu(a + b) (REDNet's skip connections); its gradient
# passes to both where the output is > 0.
_ADD_RELU_FORWARD = r"""
const size_t n = (size_t)in0_shape0 * in0_shape1 * in0_shape2 * in0_shape3;
#pragma omp parallel for simd schedule(static)
for (size_t i = 0; i < n; i++) {
    const float v = in0_p[i] + in1_p[i];
    out0_p[i] = v > 0 ? v : 0;
}
"""
_RELU_BACKWARD = r"""
const size_t n = (size_t)in0_shape0 * in0_shape1 * in0_shape2 * in0_shape3;
#pragma omp parallel for simd schedule(static)
for (size_t i = 0; i < n; i++) out0_p[i] = in0_p[i] > 0 ? in1_p[i] : 0;
"""

# Batch norm as PyTorch's CPU kernel computes it: float32 data, float64 accumulators (the
# acc_type of float on the CPU), two passes for the variance (no cancellation when
# |mean| >> std), and its backward formulas (batch_norm_backward_cpu):
#   dotp = sum(g * (v - mean)); dv = (g - sum(g)/n - (v - mean) * dotp * invstd^2/n) * invstd * w.
# Fused with the conv bias before it (v = x + conv bias) and the ReLU after it (g: dy where
# the output is > 0). n2v_unet32 spent a third of its step in the composed float64 version.
# `omp simd reduction` lets the compiler vectorise the float64 sums (in another order: at
# float64 precision that changes nothing a float32 result can show).
# in0 x (B, C, H, W); in1 conv bias, in2 weight, in3 bias (C,)
# -> out0 relu(bn(x + conv bias)), out1 batch mean, out2 biased batch variance (float64).
_BN_RELU_FORWARD = r"""
const int B = in0_shape0, C = in0_shape1, HW = in0_shape2 * in0_shape3;
const double count = (double)B * HW;
#pragma omp parallel for schedule(static)
for (int c = 0; c < C; c++) {
    const float cb = in1_p[c];
    double sum = 0;
    for (int b = 0; b < B; b++) {
        const float* x = in0_p + ((size_t)b * C + c) * HW;
        #pragma omp simd reduction(+:sum)
        for (int i = 0; i < HW; i++) sum += x[i] + cb;
    }
    const double mean = sum / count;
    double squares = 0;
    for (int b = 0; b < B; b++) {
        const float* x = in0_p + ((size_t)b * C + c) * HW;
        #pragma omp simd reduction(+:squares)
        for (int i = 0; i < HW; i++) {
            const double d = (x[i] + cb) - mean;
            squares += d * d;
        }
    }
    const double var = squares / count;
    const double invstd = 1.0 / std::sqrt(var + EPS);
    const float w = in2_p[c], bias = in3_p[c];
    for (int b = 0; b < B; b++) {
        const float* x = in0_p + ((size_t)b * C + c) * HW;
        float* y = out0_p + ((size_t)b * C + c) * HW;
        #pragma omp simd
        for (int i = 0; i < HW; i++) {
            const float x_hat = (float)(((x[i] + cb) - mean) * invstd);
            const float v = x_hat * w + bias;
            y[i] = v > 0 ? v : 0;
        }
    }
    out1_p[c] = mean;
    out2_p[c] = var;
}
"""
# in0 x, in1 y (the forward's output), in2 dy (B, C, H, W); in3 conv bias (C,);
# in4 mean, in5 var (C,) float64; in6 weight (C,)
# -> out0 dx, out1 d conv bias, out2 d weight, out3 d bias.
_BN_RELU_BACKWARD = r"""
const int B = in0_shape0, C = in0_shape1, HW = in0_shape2 * in0_shape3;
const double count = (double)B * HW;
#pragma omp parallel for schedule(static)
for (int c = 0; c < C; c++) {
    const float cb = in3_p[c];
    const double mean = in4_p[c], invstd = 1.0 / std::sqrt(in5_p[c] + EPS);
    double sum_g = 0, dotp = 0;
    for (int b = 0; b < B; b++) {
        const size_t at = ((size_t)b * C + c) * HW;
        const float* x = in0_p + at;
        const float* y = in1_p + at;
        const float* dy = in2_p + at;
        #pragma omp simd reduction(+:sum_g, dotp)
        for (int i = 0; i < HW; i++) {
            const float g = y[i] > 0 ? dy[i] : 0;
            sum_g += g;
            dotp += g * ((x[i] + cb) - mean);
        }
    }
    out2_p[c] = (float)(dotp * invstd);
    out3_p[c] = (float)sum_g;
    const double k = dotp * invstd * invstd / count, grad_mean = sum_g / count;
    const double scale = invstd * in6_p[c];
    double sum_dx = 0;
    for (int b = 0; b < B; b++) {
        const size_t at = ((size_t)b * C + c) * HW;
        const float* x = in0_p + at;
        const float* y = in1_p + at;
        const float* dy = in2_p + at;
        float* dx = out0_p + at;
        #pragma omp simd reduction(+:sum_dx)
        for (int i = 0; i < HW; i++) {
            const float g = y[i] > 0 ? dy[i] : 0;
            const float d = (float)((g - grad_mean - ((x[i] + cb) - mean) * k) * scale);
            dx[i] = d;
            sum_dx += d;
        }
    }
    out1_p[c] = (float)sum_dx;
}
"""


class _Bias(jt.Function):
    """x + bias (then ReLU when `relu`) for a (B, C, H, W) x; gradient to x and the bias."""

    def __init__(self, relu: bool):
        self.relu = relu

    def execute(self, x: jt.Var, bias: jt.Var) -> jt.Var:
        source = _BIAS_FORWARD.replace("RELU", "1" if self.relu else "0")
        self.y = jt.code(x.shape, "float32", [x, bias], cpu_src=source)
        return self.y

    def grad(self, dy: jt.Var) -> tuple[jt.Var, jt.Var]:
        channels = (self.y.shape[1],)
        if not self.relu:
            return dy, jt.code(channels, "float32", [dy], cpu_src=_BIAS_BACKWARD)
        dx, dbias = jt.code(
            [self.y.shape, channels], ["float32", "float32"], [self.y, dy],
            cpu_src=_BIAS_RELU_BACKWARD,
        )  # fmt: skip
        return dx, dbias


class _SumBiasReLU(jt.Function):
    """relu((x + x2) + bias): two convolutions' outputs, one conv's bias; gradient to all."""

    def execute(self, x: jt.Var, x2: jt.Var, bias: jt.Var) -> jt.Var:
        self.y = jt.code(x.shape, "float32", [x, x2, bias], cpu_src=_SUM_BIAS_RELU_FORWARD)
        return self.y

    def grad(self, dy: jt.Var) -> tuple[jt.Var, jt.Var, jt.Var]:
        channels = (self.y.shape[1],)
        dx, dbias = jt.code(
            [self.y.shape, channels], ["float32", "float32"], [self.y, dy],
            cpu_src=_BIAS_RELU_BACKWARD,
        )  # fmt: skip
        return dx, dx, dbias


class _AddReLU(jt.Function):
    def execute(self, a: jt.Var, b: jt.Var) -> jt.Var:
        self.y = jt.code(a.shape, "float32", [a, b], cpu_src=_ADD_RELU_FORWARD)
        return self.y

    def grad(self, dy: jt.Var) -> tuple[jt.Var, jt.Var]:
        g = jt.code(self.y.shape, "float32", [self.y, dy], cpu_src=_RELU_BACKWARD)
        return g, g


class _BatchNormReLU(jt.Function):
    """relu(batch_norm(x + conv bias)) in training mode, with the batch mean and variance."""

    def __init__(self, eps: float):
        # repr() gives the shortest literal that reads back as the same double: eps is the
        # float64 value PyTorch adds, not its float32 rounding.
        self.eps = repr(float(eps))

    def execute(
        self, x: jt.Var, conv_bias: jt.Var, weight: jt.Var, bias: jt.Var
    ) -> tuple[jt.Var, jt.Var, jt.Var]:
        channels = (x.shape[1],)
        y, mean, var = jt.code(
            [x.shape, channels, channels],
            ["float32", "float64", "float64"],
            [x, conv_bias, weight, bias],
            cpu_header=_KERNEL_HEADER,
            cpu_src=_BN_RELU_FORWARD.replace("EPS", self.eps),
        )
        self.saved = (x, y, conv_bias, mean, var, weight)
        return y, mean, var

    def grad(self, dy: jt.Var, _dmean: None, _dvar: None) -> tuple[jt.Var, ...]:
        x, y, conv_bias, mean, var, weight = self.saved
        channels = (x.shape[1],)
        return tuple(
            jt.code(
                [x.shape, channels, channels, channels],
                ["float32"] * 4,
                [x, y, dy, conv_bias, mean, var, weight],
                cpu_header=_KERNEL_HEADER,
                cpu_src=_BN_RELU_BACKWARD.replace("EPS", self.eps),
            )
        )


# 2x2 max-pool, stride 2 (H, W even). The gradient goes to the first maximum in row-major
# order, as in Jittor's and PyTorch's max-pool backward (ties are common: ReLU zeros).
_POOL_FORWARD = r"""
const int planes = in0_shape0 * in0_shape1, H = in0_shape2, W = in0_shape3;
const int OH = H / 2, OW = W / 2;
#pragma omp parallel for schedule(static)
for (int p = 0; p < planes; p++) {
    const float* x = in0_p + (size_t)p * H * W;
    float* y = out0_p + (size_t)p * OH * OW;
    for (int i = 0; i < OH; i++)
        for (int j = 0; j < OW; j++) {
            const float* r = x + (2 * i) * W + 2 * j;
            float m = r[0];
            if (r[1] > m) m = r[1];
            if (r[W] > m) m = r[W];
            if (r[W + 1] > m) m = r[W + 1];
            y[i * OW + j] = m;
        }
}
"""
# in0 x, in1 y, in2 dy -> out0 dx.
_POOL_BACKWARD = r"""
const int planes = in0_shape0 * in0_shape1, H = in0_shape2, W = in0_shape3;
const int OH = H / 2, OW = W / 2;
#pragma omp parallel for schedule(static)
for (int p = 0; p < planes; p++) {
    const float* x = in0_p + (size_t)p * H * W;
    float* dx = out0_p + (size_t)p * H * W;
    const float* y = in1_p + (size_t)p * OH * OW;
    const float* dy = in2_p + (size_t)p * OH * OW;
    for (int i = 0; i < OH; i++)
        for (int j = 0; j < OW; j++) {
            const int at = (2 * i) * W + 2 * j;
            const float m = y[i * OW + j], g = dy[i * OW + j];
            const int k = x[at] == m ? 0 : x[at + 1] == m ? 1 : x[at + W] == m ? 2 : 3;
            dx[at] = k == 0 ? g : 0;
            dx[at + 1] = k == 1 ? g : 0;
            dx[at + W] = k == 2 ? g : 0;
            dx[at + W + 1] = k == 3 ? g : 0;
        }
}
"""
# in0 a (B, Ca, h, w), in1 b (B, Cb, H, W) -> out0 (B, Ca + Cb, H, W): a (nearest-upsampled
# 2x when UPSAMPLE, then H = 2h) then b along the channels.
_CAT_FORWARD = r"""
const int B = in1_shape0, Ca = in0_shape1, Cb = in1_shape1, Ct = Ca + Cb;
const int H = in1_shape2, W = in1_shape3, h = in0_shape2, w = in0_shape3;
#pragma omp parallel for schedule(static)
for (int p = 0; p < B * Ct; p++) {
    const int b = p / Ct, c = p % Ct;
    float* out = out0_p + (size_t)p * H * W;
    if (c >= Ca) {
        std::memcpy(out, in1_p + ((size_t)b * Cb + c - Ca) * H * W, sizeof(float) * H * W);
    } else if (UPSAMPLE) {
        const float* a = in0_p + ((size_t)b * Ca + c) * h * w;
        for (int i = 0; i < H; i++)
            for (int j = 0; j < W; j++) out[i * W + j] = a[(i / 2) * w + j / 2];
    } else {
        std::memcpy(out, in0_p + ((size_t)b * Ca + c) * h * w, sizeof(float) * H * W);
    }
}
"""
# in0 d out -> out0 d a, out1 d b. The 2x2 sums add in Jittor's reindex_reduce order.
_CAT_BACKWARD = r"""
const int B = out1_shape0, Ca = out0_shape1, Cb = out1_shape1, Ct = Ca + Cb;
const int H = out1_shape2, W = out1_shape3, h = out0_shape2, w = out0_shape3;
#pragma omp parallel for schedule(static)
for (int p = 0; p < B * Ct; p++) {
    const int b = p / Ct, c = p % Ct;
    const float* g = in0_p + (size_t)p * H * W;
    if (c >= Ca) {
        std::memcpy(out1_p + ((size_t)b * Cb + c - Ca) * H * W, g, sizeof(float) * H * W);
    } else if (UPSAMPLE) {
        float* da = out0_p + ((size_t)b * Ca + c) * h * w;
        for (int i = 0; i < h; i++)
            for (int j = 0; j < w; j++) {
                const float* r = g + (2 * i) * W + 2 * j;
                float sum = 0;
                sum += r[0];
                sum += r[1];
                sum += r[W];
                sum += r[W + 1];
                da[i * w + j] = sum;
            }
    } else {
        std::memcpy(out0_p + ((size_t)b * Ca + c) * h * w, g, sizeof(float) * H * W);
    }
}
"""


class _MaxPool2x(jt.Function):
    def execute(self, x: jt.Var) -> jt.Var:
        b, c, h, w = x.shape
        self.x = x
        self.y = jt.code((b, c, h // 2, w // 2), "float32", [x], cpu_src=_POOL_FORWARD)
        return self.y

    def grad(self, dy: jt.Var) -> jt.Var:
        return jt.code(self.x.shape, "float32", [self.x, self.y, dy], cpu_src=_POOL_BACKWARD)


class _CatChannels(jt.Function):
    def __init__(self, upsample_a: bool):
        self.flag = "1" if upsample_a else "0"

    def execute(self, a: jt.Var, b: jt.Var) -> jt.Var:
        self.shapes = (a.shape, b.shape)
        shape = (b.shape[0], a.shape[1] + b.shape[1], b.shape[2], b.shape[3])
        source = _CAT_FORWARD.replace("UPSAMPLE", self.flag)
        return jt.code(shape, "float32", [a, b], cpu_header=_KERNEL_HEADER, cpu_src=source)

    def grad(self, dout: jt.Var) -> tuple[jt.Var, jt.Var]:
        source = _CAT_BACKWARD.replace("UPSAMPLE", self.flag)
        da, db = jt.code(
            list(self.shapes), ["float32", "float32"], [dout],
            cpu_header=_KERNEL_HEADER, cpu_src=source,
        )  # fmt: skip
        return da, db


def _conv_without_bias(conv: nn.Module, x: jt.Var, weight: jt.Var | None = None) -> jt.Var:
    """`conv(x)` (with `weight` if given) before its bias, which Jittor's layers add last.

    3x3 stride-1 layers run through oneDNN's Winograd kernels (jittor_winograd.py).
    """
    weight = conv.weight if weight is None else weight
    transposed = isinstance(conv, nn.ConvTranspose2d)
    if jittor_winograd.applies_to(conv):
        return jittor_winograd.Conv3x3(transposed)(x, weight)
    if transposed:
        return nn.conv_transpose2d(
            x, weight, None, conv.stride, conv.padding, conv.output_padding,
            conv.groups, conv.dilation,
        )  # fmt: skip
    return nn.conv2d(x, weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)


def _cpu_training() -> bool:
    # The kernels are CPU code; evaluation (no_grad) keeps Jittor's ops and their numbers.
    return not (jt.flags.use_cuda or jt.flags.no_grad)


def conv_relu(conv: nn.Module, x: jt.Var) -> jt.Var:
    """`nn.relu(conv(x))`, the bias add and ReLU fused on the CPU."""
    if not _cpu_training():
        return nn.relu(conv(x))
    return _Bias(relu=True)(_conv_without_bias(conv, x), conv.bias)


def conv_bias(conv: nn.Module, x: jt.Var) -> jt.Var:
    """`conv(x)`, with the bias add (and its gradient sum) on all CPU threads."""
    if not _cpu_training():
        return conv(x)
    return _Bias(relu=False)(_conv_without_bias(conv, x), conv.bias)


def cat_conv_relu(conv: nn.Module, a: jt.Var, b: jt.Var) -> jt.Var:
    """`conv_relu(conv, cat_channels(a, b))` as two convolutions, one per input, summed.

    For n2n_unet's head (96 + 1 input channels): oneDNN pads 97 channels to 112 and moves
    them between layouts with its slow generic reorder (20 ms a step on one core), and the
    image's channel needs no input gradient. The sum rounds once more than one convolution.
    """
    if not _cpu_training():
        return nn.relu(conv(jt.concat((a, b), dim=1)))
    split = a.shape[1]
    y_a = _conv_without_bias(conv, a, conv.weight[:, :split])
    y_b = _conv_without_bias(conv, b, conv.weight[:, split:])
    return _SumBiasReLU()(y_a, y_b, conv.bias)


def add_relu(a: jt.Var, b: jt.Var) -> jt.Var:
    """`nn.relu(a + b)`, on all CPU threads."""
    if not _cpu_training():
        return nn.relu(a + b)
    return _AddReLU()(a, b)


def conv_bn_relu(conv: nn.Module, bn: BatchNorm2d, x: jt.Var) -> jt.Var:
    """`nn.relu(bn(conv(x)))`, the conv bias, batch norm and ReLU fused when training on CPU."""
    if jt.flags.use_cuda or not bn.is_training():
        return nn.relu(bn(conv(x)))
    y, mean, var = _BatchNormReLU(bn.eps)(
        _conv_without_bias(conv, x), conv.bias, bn.weight, bn.bias
    )
    bn.update_running(mean.detach(), var.detach(), y.shape)
    return y


class BatchNorm2d(nn.Module):
    """Batch norm with PyTorch's BatchNorm2d semantics.

    It normalises with the biased batch variance and updates the running variance with the
    unbiased one (Jittor's nn.BatchNorm uses the biased one). The networks train it on the CPU
    through `conv_bn_relu`; this composed version serves evaluation and CUDA, in float64:
    Jittor's float32 reductions are less exact than PyTorch's, and the batch-norm backward
    amplifies their error (it subtracts nearly equal sums): in float32 n2v_unet's gradients
    were 1.8e-2 off PyTorch's.
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
            # detach(), not stop_grad(): Jittor's stop_grad() marks the Var itself, which
            # would cut the gradient through the batch mean used below.
            self.update_running(mean.detach(), var.detach(), x.shape)
        else:
            mean, var = self.running_mean.float64(), self.running_var.float64()
        # (x - mean) * inv_std, as PyTorch: Jittor's x * scale + (bias - mean * scale) cancels
        # catastrophically when |mean| >> std and gave gradients 5-17% off at batch 16.
        inv_std = 1.0 / jt.sqrt(var + self.eps)
        x_hat = (x - mean.broadcast(x, [0, 2, 3])) * inv_std.broadcast(x, [0, 2, 3])
        x_hat = x_hat.float32()  # (B, C, H, W)
        return x_hat * self.weight.broadcast(x32, [0, 2, 3]) + self.bias.broadcast(x32, [0, 2, 3])

    def update_running(self, mean: jt.Var, var: jt.Var, shape: tuple[int, ...]) -> None:
        """Momentum update from the float64 batch mean and biased variance of a `shape` batch."""
        count = shape[0] * shape[2] * shape[3]
        unbiased = var * (count / max(count - 1, 1))
        m = self.momentum
        self.running_mean.update(self.running_mean * (1 - m) + mean.float32() * m)
        self.running_var.update(self.running_var * (1 - m) + unbiased.float32() * m)


# --- n2n_unet ------------------------------------------------------------------------------


class InputBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        self.conv1 = conv3x3(cin, cout)
        self.conv2 = conv3x3(cout, cout)

    def execute(self, x: jt.Var) -> jt.Var:
        x = conv_relu(self.conv1, x)
        x = conv_relu(self.conv2, x)
        return max_pool2x(x)


class DownBlock(nn.Module):
    def __init__(self, channels: int):
        self.conv = conv3x3(channels, channels)

    def execute(self, x: jt.Var) -> jt.Var:
        return max_pool2x(conv_relu(self.conv, x))


class BottomBlock(nn.Module):
    def __init__(self, channels: int):
        self.conv = conv3x3(channels, channels)
        self.upconv = upconv3x3(channels, channels)

    def execute(self, x: jt.Var) -> jt.Var:
        return conv_bias(self.upconv, conv_relu(self.conv, x))


class UpBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        self.conv1 = conv3x3(cin, cout)
        self.conv2 = conv3x3(cout, cout)
        self.upconv = upconv3x3(cout, cout)

    def execute(self, x: jt.Var) -> jt.Var:
        x = conv_relu(self.conv1, x)
        x = conv_relu(self.conv2, x)
        return conv_bias(self.upconv, x)


class OutputBlock(nn.Module):
    def __init__(self, cin: int):
        self.conv1 = conv3x3(cin, N2N_HEAD[0])
        self.conv2 = conv3x3(N2N_HEAD[0], N2N_HEAD[1])
        self.conv3 = conv3x3(N2N_HEAD[1], 1)

    def execute(self, x: jt.Var, image: jt.Var) -> jt.Var:
        x = cat_conv_relu(self.conv1, x, image)  # conv1 of concat((x, image))
        x = conv_relu(self.conv2, x)
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
        up4 = self.dec_first(cat_channels(up5, pool4))  # (B, 96, 8, 8)
        up3 = self.dec_up(cat_channels(up4, pool3))  # (B, 96, 16, 16)
        up2 = self.dec_up(cat_channels(up3, pool2))  # (B, 96, 32, 32)
        up1 = self.dec_up(cat_channels(up2, pool1))  # (B, 96, 64, 64)
        return self.head(up1, x)  # (B, 1, 64, 64), from concat((up1, x))


# --- n2v_unet ------------------------------------------------------------------------------


class DoubleConv(nn.Module):
    """CSBDeep level: 2 x (3x3 conv + batch norm + ReLU)."""

    def __init__(self, cin: int, mid: int, cout: int):
        self.conv1 = conv3x3(cin, mid)
        self.bn1 = BatchNorm2d(mid, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.conv2 = conv3x3(mid, cout)
        self.bn2 = BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM)

    def execute(self, x: jt.Var) -> jt.Var:
        x = conv_bn_relu(self.conv1, self.bn1, x)
        return conv_bn_relu(self.conv2, self.bn2, x)


class N2VUNet(nn.Module):
    """CSBDeep U-Net of the N2V reference recipe: depth 2, 96 features, residual, stride 4."""

    def __init__(self, base: int = N2V_BASE):
        self.down0 = DoubleConv(1, base, base)
        self.down1 = DoubleConv(base, 2 * base, 2 * base)
        self.middle = DoubleConv(2 * base, 4 * base, 2 * base)
        self.up1 = DoubleConv(4 * base, 2 * base, base)
        self.up0 = DoubleConv(2 * base, base, base)
        self.head = nn.Conv2d(base, 1, 1)

    def execute(self, x: jt.Var) -> jt.Var:
        skip0 = self.down0(x)  # (B, 96, 64, 64)
        skip1 = self.down1(max_pool2x(skip0))  # (B, 192, 32, 32)
        mid = self.middle(max_pool2x(skip1))  # (B, 192, 16, 16)
        up1 = self.up1(cat_channels(mid, skip1, upsample_a=True))  # (B, 96, 32, 32)
        up0 = self.up0(cat_channels(up1, skip0, upsample_a=True))  # (B, 96, 64, 64)
        return self.head(up0) + x  # residual, (B, 1, 64, 64)


def upsample2x(x: jt.Var) -> jt.Var:
    # Nearest neighbour by index arithmetic: exact, and its gradient is a plain 2x2 sum.
    b, c, h, w = x.shape
    return x.reindex([b, c, 2 * h, 2 * w], ["i0", "i1", "i2/2", "i3/2"])


def cat_channels(a: jt.Var, b: jt.Var, upsample_a: bool = False) -> jt.Var:
    """`jt.concat((upsample2x(a) if upsample_a else a, b), dim=1)`, one OpenMP kernel on CPU."""
    if not _cpu_training():
        return jt.concat((upsample2x(a) if upsample_a else a, b), dim=1)
    return _CatChannels(upsample_a)(a, b)


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
            y = conv_relu(getattr(self, f"conv{i}"), y)
            feats[i] = y
        for i in range(1, self.depth):
            y = conv_relu(getattr(self, f"deconv{i}"), y)
            if i in self.skips:
                y = add_relu(y, feats[self.skips[i]])
        return getattr(self, f"deconv{self.depth}")(y) + x  # (B, 1, H, W)


def build_model(arch: str) -> nn.Module:
    if arch == "n2n_unet":
        return N2NUNet()
    if arch in N2V_WIDTHS:
        return N2VUNet(N2V_WIDTHS[arch])
    if arch in REDNET_DEPTH:
        return REDNet(arch)
    raise ValueError(f"unknown arch {arch!r}; expected one of {', '.join(ARCHS)}")
