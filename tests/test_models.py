"""The networks: parameter counts, names and shapes, initial weights, forward parity."""

from __future__ import annotations

import math

import numpy as np
import pytest

from n2v_repro.models import spec as arch_spec
from n2v_repro.models.initialisation import make_init_weights

torch = pytest.importorskip("torch")
from n2v_repro.models import torch_nets as models_torch  # noqa: E402

ARCHS = [
    "n2n_unet", "n2v_unet", "n2v_unet32", "n2v2_unet", "n2v2_unet32",
    "rednet10", "rednet20", "rednet30",
]  # fmt: skip
REDNETS = ["rednet10", "rednet20", "rednet30"]
# n2v_unet: the reference recipe's number. n2n_unet: derived by hand from the port's layers:
# 480 + 20784 (enc_in) + 20784 (enc_down) + 2*20784 (bottom) + 3*83040 (dec_first)
# + 124512 + 2*83040 (dec_up) + 55936 + 18464 + 289 (head). n2v_unet32 (b = 32), by hand:
# 3x3 weights 9*(b + 36 b^2) = 332,064, conv biases 17 b = 544, batch-norm gamma and beta
# 2 * 17 b = 1,088, head b + 1 = 33.
# N2V2 variants: up0.conv1 takes b channels instead of 2b (no top skip), 9 b^2 fewer weights:
# 2,991,841 - 82,944 and 333,729 - 9,216.
# REDNet-N, n = N/2: 640 (conv1) + (2n - 2) * 36928 (64->64 convs and deconvs) + 577 (last).
EXPECTED_TRAINABLE = {
    "n2v_unet": 2_991_841,
    "n2n_unet": 698_017,
    "n2v_unet32": 333_729,
    "n2v2_unet": 2_908_897,
    "n2v2_unet32": 324_513,
    "rednet10": 296_641,
    "rednet20": 665_921,
    "rednet30": 1_035_201,
}


def jittor_models():
    from n2v_repro.backends.jittor_backend import import_jittor

    import_jittor("cpu")
    from n2v_repro.models import jittor_nets as models_jittor

    return models_jittor


@pytest.mark.parametrize("arch", ARCHS)
def test_trainable_parameter_count(arch):
    model = models_torch.build_model(arch)
    assert sum(p.numel() for p in model.parameters()) == EXPECTED_TRAINABLE[arch]


@pytest.mark.parametrize("arch", ARCHS)
def test_torch_names_and_shapes_match_spec(arch):
    state = models_torch.build_model(arch).state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert shapes == arch_spec.parameter_shapes(arch)


@pytest.mark.jittor
@pytest.mark.parametrize("arch", ARCHS)
def test_jittor_names_and_shapes_match_spec(arch):
    models_jittor = jittor_models()
    state = models_jittor.build_model(arch).state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == arch_spec.parameter_shapes(arch)


def test_strides():
    for arch in ARCHS:
        model = models_torch.build_model(arch).eval()
        stride = arch_spec.ARCH_STRIDE[arch]
        with torch.no_grad():
            out = model(torch.zeros(1, 1, stride * 2, stride * 3))
        assert out.shape == (1, 1, stride * 2, stride * 3)


# --- N2V2's max-blur-pool and wiring ---------------------------------------------------------


def numpy_max_blur_pool(x: np.ndarray) -> np.ndarray:
    """CAREamics' MaxBlurPool by hand: the max of each 2x2 window (stride 1, no padding), then
    the binomial (1 2 1)^T (1 2 1) / 16 blur, zero-padded by 1, kept at every second pixel."""
    m = np.maximum.reduce([x[..., :-1, :-1], x[..., 1:, :-1], x[..., :-1, 1:], x[..., 1:, 1:]])
    k = np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]) / 16
    h, w = m.shape[-2:]
    p = np.pad(m.astype(np.float64), [(0, 0)] * (m.ndim - 2) + [(1, 1), (1, 1)])
    blurred = sum(k[i, j] * p[..., i : i + h, j : j + w] for i in range(3) for j in range(3))
    return blurred[..., ::2, ::2]


def blur_pool_inputs() -> list[np.ndarray]:
    rng = np.random.default_rng(4)
    ones = np.ones((1, 1, 4, 4), np.float32)
    return [ones, rng.standard_normal((2, 3, 6, 8)).astype(np.float32)]


def check_blur_pool(pool) -> None:
    """`pool` maps a float32 numpy array to numpy through a framework's max_blur_pool2x."""
    ones, x = blur_pool_inputs()
    # Ones: every window's max is 1 and each output pixel's blur reaches one padded row and
    # one padded column, (3/4)^2 = 9/16: the zero padding of CAREamics' conv.
    np.testing.assert_array_equal(pool(ones), np.full((1, 1, 2, 2), 9 / 16, np.float32))
    got = pool(x)
    assert got.shape == (2, 3, 3, 4)  # H/2, W/2 as max-pool
    np.testing.assert_allclose(got, numpy_max_blur_pool(x), rtol=1e-6, atol=1e-7)


def test_torch_max_blur_pool_is_the_hand_computed_one():
    check_blur_pool(lambda x: models_torch.max_blur_pool2x(torch.from_numpy(x)).numpy())
    kernel = np.array(arch_spec.blur_kernel())
    assert kernel.sum() == 1 and kernel[1, 1] == 0.25 and kernel[0, 0] == 1 / 16


@pytest.mark.jittor
def test_jittor_max_blur_pool_is_the_hand_computed_one():
    models_jittor = jittor_models()
    import jittor as jt

    check_blur_pool(lambda x: models_jittor.max_blur_pool2x(jt.array(x)).numpy())


@pytest.mark.parametrize("arch", ["n2v2_unet32", "n2v_unet32"])
def test_n2v2_wiring(arch):
    """Every U-Net level's input, read with hooks. N2V2: max-blur-pool between the levels,
    up0 sees only the upsampled up1 (no top skip), the output is the head's (no residual);
    the N2V U-Net it varies: max-pool, the top skip and the residual."""
    n2v2 = arch in arch_spec.N2V2_BASE
    model = models_torch.build_model(arch).eval()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in make_init_weights(arch, 2).items()})
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for name, module in model.named_children():
        module.register_forward_hook(lambda m, i, o, name=name: seen.update({name: (i[0], o)}))
    x = torch.randn(1, 1, 16, 12)
    with torch.no_grad():
        out = model(x)
    pool = models_torch.max_blur_pool2x if n2v2 else models_torch.max_pool2x
    up = models_torch.upsample2x
    torch.testing.assert_close(seen["down1"][0], pool(seen["down0"][1]))
    torch.testing.assert_close(seen["middle"][0], pool(seen["down1"][1]))
    level1 = torch.cat((up(seen["middle"][1]), seen["down1"][1]), 1)
    torch.testing.assert_close(seen["up1"][0], level1)
    top = up(seen["up1"][1])
    if not n2v2:
        top = torch.cat((top, seen["down0"][1]), 1)
    torch.testing.assert_close(seen["up0"][0], top)
    torch.testing.assert_close(out, seen["head"][1] if n2v2 else seen["head"][1] + x)


def port_skip_pairs(n: int) -> dict[int, int]:
    """The port's REDNet20/30 rule (its model.py), 0-based as written there: conv i's output
    is kept when (i+1) is even, at most ceil(n/2)-1 of them; transposed conv i takes the
    latest unused one when (i+1+n) is even. Returned 1-based as {deconv: conv}."""
    kept = [i for i in range(n) if (i + 1) % 2 == 0][: math.ceil(n / 2) - 1]
    takers = [i for i in range(n) if (i + 1 + n) % 2 == 0][: len(kept)]
    return {d + 1: c + 1 for d, c in zip(takers, reversed(kept), strict=True)}


def test_rednet_layers_and_skips_follow_the_port():
    for arch, n in (("rednet10", 5), ("rednet20", 10), ("rednet30", 15)):
        names = [layer.name for layer in arch_spec.layers(arch)]
        assert names == [f"conv{i}" for i in range(1, n + 1)] + [
            f"deconv{i}" for i in range(1, n + 1)
        ]
        layer_by_name = {layer.name: layer for layer in arch_spec.layers(arch)}
        assert layer_by_name["conv1"].in_channels == 1
        assert layer_by_name[f"deconv{n}"].out_channels == 1
        assert {layer.kernel for layer in layer_by_name.values()} == {3}
    assert arch_spec.rednet_skips("rednet10") == {}  # the port's REDNet10 has none
    assert arch_spec.rednet_skips("rednet20") == port_skip_pairs(10)
    assert arch_spec.rednet_skips("rednet30") == port_skip_pairs(15)
    # Symmetric: layer c of the 2n feeds layer 2n - c; every second layer.
    assert arch_spec.rednet_skips("rednet30") == {15 - c: c for c in range(2, 15, 2)}


@pytest.mark.parametrize("arch", REDNETS)
def test_rednet_wiring(arch):
    """Every layer's input, read with hooks: convs chain with ReLU; deconv d's ReLU output is
    added to conv c's (c = skips[d]) and ReLU'd; the last deconv's output plus x is returned."""
    model = models_torch.build_model(arch).eval()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in make_init_weights(arch, 2).items()})
    n, skips = arch_spec.REDNET_DEPTH[arch], arch_spec.rednet_skips(arch)
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for name, module in model.named_children():
        module.register_forward_hook(lambda m, i, o, name=name: seen.update({name: (i[0], o)}))
    x = torch.randn(1, 1, 8, 6)
    with torch.no_grad():
        out = model(x)
    relu = torch.relu
    assert seen["conv1"][0] is x
    for i in range(2, n + 1):
        torch.testing.assert_close(seen[f"conv{i}"][0], relu(seen[f"conv{i - 1}"][1]))
    torch.testing.assert_close(seen["deconv1"][0], relu(seen[f"conv{n}"][1]))
    for d in range(1, n):
        expected = relu(seen[f"deconv{d}"][1])
        if d in skips:
            expected = relu(expected + relu(seen[f"conv{skips[d]}"][1]))
        torch.testing.assert_close(seen[f"deconv{d + 1}"][0], expected)
    torch.testing.assert_close(out, seen[f"deconv{n}"][1] + x)
    assert seen["conv1"][1].shape == (1, 64, 4, 3)  # the first conv halves H and W


def test_unknown_arch_is_named():
    with pytest.raises(ValueError, match="resnet"):
        arch_spec.parameter_shapes("resnet")
    with pytest.raises(ValueError, match="resnet"):
        models_torch.build_model("resnet")


@pytest.mark.parametrize("arch", ARCHS)
def test_init_weights_seeded_and_complete(arch):
    first, again, other = (make_init_weights(arch, s) for s in (7, 7, 8))
    assert set(first) == set(arch_spec.parameter_shapes(arch))
    for name, shape in arch_spec.parameter_shapes(arch).items():
        assert first[name].shape == shape and first[name].dtype == np.float32
        np.testing.assert_array_equal(first[name], again[name])
    assert any(not np.array_equal(first[k], other[k]) for k in first)


def test_init_bounds_follow_pytorch_fan_in():
    weights = make_init_weights("n2n_unet", 0)
    # Conv (out, in, 3, 3): fan_in = in*9. Transposed conv (in, out, 3, 3): fan_in = out*9.
    for name, fan_in in [
        ("enc_in.conv2", 48 * 9),
        ("bottom.upconv", 48 * 9),
        ("dec_up.conv1", 144 * 9),
        ("dec_up.upconv", 96 * 9),
    ]:
        bound = 1 / math.sqrt(fan_in)
        w = weights[f"{name}.weight"]
        assert np.abs(w).max() <= bound
        assert np.abs(w).max() > 0.99 * bound  # uniform over the whole interval
        assert np.abs(weights[f"{name}.bias"]).max() <= bound
    bn = make_init_weights("n2v_unet", 0)
    np.testing.assert_array_equal(bn["down0.bn1.weight"], 1)
    np.testing.assert_array_equal(bn["down0.bn1.bias"], 0)
    np.testing.assert_array_equal(bn["down0.bn1.running_mean"], 0)
    np.testing.assert_array_equal(bn["down0.bn1.running_var"], 1)


def test_init_matches_pytorch_distribution_width():
    # Same distribution as PyTorch's own default init: compare standard deviations.
    torch.manual_seed(0)
    layer = torch.nn.ConvTranspose2d(96, 96, 3, stride=2, padding=1, output_padding=1)
    ours = make_init_weights("n2n_unet", 0)["dec_up.upconv.weight"]
    assert ours.std() == pytest.approx(layer.weight.detach().numpy().std(), rel=0.02)


@pytest.mark.jittor
@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_forward_parity_from_same_weights(arch):
    models_jittor = jittor_models()  # prepares Jittor's environment: before `import jittor`
    import jittor as jt

    weights = make_init_weights(arch, 1)
    x = np.random.default_rng(0).normal(size=(1, 1, 64, 64)).astype(np.float32)
    torch_model = models_torch.build_model(arch).eval()
    torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
    jittor_model = models_jittor.build_model(arch)
    jittor_model.load_parameters(weights)
    jittor_model.eval()
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    got = jittor_model(jt.array(x)).numpy()
    assert np.abs(got - expected).max() / np.abs(expected).max() < 1e-4


# --- Keras' initialisation (the paper's recipe) --------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_glorot_weights_follow_keras_fans_and_zero_biases(arch):
    weights = make_init_weights(arch, 3, "glorot_uniform")
    assert set(weights) == set(arch_spec.parameter_shapes(arch))
    for layer in arch_spec.layers(arch):
        if layer.kind == "batch_norm":
            np.testing.assert_array_equal(weights[f"{layer.name}.weight"], 1)
            np.testing.assert_array_equal(weights[f"{layer.name}.bias"], 0)
            continue
        w = torch.from_numpy(weights[f"{layer.name}.weight"])
        # PyTorch's xavier_uniform_ computes Keras' glorot_uniform bound from the stored shape;
        # for a transposed conv it swaps fan_in and fan_out, which leaves their sum alone.
        fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(w)
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        assert float(w.abs().max()) <= limit
        assert float(w.abs().max()) > 0.9 * limit
        if w.numel() > 5000:  # uniform on [-l, l]: std l / sqrt(3)
            assert float(w.std()) == pytest.approx(limit / math.sqrt(3), rel=0.05)
        np.testing.assert_array_equal(weights[f"{layer.name}.bias"], 0)


def test_initialisation_schemes_differ_and_unknown_is_named():
    torch_default = make_init_weights("n2v_unet32", 3, "torch_default")
    glorot = make_init_weights("n2v_unet32", 3, "glorot_uniform")
    assert np.abs(torch_default["up0.conv1.bias"]).max() > 0
    assert not np.array_equal(torch_default["up0.conv1.weight"], glorot["up0.conv1.weight"])
    # The default scheme is PyTorch's: old callers get the same weights as before.
    np.testing.assert_array_equal(
        make_init_weights("n2v_unet32", 3)["head.weight"], torch_default["head.weight"]
    )
    with pytest.raises(ValueError, match="he_normal"):
        make_init_weights("n2v_unet32", 3, "he_normal")
