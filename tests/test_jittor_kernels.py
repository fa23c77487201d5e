"""The CPU kernels of jittor_nets against Jittor's composed ops and a float64 reference."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.jittor


@pytest.fixture(scope="module")
def jn():
    from n2v_repro.backends.jittor_backend import import_jittor

    import_jittor("cpu")
    from n2v_repro.models import jittor_nets

    return jittor_nets


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


def values_and_grads(jt, fn, inputs, weight):
    """fn(*inputs) and the gradients of sum(fn(*inputs) * weight) to every input."""
    out = fn(*inputs)
    return [out.numpy()] + [g.numpy() for g in jt.grad((out * weight).sum(), list(inputs))]


@pytest.mark.parametrize("transposed", [False, True])
def test_conv_relu_matches_composed_ops(jn, transposed):
    jt, nn = jn.jt, jn.nn
    rng = np.random.default_rng(0)
    conv = nn.ConvTranspose2d(6, 5, 3, 2, 1, 1) if transposed else nn.Conv2d(6, 5, 3, padding=1)
    x = jt.array(rng.standard_normal((3, 6, 8, 8)).astype(np.float32))
    side = 16 if transposed else 8
    weight = jt.array(rng.standard_normal((3, 5, side, side)).astype(np.float32))
    inputs = [x, conv.weight, conv.bias]

    def composed(x, w, b):
        return nn.relu(conv(x))

    def fused(x, w, b):
        return jn.conv_relu(conv, x)

    want = values_and_grads(jt, composed, inputs, weight)
    got = values_and_grads(jt, fused, inputs, weight)
    # Not bit-exact: the fused side's stride-1 conv runs through jittor_winograd's oneDNN
    # kernels, and on a kernel's first compile Jittor's conv tuner may run the reindex
    # version of the reference's; the bias gradient sums in float64. Rounding only.
    for got_array, want_array in zip(got, want, strict=True):
        assert rel(got_array, want_array) < 3e-6


def test_conv_bias_and_add_relu_match_composed_ops(jn):
    jt, nn = jn.jt, jn.nn
    rng = np.random.default_rng(3)
    conv = nn.ConvTranspose2d(6, 5, 3, 2, 1, 1)
    x = jt.array(rng.standard_normal((3, 6, 4, 4)).astype(np.float32))
    weight = jt.array(rng.standard_normal((3, 5, 8, 8)).astype(np.float32))
    inputs = [x, conv.weight, conv.bias]
    got = values_and_grads(jt, lambda x, w, b: jn.conv_bias(conv, x), inputs, weight)
    want = values_and_grads(jt, lambda x, w, b: conv(x), inputs, weight)
    for got_array, want_array in zip(got, want, strict=True):
        assert rel(got_array, want_array) < 1e-6

    a, b = (jt.array(rng.standard_normal((3, 5, 8, 8)).astype(np.float32)) for _ in range(2))
    got = values_and_grads(jt, jn.add_relu, [a, b], weight)
    want = values_and_grads(jt, lambda a, b: nn.relu(a + b), [a, b], weight)
    for got_array, want_array in zip(got, want, strict=True):
        np.testing.assert_array_equal(got_array, want_array)


def test_cat_conv_relu_matches_one_convolution_of_the_concatenation(jn):
    jt, nn = jn.jt, jn.nn
    rng = np.random.default_rng(4)
    conv = nn.Conv2d(7, 5, 3, padding=1)
    a = jt.array(rng.standard_normal((3, 6, 8, 8)).astype(np.float32))
    b = jt.array(rng.standard_normal((3, 1, 8, 8)).astype(np.float32))
    weight = jt.array(rng.standard_normal((3, 5, 8, 8)).astype(np.float32))
    inputs = [a, b, conv.weight, conv.bias]
    got = values_and_grads(jt, lambda a, b, w, c: jn.cat_conv_relu(conv, a, b), inputs, weight)
    want = values_and_grads(
        jt, lambda a, b, w, c: nn.relu(conv(jt.concat((a, b), dim=1))), inputs, weight
    )
    for got_array, want_array in zip(got, want, strict=True):
        assert got_array.shape == want_array.shape
        # Rounding only: the sum of two convolutions rounds once more, and on a cold Jittor
        # cache the reference's convolution may run Jittor's reindex version (a fresh clone
        # measured 1.14e-6).
        assert rel(got_array, want_array) < 3e-6


def test_max_pool_and_concat_match_composed_ops(jn):
    jt, nn = jn.jt, jn.nn
    rng = np.random.default_rng(1)
    # ReLU zeros: ties inside the 2x2 windows, whose gradient goes to the first maximum.
    x = jt.array(np.maximum(rng.standard_normal((2, 3, 8, 6)), 0).astype(np.float32))
    a = jt.array(rng.standard_normal((2, 4, 4, 3)).astype(np.float32))
    b = jt.array(rng.standard_normal((2, 3, 8, 6)).astype(np.float32))
    w_pool = jt.array(rng.standard_normal((2, 3, 4, 3)).astype(np.float32))
    w_cat = jt.array(rng.standard_normal((2, 7, 8, 6)).astype(np.float32))
    pool = values_and_grads(jt, jn.max_pool2x, [x], w_pool)
    want = values_and_grads(jt, lambda v: nn.pool(v, 2, "maximum", stride=2), [x], w_pool)
    for got_array, want_array in zip(pool, want, strict=True):
        np.testing.assert_array_equal(got_array, want_array)

    def composed_cat(p, q):
        return jt.concat((jn.upsample2x(p), q), dim=1)

    cat = values_and_grads(jt, lambda p, q: jn.cat_channels(p, q, upsample_a=True), [a, b], w_cat)
    want = values_and_grads(jt, composed_cat, [a, b], w_cat)
    np.testing.assert_array_equal(cat[0], want[0])
    np.testing.assert_array_equal(cat[2], want[2])
    assert rel(cat[1], want[1]) < 1e-6  # 2x2 gradient sums

    plain = values_and_grads(jt, jn.cat_channels, [b, b * 2], w_cat[:, :6])
    want = values_and_grads(jt, lambda p, q: jt.concat((p, q), dim=1), [b, b * 2], w_cat[:, :6])
    for got_array, want_array in zip(plain, want, strict=True):
        np.testing.assert_array_equal(got_array, want_array)


def test_conv_bn_relu_gradients_match_float64_and_running_stats(jn):
    """Batch-norm inputs with |mean| >> std: the case float32 sums get wrong."""
    torch = pytest.importorskip("torch")
    jt, nn = jn.jt, jn.nn
    rng = np.random.default_rng(2)
    conv = nn.Conv2d(4, 6, 3, padding=1)
    bn = jn.BatchNorm2d(6, eps=jn.BN_EPS, momentum=jn.BN_MOMENTUM)
    bn.weight.update(jt.array(rng.uniform(0.5, 1.5, 6).astype(np.float32)))
    bn.bias.update(jt.array(rng.uniform(-0.2, 0.2, 6).astype(np.float32)))
    conv.bias.update(jt.array(np.full(6, 30.0, np.float32)))  # mean 30, std ~1
    x_np = rng.standard_normal((4, 4, 16, 16)).astype(np.float32)
    w_np = rng.standard_normal((4, 6, 16, 16)).astype(np.float32)
    x = jt.array(x_np)
    params = [conv.weight, conv.bias, bn.weight, bn.bias]
    values = [p.numpy().copy() for p in params]
    bn.train()
    out = jn.conv_bn_relu(conv, bn, x)
    grads = jt.grad((out * jt.array(w_np)).sum(), [x, *params])
    got = [out.numpy()] + [g.numpy() for g in grads]
    running = bn.running_mean.numpy().copy(), bn.running_var.numpy().copy()

    t = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in [x_np, *values]]
    t_mean, t_var = torch.zeros(6, dtype=torch.float64), torch.ones(6, dtype=torch.float64)
    conv_out = torch.nn.functional.conv2d(t[0], t[1], t[2], padding=1)
    t_out = torch.relu(
        torch.nn.functional.batch_norm(
            conv_out, t_mean, t_var, t[3], t[4], True, jn.BN_MOMENTUM, jn.BN_EPS
        )
    )
    t_grads = torch.autograd.grad((t_out * torch.tensor(w_np, dtype=torch.float64)).sum(), t)
    want = [t_out.detach().numpy()] + [g.numpy() for g in t_grads]
    names = ["output", "d x", "d conv weight", "d conv bias", "d bn weight", "d bn bias"]
    for name, got_array, want_array in zip(names, got, want, strict=True):
        if name == "d conv bias":  # exactly zero before batch norm: rounding noise only
            assert np.abs(got_array).max() < 1e-3 * np.abs(got[5]).max()
            continue
        assert rel(got_array, want_array) < 1e-5, name
    np.testing.assert_allclose(running[0], t_mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(running[1], t_var.numpy(), rtol=1e-6)


def conv3x3_float64(x, w, g):
    """A 3x3, padding-1 convolution y of x by w in float64, and the gradients of sum(y * g)."""
    x, w, g = (np.asarray(a, np.float64) for a in (x, w, g))
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    height, width = x.shape[2:]
    shifted = {(i, j): xp[:, :, i : i + height, j : j + width] for i in range(3) for j in range(3)}
    y = sum(np.einsum("nihw,oi->nohw", shifted[i, j], w[:, :, i, j]) for i, j in shifted)
    dw = np.stack([np.einsum("nohw,nihw->oi", g, shifted[k]) for k in sorted(shifted)], -1)
    dxp = np.zeros_like(xp)
    for i, j in shifted:
        dxp[:, :, i : i + height, j : j + width] += np.einsum("nohw,oi->nihw", g, w[:, :, i, j])
    return y, dxp[:, :, 1:-1, 1:-1], dw.reshape(w.shape)


# 32 -> 48 channels: oneDNN's Winograd kernels (on an AVX-512 CPU); 1 -> 16: its direct one.
@pytest.mark.parametrize("channels", [(32, 48), (1, 16)])
@pytest.mark.parametrize("transposed", [False, True])
def test_winograd_conv3x3_matches_float64(jn, transposed, channels):
    from n2v_repro.models import jittor_winograd

    jt, nn = jn.jt, jn.nn
    cin, cout = channels
    rng = np.random.default_rng(5)
    conv = (
        nn.ConvTranspose2d(cin, cout, 3, padding=1)
        if transposed
        else nn.Conv2d(cin, cout, 3, padding=1)
    )
    assert jittor_winograd.applies_to(conv)
    x = rng.standard_normal((2, cin, 12, 12)).astype(np.float32)
    g = rng.standard_normal((2, cout, 12, 12)).astype(np.float32)
    w = conv.weight.numpy()
    # A stride-1 transposed conv is the conv by the flipped weight with in/out swapped.
    w_conv = w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1] if transposed else w
    y, dx, dw_conv = conv3x3_float64(x, w_conv, g)
    dw = dw_conv.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1] if transposed else dw_conv

    x_var = jt.array(x)
    got = values_and_grads(
        jt,
        lambda x, w: jittor_winograd.Conv3x3(transposed)(x, w),
        [x_var, conv.weight],
        jt.array(g),
    )
    for got_array, want_array in zip(got, [y, dx, dw], strict=True):
        assert rel(got_array, want_array) < 2e-5


def test_winograd_applies_to_3x3_stride_1_layers_only(jn):
    from n2v_repro.models import jittor_winograd

    nn = jn.nn
    assert jittor_winograd.applies_to(nn.Conv2d(64, 64, 3, padding=1))
    assert jittor_winograd.applies_to(nn.ConvTranspose2d(64, 64, 3, padding=1))
    assert not jittor_winograd.applies_to(nn.Conv2d(1, 64, 3, stride=2, padding=1))
    assert not jittor_winograd.applies_to(nn.ConvTranspose2d(64, 1, 3, 2, 1, 1))
    assert not jittor_winograd.applies_to(nn.Conv2d(64, 64, 1))
    assert not jittor_winograd.applies_to(nn.Conv2d(64, 64, 3, padding=2, dilation=2))
