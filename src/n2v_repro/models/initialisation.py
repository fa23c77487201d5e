"""Framework-neutral initial weights: PyTorch's default initialisation, drawn with numpy.

Both frameworks start from the same file, so a difference between their runs comes from the
framework, not from the draw. PyTorch's default for conv and transposed-conv layers is
kaiming_uniform(a=sqrt(5)) for the weight, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the
same bound for the bias. fan_in is computed from weight.shape[1:] as PyTorch does, so for a
transposed conv, stored (in, out, kh, kw), it is out*kh*kw. Batch norm starts at weight 1,
bias 0, running mean 0, running variance 1.
"""

from __future__ import annotations

import math

import numpy as np

from n2v_repro.models.spec import Layer, layers


def _fan_in(weight_shape: tuple[int, ...]) -> int:
    return math.prod(weight_shape[1:])


def _init_layer(layer: Layer, rng: np.random.Generator) -> dict[str, np.ndarray]:
    shapes = layer.shapes()
    if layer.kind == "batch_norm":
        c = (layer.out_channels,)
        return {
            f"{layer.name}.weight": np.ones(c, np.float32),
            f"{layer.name}.bias": np.zeros(c, np.float32),
            f"{layer.name}.running_mean": np.zeros(c, np.float32),
            f"{layer.name}.running_var": np.ones(c, np.float32),
        }
    weight_shape = shapes[f"{layer.name}.weight"]
    bound = 1.0 / math.sqrt(_fan_in(weight_shape))
    weight = rng.uniform(-bound, bound, size=weight_shape)
    bias = rng.uniform(-bound, bound, size=shapes[f"{layer.name}.bias"])
    return {
        f"{layer.name}.weight": weight.astype(np.float32),
        f"{layer.name}.bias": bias.astype(np.float32),
    }


def make_init_weights(arch: str, seed: int) -> dict[str, np.ndarray]:
    """Draw the initial weights of `arch` for `seed`, keyed by parameter name, float32."""
    rng = np.random.default_rng([seed, 0x1A17])
    weights: dict[str, np.ndarray] = {}
    for layer in layers(arch):
        weights.update(_init_layer(layer, rng))
    return weights


def write_init_weights(path: str, arch: str, seed: int) -> None:
    """Write make_init_weights(arch, seed) to `path` (.npz, atomically)."""
    from n2v_repro.io.formats import save_weights

    save_weights(path, make_init_weights(arch, seed))
