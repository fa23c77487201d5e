"""Framework-neutral description of the networks: every layer, parameter and buffer.

The table here is the single source of the parameter names and PyTorch-layout shapes that
both model files must produce (tests check them against it) and that `models.initialisation` fills.

- `n2n_unet`: the original port's network, the Noise2Noise U-Net (Lehtinen et al. 2018, as
  in joeylitalien/noise2noise-pytorch): five poolings, so inputs must be multiples of 32.
  One encoder block (`enc_down`) is applied four times and one decoder block (`dec_up`) three
  times, as the port did; their parameters appear once.
- `n2v_unet`: the reference recipe's CSBDeep U-Net (depth 2, 96 first-level features, batch
  norm, residual); 2,991,841 trainable parameters, two poolings (stride 4).
- `n2v_unet32`: the same U-Net with 32 first-level features (CAREamics' default width),
  333,729 trainable parameters: a network that trains in minutes on a CPU.
- `n2v2_unet`, `n2v2_unet32`: the N2V2 variants of these two (Hoeck et al. 2022; CAREamics'
  `n2v2=True`, juglab/n2v's blurpool, skip_skipone, unet_residual=False): max-blur-pool
  instead of max-pool, no skip connection at the top level (so `up0.conv1` takes only the
  upsampled features) and no residual; 2,908,897 and 324,513 trainable parameters.
- `rednet10`, `rednet20`, `rednet30`: the port's REDNets (Mao et al. 2016, as in the port's
  model.py): N/2 3x3 convs then N/2 3x3 transposed convs, 64 channels, ReLU; the first conv
  and the last transposed conv have stride 2 (so inputs must be even); symmetric skips every
  two layers (none in rednet10, as in the port) and a residual with the input.
  docs/models.md lists the choices.
"""

from __future__ import annotations

from dataclasses import dataclass

from n2v_repro.config import N2V2_VARIANT

# conv layers (= transposed-conv layers) of each REDNet: REDNet-N has N/2 of each.
REDNET_DEPTH = {"rednet10": 5, "rednet20": 10, "rednet30": 15}
REDNET_FEATURES = 64
# The N2V2 variant of a CSBDeep U-Net -> the U-Net it varies (config.N2V2_VARIANT inverted).
N2V2_BASE = {variant: base for base, variant in N2V2_VARIANT.items()}
# The order of the config schema's arch enum.
ARCHS = ("n2n_unet", "n2v_unet", "n2v_unet32", *N2V2_BASE, *REDNET_DEPTH)
ARCH_STRIDE = (
    {"n2n_unet": 32, "n2v_unet": 4, "n2v_unet32": 4}
    | {arch: 4 for arch in N2V2_BASE}
    | {arch: 2 for arch in REDNET_DEPTH}
)
BN_BUFFERS = ("running_mean", "running_var")

# Channel widths of n2n_unet (Lehtinen et al., Table 2) and n2v_unet (CSBDeep, base 96).
N2N_FEATURES = 48
N2N_DECODER = 96
N2N_HEAD = (64, 32)
N2V_BASE = 96
# First-level features of each CSBDeep U-Net arch, the N2V2 variants included.
N2V_WIDTHS = {"n2v_unet": N2V_BASE, "n2v_unet32": 32}
N2V_WIDTHS |= {arch: N2V_WIDTHS[base] for arch, base in N2V2_BASE.items()}
# N2V2's max-blur-pool (CAREamics' MaxBlurPool, after Kornia and Zhang 2019): a 2x2 max-pool
# with stride 1, then this binomial 3x3 blur, depthwise, with stride 2 and padding 1, so an
# even H gives H/2 as max-pool does. Its taps; the kernel is their outer product over 16,
# powers of two, exact in any float type. A constant: the nets build it in each call, so it is
# neither a parameter nor a buffer and weight files hold exactly `parameter_shapes`.
BLUR_TAPS = (1.0, 2.0, 1.0)


def blur_kernel() -> list[list[float]]:
    """Return the 3x3 blur of N2V2's max-blur-pool, normalised to sum 1."""
    total = sum(BLUR_TAPS) ** 2
    return [[a * b / total for b in BLUR_TAPS] for a in BLUR_TAPS]


@dataclass(frozen=True)
class Layer:
    """One parametrised layer; `kind` is conv, conv_transpose or batch_norm."""

    name: str
    kind: str
    in_channels: int
    out_channels: int
    kernel: int = 0

    def shapes(self) -> dict[str, tuple[int, ...]]:
        k = self.kernel
        if self.kind == "conv":
            return {
                f"{self.name}.weight": (self.out_channels, self.in_channels, k, k),
                f"{self.name}.bias": (self.out_channels,),
            }
        if self.kind == "conv_transpose":
            # PyTorch (and Jittor) store transposed-conv weights as (in, out, kh, kw).
            return {
                f"{self.name}.weight": (self.in_channels, self.out_channels, k, k),
                f"{self.name}.bias": (self.out_channels,),
            }
        if self.kind == "batch_norm":
            return {
                f"{self.name}.{field}": (self.out_channels,)
                for field in ("weight", "bias", *BN_BUFFERS)
            }
        raise ValueError(f"unknown layer kind {self.kind!r}")


def _conv(name: str, cin: int, cout: int, k: int = 3) -> Layer:
    return Layer(name, "conv", cin, cout, k)


def _n2n_layers() -> list[Layer]:
    f, d = N2N_FEATURES, N2N_DECODER
    return [
        _conv("enc_in.conv1", 1, f),
        _conv("enc_in.conv2", f, f),
        _conv("enc_down.conv", f, f),
        _conv("bottom.conv", f, f),
        Layer("bottom.upconv", "conv_transpose", f, f, 3),
        _conv("dec_first.conv1", 2 * f, d),
        _conv("dec_first.conv2", d, d),
        Layer("dec_first.upconv", "conv_transpose", d, d, 3),
        _conv("dec_up.conv1", d + f, d),
        _conv("dec_up.conv2", d, d),
        Layer("dec_up.upconv", "conv_transpose", d, d, 3),
        _conv("head.conv1", d + 1, N2N_HEAD[0]),
        _conv("head.conv2", N2N_HEAD[0], N2N_HEAD[1]),
        _conv("head.conv3", N2N_HEAD[1], 1),
    ]


def _double_conv(name: str, cin: int, mid: int, cout: int) -> list[Layer]:
    return [
        _conv(f"{name}.conv1", cin, mid),
        Layer(f"{name}.bn1", "batch_norm", mid, mid),
        _conv(f"{name}.conv2", mid, cout),
        Layer(f"{name}.bn2", "batch_norm", cout, cout),
    ]


def _n2v_layers(b: int, n2v2: bool = False) -> list[Layer]:
    # CSBDeep's unet_block: each level's last conv (and the bottom's) narrows to the width
    # of the level above, so the up path's concatenations are 2*192 and 2*96 channels.
    # N2V2 drops the top level's skip: up0 sees only the b upsampled channels.
    return [
        *_double_conv("down0", 1, b, b),
        *_double_conv("down1", b, 2 * b, 2 * b),
        *_double_conv("middle", 2 * b, 4 * b, 2 * b),
        *_double_conv("up1", 4 * b, 2 * b, b),
        *_double_conv("up0", b if n2v2 else 2 * b, b, b),
        _conv("head", b, 1, 1),
    ]


def _rednet_layers(arch: str) -> list[Layer]:
    n, f = REDNET_DEPTH[arch], REDNET_FEATURES
    convs = [_conv("conv1", 1, f)] + [_conv(f"conv{i}", f, f) for i in range(2, n + 1)]
    deconvs = [Layer(f"deconv{i}", "conv_transpose", f, f, 3) for i in range(1, n)]
    return [*convs, *deconvs, Layer(f"deconv{n}", "conv_transpose", f, 1, 3)]


def rednet_skips(arch: str) -> dict[int, int]:
    """Map each REDNet transposed conv d to the conv c whose output it adds.

    Conv c's output (after its ReLU) is added to deconv d's (after its ReLU), then ReLU.
    1-based; layer c of the whole net feeds layer 2n - c, for every even c < n (Mao et al.:
    a skip every two layers, symmetric).

    The port's REDNet20/30 (its `(i + 1) % 2` rule) give exactly these pairs; its REDNet10
    has no skips, only the residual with the input, and so does ours.
    """
    n = REDNET_DEPTH[arch]
    if arch == "rednet10":
        return {}
    return {n - c: c for c in range(2, n, 2)}


def layers(arch: str) -> list[Layer]:
    """Return the parametrised layers of `arch`, in definition order."""
    if arch == "n2n_unet":
        return _n2n_layers()
    if arch in N2V_WIDTHS:
        return _n2v_layers(N2V_WIDTHS[arch], n2v2=arch in N2V2_BASE)
    if arch in REDNET_DEPTH:
        return _rednet_layers(arch)
    raise ValueError(f"unknown arch {arch!r}; expected one of {', '.join(ARCHS)}")


def parameter_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    """Name -> PyTorch-layout shape of every parameter and buffer of `arch`."""
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in layers(arch):
        shapes.update(layer.shapes())
    return shapes


def is_buffer(name: str) -> bool:
    """Check whether `name` is a batch-norm running statistic (saved, never trained)."""
    return name.rsplit(".", 1)[-1] in BN_BUFFERS


def has_batch_norm(arch: str) -> bool:
    return any(layer.kind == "batch_norm" for layer in layers(arch))


def biases_before_batch_norm(arch: str) -> list[str]:
    """List the conv biases directly followed by batch norm.

    BN subtracts the batch mean, so their gradient is zero in exact arithmetic and only
    rounding noise in float32.
    """
    seq = layers(arch)
    return [
        f"{layer.name}.bias"
        for layer, after in zip(seq, seq[1:], strict=False)
        if layer.kind == "conv" and after.kind == "batch_norm"
    ]


def activation_inputs(arch: str) -> list[str]:
    """List the layers whose output goes into a ReLU (n2n_unet's last conv: a leaky ReLU).

    The derivative of these activations jumps at 0, so a unit within rounding of 0 can
    sit on either side in float32 (framework parity, `parity.py`). REDNet's skip sums are
    ReLU inputs too, but sums of two ReLU outputs: never below 0.
    """
    if arch in N2V_WIDTHS:
        return [layer.name for layer in layers(arch) if layer.kind == "batch_norm"]
    if arch == "n2n_unet":
        return [layer.name for layer in layers(arch) if layer.kind == "conv"]
    # REDNet: every conv and transposed conv but the last, linear, one.
    return [layer.name for layer in layers(arch)][:-1]


def pool_inputs(arch: str) -> dict[str, int]:
    """Map each layer whose output a max-pool takes (after its ReLU) to that pool's stride.

    A max-pool's gradient goes to its window's largest input, so two inputs within rounding
    of each other can swap places in float32: a kink of the max (`parity.py`). N2V2's
    max-blur-pool max-pools with stride 1 (overlapping 2x2 windows), the others with 2.
    """
    if arch == "n2n_unet":
        return {"enc_in.conv2": 2, "enc_down.conv": 2}
    if arch in N2V_WIDTHS:
        stride = 1 if arch in N2V2_BASE else 2
        return {"down0.bn2": stride, "down1.bn2": stride}
    return {}


def trainable_names(arch: str) -> list[str]:
    return [name for name in parameter_shapes(arch) if not is_buffer(name)]
