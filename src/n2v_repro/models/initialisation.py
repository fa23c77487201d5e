"""Framework-neutral initial weights, drawn with numpy: PyTorch's default or Keras' default.

Both frameworks start from the same file, so a difference between their runs comes from the
framework, not from the draw. Two schemes (the recipe key `init`):

- `torch_default` (the port): PyTorch's default for conv and transposed-conv layers,
  kaiming_uniform(a=sqrt(5)) for the weight, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the
  same bound for the bias. fan_in is computed from weight.shape[1:] as PyTorch does, so for a
  transposed conv, stored (in, out, kh, kw), it is out*kh*kw.
- `glorot_uniform` (the paper: Keras' Conv2D defaults, which CSBDeep/n2v keep): weights
  U(-l, l) with l = sqrt(6 / (fan_in + fan_out)), fan_in = in*kh*kw, fan_out = out*kh*kw
  (Keras' fans of a transposed-conv kernel swap in and out, which leaves the sum alone);
  biases zero.

Batch norm starts at weight (gamma) 1, bias (beta) 0, running mean 0, running variance 1 in
both schemes, as in both PyTorch and Keras.
"""

from __future__ import annotations

import math

import numpy as np

from n2v_repro.models.spec import Layer, layers

INIT_SCHEMES = ("torch_default", "glorot_uniform")


def _fan_in(weight_shape: tuple[int, ...]) -> int:
    return math.prod(weight_shape[1:])


def _batch_norm(layer: Layer) -> dict[str, np.ndarray]:
    c = (layer.out_channels,)
    return {
        f"{layer.name}.weight": np.ones(c, np.float32),
        f"{layer.name}.bias": np.zeros(c, np.float32),
        f"{layer.name}.running_mean": np.zeros(c, np.float32),
        f"{layer.name}.running_var": np.ones(c, np.float32),
    }


def _torch_default(layer: Layer, rng: np.random.Generator) -> dict[str, np.ndarray]:
    shapes = layer.shapes()
    weight_shape = shapes[f"{layer.name}.weight"]
    bound = 1.0 / math.sqrt(_fan_in(weight_shape))
    weight = rng.uniform(-bound, bound, size=weight_shape)
    bias = rng.uniform(-bound, bound, size=shapes[f"{layer.name}.bias"])
    return {
        f"{layer.name}.weight": weight.astype(np.float32),
        f"{layer.name}.bias": bias.astype(np.float32),
    }


def glorot_limit(layer: Layer) -> float:
    """Return Keras' glorot_uniform bound sqrt(6 / (fan_in + fan_out)) of a conv layer."""
    receptive = layer.kernel * layer.kernel
    return math.sqrt(6.0 / ((layer.in_channels + layer.out_channels) * receptive))


def _glorot_uniform(layer: Layer, rng: np.random.Generator) -> dict[str, np.ndarray]:
    shapes = layer.shapes()
    limit = glorot_limit(layer)
    weight = rng.uniform(-limit, limit, size=shapes[f"{layer.name}.weight"])
    return {
        f"{layer.name}.weight": weight.astype(np.float32),
        f"{layer.name}.bias": np.zeros(shapes[f"{layer.name}.bias"], np.float32),
    }


_DRAW = {"torch_default": _torch_default, "glorot_uniform": _glorot_uniform}


def make_init_weights(arch: str, seed: int, scheme: str = "torch_default") -> dict[str, np.ndarray]:
    """Draw the initial weights of `arch` for `seed` with `scheme`, by parameter name, float32."""
    if scheme not in _DRAW:
        raise ValueError(f"unknown initialisation {scheme!r}; expected one of {INIT_SCHEMES}")
    rng = np.random.default_rng([seed, 0x1A17])
    weights: dict[str, np.ndarray] = {}
    for layer in layers(arch):
        if layer.kind == "batch_norm":
            weights.update(_batch_norm(layer))
        else:
            weights.update(_DRAW[scheme](layer, rng))
    return weights


def write_init_weights(path: str, arch: str, seed: int, scheme: str = "torch_default") -> None:
    """Write make_init_weights(arch, seed, scheme) to `path` (.npz, atomically)."""
    from n2v_repro.io.formats import save_weights

    save_weights(path, make_init_weights(arch, seed, scheme))
