"""Framework parity: the same weights and batch through PyTorch and Jittor, against float64.

Four steps, each its own process (the frameworks never share one), exchanging files:
`write_parity_inputs`, `run_framework` in each framework, `run_reference` (PyTorch in
float64 on the CPU, after both), then `compare_frameworks`, which writes every arch's
measures (parity.json/.csv and an HTML table for the report) whether or not they pass.
`check_parity` is the gate: it raises ParityError naming each failing arch's layer and
measure, so a failure stops its own rule while training, evaluation and the report still
complete. DEFINITION says what is compared and why.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from n2v_repro.config import MaskingConfig, OptimizerConfig
from n2v_repro.errors import UserError
from n2v_repro.framework_site import framework_package
from n2v_repro.io.atomic import atomic_open, save_npz
from n2v_repro.io.formats import (
    FormatError,
    arrays_under,
    load_npz,
    read_parity_json,
    write_parity_csv,
    write_parity_json,
)
from n2v_repro.models.initialisation import make_init_weights
from n2v_repro.models.spec import (
    activation_inputs,
    biases_before_batch_norm,
    is_buffer,
    parameter_shapes,
    pool_inputs,
    trainable_names,
)

log = logging.getLogger(__name__)

# Elements of each layer's output kept for the forward measure (all of a smaller layer).
SAMPLE = 65536
# k -> k * HASH_PRIME mod n: distinct positions (the prime exceeds every layer's size),
# spread over the channels, identical in every process and numpy version.
HASH_PRIME = 2654435761
# Units recorded as possibly on the other side of a kink: |pre-activation| <= this x rms.
# Float32 errors are ~1e-5 x rms at most (docs/models.md), so the band holds every flip.
KINK_BAND = 1e-3
# The criterion (DEFINITION): a threshold is FACTOR x PyTorch's own error, within
# [FLOOR, tolerance]. Measured on the CPU (docs/models.md, Parity of every arch): Jittor's
# errors are at most 6x PyTorch's, every fault injected at least 15x its threshold. FLOOR:
# a float32 sum of ~1,000 products (a 3x3 conv over 100 channels) errs by ~sqrt(1000) x
# 6e-8, so PyTorch's lucky smaller errors do not set a threshold below that.
FACTOR = 10.0
FLOOR = 2e-6
# Prescribed Adam gradients: |g| = m x 2^e, m in [1, 2), e from ADAM_EXPONENTS.
ADAM_EXPONENTS = (-40, 0)
SEMANTICS = ("torch", "keras")
CHECKS = ("forward", "grad", "adam")
# Stock Jittor's yardstick: the emulation with all of jittor.nn.BatchNorm's formulas
# (parity.batch_norm), measured as a run of its own under this name.
YARDSTICK = "emulation"
YARDSTICK_CAUSE = "sequential_sums"
# The key of a record's batch-norm finding (parity.finding).
FINDING = "batch_norm_finding"

# Written into parity.json beside the numbers, so the file explains itself.
DEFINITION = f"""Framework parity: PyTorch and Jittor, each against a float64 reference.

Steps, each its own process: (1) `write_parity_inputs`: initial weights and one masked
batch per arch; (2) `run_framework` in each framework (float32; stock Jittor and, when the
run has it, its exact-BN variant): the output of every layer call in the train-mode forward
pass, the gradients of that pass, the eval-mode output, and K Adam steps (each semantics)
from zero weights on prescribed gradients; (3) `run_reference`: the same in float64 with
PyTorch on the CPU, once per batch-norm semantics in use: PyTorch's, and jittor.nn.BatchNorm's
(the running variance keeps the biased batch variance) for stock Jittor on an arch with
batch norm; for the latter also PyTorch float32 with jittor.nn.BatchNorm's formulas
(parity.batch_norm); (4) `compare_frameworks`: the measures below, parity.json /
parity.csv, and the batch-norm finding; `check_parity` is the gate.

Measures, per layer, of a float32 framework's array a against the float64 reference r of
its own semantics: forward, the relative L2 norm ||a - r|| / ||r|| of the layer's output
(over up to {SAMPLE:,} elements at fixed positions, the same in every process), of each
batch-norm statistic's update and of the eval-mode output; gradient, the same over the
layer's parameters together (and their cosine similarity); Adam, the largest element-wise
|a - r| / |r| of the layer's weights after the steps. The loss, one number, is shown and
not judged.

Criterion: Jittor passes a layer when its measure is at most {FACTOR:g} x the error of
PyTorch float32 computing the same formulas (its yardstick), at least {FLOOR:g}: two float32
implementations of one computation err alike, so an error well beyond the yardstick's is a
real difference. For PyTorch's semantics the yardstick is PyTorch itself and must be within
the tolerance, which also caps the threshold. For stock Jittor's batch norm it is PyTorch
with jittor.nn.BatchNorm's formulas (E[x^2] - E[x]^2 in float32, x * w + (b - mean * w)),
whose rounding is Jittor's choice, not a fault: no tolerance applies to it, and how far it
takes Jittor from PyTorch is reported apart (batch_norm_finding: parity.finding). The
forward check names the first failing layer in forward order (where a fault enters), the
gradient and Adam checks the layer furthest beyond its threshold.

Kinks: a unit whose pre-activation lies within rounding of a ReLU's kink can be on one side
in a framework and on the other in float64, and pass its gradient in one of them only: in
n2v_unet a handful of such units move Jittor's gradients by 5e-5, 20x its rounding. The
forward pass is continuous there; for the gradients each framework records its units
within {KINK_BAND:g} x rms of a kink, and the reference computes the gradients again with the
framework's own values at those whose side differs (`kink_flips_*`), so that each
framework is measured against float64 at its own kink sides. A max-pool has kinks too: its
gradient goes to its window's largest input, so for every window whose two largest inputs lie
within {KINK_BAND:g} x rms of each other the framework records both, and where float64 orders
them the other way the reference takes the framework's values for the pair (N2V2's stride-1
max-pool, four times as many windows, moved Jittor's n2v2_unet gradients by 3e-4 through two
such pairs). Conv biases directly before
batch norm are left out (their exact gradient is zero). Adam runs apart from the network,
on gradients from 2^{ADAM_EXPONENTS[0]} to 2, below and above epsilon, so that where
epsilon is added matters.
"""


class ParityError(UserError, RuntimeError):
    """The frameworks disagree beyond the criterion."""


def relative_l2(a: np.ndarray, reference: np.ndarray) -> float:
    """Return ||a - reference|| / ||reference|| in float64; 0 when both are zero."""
    ref = np.asarray(reference, np.float64).reshape(-1)
    diff = float(np.linalg.norm(np.asarray(a, np.float64).reshape(-1) - ref))
    scale = float(np.linalg.norm(ref))
    return diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two arrays as vectors (1 when both are zero)."""
    a64, b64 = (np.asarray(x, np.float64).reshape(-1) for x in (a, b))
    norms = float(np.linalg.norm(a64) * np.linalg.norm(b64))
    return float(a64 @ b64) / norms if norms > 0 else float(not a64.any() and not b64.any())


def max_elementwise(a: np.ndarray, reference: np.ndarray) -> float:
    """Largest |a - reference| / |reference| over the elements (reference nowhere zero)."""
    ref = np.asarray(reference, np.float64)
    return float(np.max(np.abs(np.asarray(a, np.float64) - ref) / np.abs(ref)))


def sample_index(size: int) -> np.ndarray:
    """Flat positions of the elements of a `size`-element layer output that are compared."""
    if size <= SAMPLE:
        return np.arange(size, dtype=np.int64)
    return np.sort(np.arange(SAMPLE, dtype=np.int64) * HASH_PRIME % size)


def load_parity_file(path: str | Path, *keys: str) -> dict[str, np.ndarray]:
    """Read one of parity's .npz files; a file from an older parity step is named."""
    arrays = load_npz(path)
    missing = [key for key in keys if key not in arrays]
    if missing:
        raise FormatError(
            f"{path}: lacks {missing}: written by an older version of the parity steps; "
            "remove results/parity/ and run again"
        )
    return arrays


def threshold(torch_error: float, tolerance: float) -> float:
    """Apply the criterion: FACTOR x PyTorch's own error, clipped to [FLOOR, tolerance]."""
    return min(tolerance, max(FLOOR, FACTOR * torch_error))


# --- 1. inputs -----------------------------------------------------------------------------

PATCH = 64


def make_batch(batch_size: int, seed: int, masking: MaskingConfig) -> dict[str, np.ndarray]:
    """One N2V-masked batch of random normal 64x64 patches, (B, 1, 64, 64) each."""
    from n2v_repro.training.masking import mask_patches

    rng = np.random.default_rng([seed, 0x9A7])
    patches = rng.standard_normal((batch_size, PATCH, PATCH)).astype(np.float32)
    inputs, targets, mask = mask_patches(
        patches, rng, masking.kind, masking.percentage, masking.radius
    )
    return {"inputs": inputs[:, None], "targets": targets[:, None], "mask": mask[:, None]}


def write_parity_inputs(
    path: str | Path,
    arch: str,
    seed: int,
    batch_size: int,
    masking: MaskingConfig,
    init: str = "torch_default",
) -> None:
    """Write the initial weights (`init` scheme, as the recipe trains them), one batch, the seed."""
    weights = make_init_weights(arch, seed, init)
    arrays = {f"weights/{k}": v for k, v in weights.items()}
    arrays |= make_batch(batch_size, seed, masking)
    arrays["seed"] = np.array(seed)
    save_npz(path, arrays)


def adam_gradients(arch: str, seed: int, step: int) -> dict[str, np.ndarray]:
    """Prescribed float32 gradients of Adam step `step` (1-based) for every parameter.

    Each element keeps its sign and power of two 2^e (e in ADAM_EXPONENTS) over the steps,
    so the weights never cancel to zero; its mantissa changes with the step. Integer
    arithmetic on the generator's raw bits: the same in every process and numpy version.
    """
    low, high = ADAM_EXPONENTS
    base = np.random.default_rng([seed, 0xADA]).bit_generator
    per_step = np.random.default_rng([seed, 0xADA, step]).bit_generator
    grads = {}
    for name in trainable_names(arch):
        shape = parameter_shapes(arch)[name]
        size = math.prod(shape)
        bits = base.random_raw(size)
        exponent = low + (bits % np.uint64(high - low + 1)).astype(np.int64)
        sign = np.where((bits >> np.uint64(32)) & np.uint64(1), -1.0, 1.0)
        mantissa = 1.0 + (per_step.random_raw(size) >> np.uint64(41)) / 2.0**23
        grads[name] = np.ldexp(sign * mantissa, exponent).astype(np.float32).reshape(shape)
    return grads


def adam_reference(
    arch: str, settings: OptimizerConfig, seed: int, steps: int
) -> dict[str, np.ndarray]:
    """Weights after `steps` Adam steps from zero on `adam_gradients`, in float64.

    Written from the papers' formulas, apart from backends.base: semantics "torch"
    (torch.optim.Adam) adds eps to the bias-corrected sqrt(v), "keras" (Keras', Jittor's)
    to the raw sqrt(v) with the bias correction folded into the step size.
    """
    b1, b2 = settings.betas
    lr, eps = settings.lr, settings.eps
    names = trainable_names(arch)
    shapes = parameter_shapes(arch)
    p = {n: np.zeros(shapes[n]) for n in names}
    m = {n: np.zeros(shapes[n]) for n in names}
    v = {n: np.zeros(shapes[n]) for n in names}
    for t in range(1, steps + 1):
        grads = adam_gradients(arch, seed, t)
        for n in names:
            g = grads[n].astype(np.float64)
            m[n] = b1 * m[n] + (1 - b1) * g
            v[n] = b2 * v[n] + (1 - b2) * g * g
            if settings.semantics == "torch":
                m_hat, v_hat = m[n] / (1 - b1**t), v[n] / (1 - b2**t)
                p[n] = p[n] - lr * m_hat / (np.sqrt(v_hat) + eps)
            else:
                lr_t = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
                p[n] = p[n] - lr_t * m[n] / (np.sqrt(v[n]) + eps)
    return p


# --- 2. one framework ----------------------------------------------------------------------


def _layer_arrays(
    recorded: Mapping[str, np.ndarray], weights: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Keep the sampled layer outputs (in call order) and the batch-norm statistics' steps."""
    names = [name for name in recorded if not is_buffer(name)]
    out: dict[str, np.ndarray] = {"layer_names": np.array(names)}
    for name in names:
        flat = recorded[name].reshape(-1)
        out[f"layer/{name}"] = flat[sample_index(flat.size)]
    for name in recorded:
        if is_buffer(name):
            increment = np.asarray(recorded[name], np.float64) - weights[name].astype(np.float64)
            out[f"buffer/{name}"] = increment
    return out


def layer_base(name: str) -> str:
    """Return the layer of a call name (`enc_down.conv#2` -> `enc_down.conv`)."""
    return name.split("#", 1)[0]


def _kink_units(arch: str, recorded: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Index and value of every unit within KINK_BAND x rms of a kink, per layer call."""
    activated = set(activation_inputs(arch))
    out = {}
    for name, value in recorded.items():
        if layer_base(name) not in activated:
            continue
        flat = value.reshape(-1)
        rms = float(np.sqrt(np.mean(np.square(flat, dtype=np.float64))))
        index = np.flatnonzero(np.abs(flat) <= KINK_BAND * rms)
        out[f"kink/{name}/index"], out[f"kink/{name}/value"] = index, flat[index]
    return out


def pool_windows(value: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the 2x2 max-pool windows (`stride` 1 or 2, no padding) of a (B, C, H, W) output.

    Two arrays, each (..., 4): the windows' inputs after the ReLU and their flat indices.
    """
    _, _, height, width = value.shape
    rows, cols = (height - 2) // stride + 1, (width - 2) // stride + 1
    flat = np.arange(value.size).reshape(value.shape)
    relu = np.maximum(value, 0)

    def corners(a: np.ndarray) -> np.ndarray:
        return np.stack(
            [a[:, :, dy : dy + stride * (rows - 1) + 1 : stride,
               dx : dx + stride * (cols - 1) + 1 : stride]
             for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1))],
            axis=-1,
        )  # fmt: skip

    return corners(relu), corners(flat)


def _pool_ties(arch: str, recorded: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Find the near-ties of every layer call feeding a max-pool.

    Each window whose two largest inputs (after the ReLU, the larger positive) lie within
    KINK_BAND x rms of each other: the flat indices of (second, first), (n, 2), and the
    framework's values there.
    """
    strides = pool_inputs(arch)
    out = {}
    for name, value in recorded.items():
        stride = strides.get(layer_base(name))
        if stride is None:
            continue
        windows, index = pool_windows(value, stride)
        order = np.argsort(windows, axis=-1, kind="stable")[..., -2:]
        top = np.take_along_axis(windows, order, -1)
        rms = float(np.sqrt(np.mean(np.square(value, dtype=np.float64))))
        near = (top[..., 1] > 0) & (top[..., 1] - top[..., 0] <= KINK_BAND * rms)
        pairs = np.take_along_axis(index, order, -1)[near]  # (n, 2)
        out[f"tie/{name}/index"], out[f"tie/{name}/value"] = pairs, value.reshape(-1)[pairs]
    return out


def network_result(backend: Any, arch: str, arrays: Mapping[str, np.ndarray]) -> dict:
    """Return a float32 backend's eval output, traced loss, gradients, layers, kinks, ties."""
    weights = arrays_under(arrays, "weights")
    batch = (arrays["inputs"], arrays["targets"], arrays["mask"])
    backend.load_weights(weights)
    out: dict[str, np.ndarray] = {"eval_output": backend.predict(batch[0])}
    loss, grads, recorded = backend.traced_loss_and_grads(*batch)
    out["loss"] = np.array(loss)
    out |= {f"grad/{k}": v for k, v in grads.items()}
    out |= _layer_arrays(recorded, weights)
    out |= _kink_units(arch, recorded)
    out |= _pool_ties(arch, recorded)
    return out


def run_framework(
    framework: str,
    arch: str,
    inputs_path: str | Path,
    output_path: str | Path,
    steps: int,
    optimizer: OptimizerConfig,
    device: str = "auto",
    threads: int | None = None,
) -> None:
    """One framework's float32 results on the parity inputs (DEFINITION, step 2)."""
    from n2v_repro.backends.registry import make_backend

    arrays = load_parity_file(inputs_path, "seed")
    seed = int(arrays["seed"])
    backend = make_backend(framework, arch, device=device, threads=threads)
    out = network_result(backend, arch, arrays)
    zeros = {name: np.zeros_like(v) for name, v in arrays_under(arrays, "weights").items()}
    for adam_semantics in SEMANTICS:
        backend.load_weights(zeros)
        backend.configure_optimizer(dataclasses.replace(optimizer, semantics=adam_semantics))
        for step in range(1, steps + 1):
            backend.apply_gradients(adam_gradients(arch, seed, step))
        after = backend.get_weights()
        out |= {f"adam_{adam_semantics}/{k}": after[k] for k in trainable_names(arch)}
    out["adam_settings"] = np.array([optimizer.lr, *optimizer.betas, optimizer.eps])
    out["steps"], out["seed"] = np.array(steps), np.array(seed)
    log.info("%s %s: loss %.6g", framework, arch, float(out["loss"]))
    save_npz(output_path, out)


# --- 3. the float64 reference --------------------------------------------------------------


def kink_flips(
    recorded: Mapping[str, np.ndarray], result: Mapping[str, np.ndarray]
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], float]:
    """Find a framework's units on the other side of a kink than float64's.

    ReLU kinks (`kink/`): units whose sign differs; max-pool ties (`tie/`): both units of
    each pair that float64 orders the other way. Returns {layer call: (flat indices, the
    framework's values)} and the largest |float64 pre-activation| (for a pair: difference)
    among them in units of the layer's rms (0 when none).
    """
    flips, farthest = {}, 0.0
    for key, index in result.items():
        if not (key.startswith("kink/") and key.endswith("/index")):
            continue
        name = key[len("kink/") : -len("/index")]
        values = result[f"kink/{name}/value"]
        exact = recorded[name].reshape(-1)
        other_side = (values > 0) != (exact[index] > 0)
        if other_side.any():
            flips[name] = (index[other_side], values[other_side].astype(np.float64))
            rms = float(np.sqrt(np.mean(np.square(exact))))
            farthest = max(farthest, float(np.abs(exact[index[other_side]]).max()) / rms)
    for key, pairs in result.items():
        if not (key.startswith("tie/") and key.endswith("/index")):
            continue
        name = key[len("tie/") : -len("/index")]
        exact = recorded[name].reshape(-1)
        relu = np.maximum(exact[pairs], 0)  # (n, 2): the framework's (second, first)
        swapped = relu[:, 0] > relu[:, 1]
        if not swapped.any():
            continue
        index = pairs[swapped].reshape(-1)
        values = result[f"tie/{name}/value"][swapped].reshape(-1).astype(np.float64)
        if name in flips:  # a unit can also sit at a ReLU kink: the same framework value
            index = np.concatenate((flips[name][0], index))
            values = np.concatenate((flips[name][1], values))
        index, first = np.unique(index, return_index=True)
        flips[name] = (index, values[first])
        rms = float(np.sqrt(np.mean(np.square(exact))))
        gap = float(np.abs(relu[swapped, 1] - relu[swapped, 0]).max())
        farthest = max(farthest, gap / rms)
    return flips, farthest


def batch_norm_semantics(framework: str, arch: str) -> str:
    """Return whose batch norm `framework` computes `arch` with: torch's or (stock) jittor's."""
    from n2v_repro.backends.registry import batch_norm

    stock_jittor = framework_package(framework) == "jittor" and batch_norm(framework, arch)
    return "jittor" if stock_jittor == "stock" else "torch"


def run_reference(
    arch: str,
    inputs_path: str | Path,
    framework_paths: Mapping[str, str | Path],
    output_path: str | Path,
    threads: int | None = None,
) -> None:
    """Compute the float64 references (DEFINITION, step 3) at their own and each run's kinks.

    One per batch-norm semantics the frameworks compute (`batch_norm_semantics`), under its
    name; for stock Jittor's also PyTorch float32 with each of its formulas (`batch_norm`
    module: `emulation/<cause>/`), the last of them its yardstick.
    """
    import torch

    from n2v_repro.backends.torch_backend import (
        TorchBackend,
        float64_loss_and_grads,
        float64_predict,
    )
    from n2v_repro.parity.batch_norm import EMULATIONS, JittorFormulas

    if threads:
        torch.set_num_threads(threads)
    arrays = load_npz(inputs_path)
    weights = arrays_under(arrays, "weights")
    batch = (arrays["inputs"], arrays["targets"], arrays["mask"])
    runs = {fw: load_parity_file(path, "layer_names") for fw, path in framework_paths.items()}
    measured = {fw: batch_norm_semantics(fw, arch) for fw in runs}
    out: dict[str, np.ndarray] = {}
    if "jittor" in measured.values():
        for cause, module in EMULATIONS.items():
            backend = TorchBackend(arch, device="cpu", threads=threads, batch_norm=module)
            result = network_result(backend, arch, arrays)
            out |= {f"emulation/{cause}/{k}": v for k, v in result.items()}
        runs[YARDSTICK] = arrays_under(out, f"emulation/{YARDSTICK_CAUSE}")
        measured[YARDSTICK] = "jittor"
    for semantics in dict.fromkeys(measured.values()):
        module = JittorFormulas if semantics == "jittor" else None
        loss, grads, recorded = float64_loss_and_grads(arch, weights, *batch, batch_norm=module)
        exact = {"eval_output": float64_predict(arch, weights, batch[0], module)}
        exact |= {"loss": np.array(loss), **{f"grad/{k}": v for k, v in grads.items()}}
        exact |= _layer_arrays(recorded, weights)
        for run in (r for r, s in measured.items() if s == semantics):
            flips, farthest = kink_flips(recorded, runs[run])
            out[f"kink_flips/{run}"] = np.array(sum(len(i) for i, _ in flips.values()))
            out[f"kink_distance/{run}"] = np.array(farthest)
            log.info("%s %s: %d units across a kink", run, arch, out[f"kink_flips/{run}"])
            if flips:
                _, matched, _ = float64_loss_and_grads(
                    arch, weights, *batch, replace=flips, batch_norm=module
                )
                exact |= {f"grad_{run}/{k}": v for k, v in matched.items()}
        out |= {f"{semantics}/{k}": v for k, v in exact.items()}
    save_npz(output_path, out)


# --- 4. comparison -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Measure:
    """One layer, parameter or Adam semantics and parameter: both frameworks' measures."""

    name: str
    torch: float
    jittor: float
    threshold: float
    cosine: float | None = None

    @property
    def ratio(self) -> float:
        return self.jittor / self.threshold

    def failed(self, tolerance: float) -> bool:
        return self.jittor > self.threshold or self.torch > tolerance


def _measures(
    names: Sequence[str],
    torch_arrays: Mapping[str, np.ndarray],
    jittor_arrays: Mapping[str, np.ndarray],
    reference: Mapping[str, Mapping[str, np.ndarray]],
    tolerance: float,
    measure: Any = relative_l2,
    with_cosine: bool = False,
) -> list[Measure]:
    """`reference[framework][name]` is the float64 value that framework is measured against."""
    out = []
    for name in names:
        e_torch = measure(torch_arrays[name], reference["torch"][name])
        e_jittor = measure(jittor_arrays[name], reference["jittor"][name])
        cos = cosine(jittor_arrays[name], reference["jittor"][name]) if with_cosine else None
        out.append(Measure(name, e_torch, e_jittor, threshold(e_torch, tolerance), cos))
    return out


def named_measure(check: str, measures: Sequence[Measure], tolerance: float) -> Measure:
    """Pick the measure a check reports.

    Forward: its first failing layer (where a fault enters); gradient and Adam: the failing
    one furthest beyond its threshold; when none fails, the one closest to it.
    """
    failing = [m for m in measures if m.failed(tolerance)]
    if failing and check == "forward":
        return failing[0]
    return max(failing or measures, key=lambda m: (m.torch > tolerance, m.ratio))


def _structure_problem(torch_result: Mapping, jittor_result: Mapping, ref: Mapping) -> str | None:
    names = [list(r["layer_names"]) for r in (torch_result, jittor_result, ref)]
    if names[0] != names[2] or names[1] != names[2]:
        return f"the layer calls differ: float64 {names[2]}, PyTorch {names[0]}, Jittor {names[1]}"
    same_layers = all(
        np.array_equal(torch_result[k], jittor_result[k])
        for k in torch_result
        if k.startswith(("layer/", "grad/"))
    )
    if same_layers:
        return "Jittor's layer outputs and gradients are PyTorch's, bit for bit: one computation"
    return None


def layer_parameters(arch: str, leave_out: Sequence[str] = ()) -> dict[str, list[str]]:
    """Map each layer to its trainable parameters (but those in `leave_out`), in order.

    Gradients and Adam are compared per layer: one parameter alone can be a single number
    (a last conv's bias), whose error is one draw, too noisy for a yardstick.
    """
    groups: dict[str, list[str]] = {}
    for name in trainable_names(arch):
        if name not in leave_out:
            groups.setdefault(name.rsplit(".", 1)[0], []).append(name)
    return groups


def by_layer(
    arrays: Mapping[str, np.ndarray], groups: Mapping[str, list[str]]
) -> dict[str, np.ndarray]:
    """Each layer's parameters' arrays, flattened and joined, by layer."""
    return {
        layer: np.concatenate([np.ravel(arrays[n]) for n in names])
        for layer, names in groups.items()
    }


def compare_arch(
    arch: str,
    torch_path: str | Path,
    jittor_path: str | Path,
    reference_path: str | Path,
    tolerance: float,
    framework: str = "jittor",
) -> dict[str, Any]:
    """One record of measures for `arch` in `framework` (a Jittor; DEFINITION, step 4).

    Every layer's measures are in `details`; an arch with stock Jittor's batch norm adds
    the finding on its difference from PyTorch (`batch_norm_finding`).
    """
    keys = ("layer_names", "adam_settings")
    results = {fw: load_parity_file(path, *keys) for fw, path in
               (("torch", torch_path), ("jittor", jittor_path))}  # fmt: skip
    semantics = batch_norm_semantics(framework, arch)
    ref_file = load_parity_file(reference_path, f"{semantics}/layer_names")
    ref = arrays_under(ref_file, semantics)
    # Measured against the same semantics in PyTorch float32: PyTorch itself, or for stock
    # Jittor's batch norm PyTorch with Jittor's formulas (parity.batch_norm).
    yardstick, yardstick_run = results["torch"], "torch"
    if semantics == "jittor":
        yardstick = arrays_under(ref_file, f"emulation/{YARDSTICK_CAUSE}")
        yardstick_run = YARDSTICK
    network = {"torch": yardstick, "jittor": results["jittor"]}
    runs = {"torch": yardstick_run, "jittor": framework}
    # Stock Jittor's formulas are judged by their own rounding, not by PyTorch's tolerance.
    cap = tolerance if semantics == "torch" else math.inf
    record: dict[str, Any] = {
        "arch": arch, "framework": framework, "batch_norm_semantics": semantics,
        "steps": int(results["torch"]["steps"]),
    }  # fmt: skip
    problem = _structure_problem(results["torch"], results["jittor"], ref)
    if problem is not None and problem.startswith("the layer calls"):
        return record | {"passed": False, "failure": problem, "details": {}}

    # Forward: every layer call in order, the batch-norm statistics' updates and the
    # eval-mode output, all against the one float64 forward pass.
    forward_arrays = []
    for source in (*network.values(), ref):
        arrays = arrays_under(source, "layer") | arrays_under(source, "buffer")
        arrays["output (eval mode)"] = source["eval_output"]
        forward_arrays.append(arrays)
    torch_fwd, jittor_fwd, exact_fwd = forward_arrays
    names = [*ref["layer_names"], *arrays_under(ref, "buffer"), "output (eval mode)"]
    exact = {"torch": exact_fwd, "jittor": exact_fwd}
    forward = _measures(names, torch_fwd, jittor_fwd, exact, cap)

    # Gradients, per layer: each run against float64 at its own kink sides.
    # Conv biases directly before batch norm: their exact gradient is zero (rounding noise).
    groups = layer_parameters(arch, biases_before_batch_norm(arch))
    plain_grads = by_layer(arrays_under(ref, "grad"), groups)
    matched = {
        side: by_layer(arrays_under(ref, f"grad_{run}") or arrays_under(ref, "grad"), groups)
        for side, run in runs.items()
    }
    torch_grads, jittor_grads = (
        by_layer(arrays_under(r, "grad"), groups) for r in network.values()
    )
    grads = _measures(list(groups), torch_grads, jittor_grads, matched, cap, with_cosine=True)
    unmatched = max(relative_l2(jittor_grads[n], plain_grads[n]) for n in groups)

    # Adam on prescribed gradients, per layer, against float64 numpy with the same settings.
    settings = [tuple(r["adam_settings"].tolist()) for r in results.values()]
    if settings[0] != settings[1] or int(results["jittor"]["steps"]) != record["steps"]:
        raise ValueError(f"{arch}: the frameworks ran Adam with other settings: {settings}")
    lr, b1, b2, eps = settings[0]
    all_params = layer_parameters(arch)
    adam = []
    seed = int(results["torch"]["seed"])
    for adam_semantics in SEMANTICS:
        config = OptimizerConfig(lr=lr, betas=(b1, b2), eps=eps, semantics=adam_semantics)
        after = {
            "reference": adam_reference(arch, config, seed, record["steps"]),
            **{fw: arrays_under(r, f"adam_{adam_semantics}") for fw, r in results.items()},
        }
        after = {
            key: {f"{adam_semantics}: {k}": v for k, v in by_layer(value, all_params).items()}
            for key, value in after.items()
        }
        exact = {"torch": after["reference"], "jittor": after["reference"]}
        adam += _measures(
            list(after["reference"]), after["torch"], after["jittor"], exact, tolerance,
            measure=max_elementwise,
        )  # fmt: skip

    checks = {"forward": forward, "grad": grads, "adam": adam}
    caps = {"forward": cap, "grad": cap, "adam": tolerance}
    failures = []
    named = {
        check: named_measure(check, measures, caps[check]) for check, measures in checks.items()
    }
    for check, shown in named.items():
        record |= {
            f"{check}_layer": shown.name,
            f"{check}_error_torch": shown.torch,
            f"{check}_error_jittor": shown.jittor,
            f"{check}_threshold": shown.threshold,
        }
        if shown.failed(caps[check]):
            failures.append(describe(check, shown, caps[check], semantics))
    record["grad_cosine_jittor"] = named["grad"].cosine
    record["grad_error_jittor_unmatched"] = unmatched
    for side, run in runs.items():
        record[f"kink_flips_{side}"] = int(ref_file[f"kink_flips/{run}"])
    if problem is not None:
        failures.append(problem)
    record["passed"] = not failures
    record["failure"] = "; ".join(failures)
    record["details"] = {
        "kink_distance": {
            side: float(ref_file[f"kink_distance/{run}"]) for side, run in runs.items()
        },
        # The loss is one number, its error one draw: shown, not judged (the layers are).
        "loss": {side: relative_l2(r["loss"], ref["loss"]) for side, r in network.items()},
        **{check: [dataclasses.asdict(m) for m in measures] for check, measures in checks.items()},
    }
    if semantics == "jittor":
        from n2v_repro.parity.finding import batch_norm_finding

        record[FINDING] = batch_norm_finding(arch, results["torch"], results["jittor"], ref_file)
    return record


CHECK_TITLES = {"forward": "forward", "grad": "gradient", "adam": "Adam"}
# What a semantics' yardstick is, in a failure message.
YARDSTICK_TITLE = {"torch": "PyTorch", "jittor": "PyTorch with Jittor's batch-norm formulas"}


def describe(check: str, measure: Measure, tolerance: float, semantics: str = "torch") -> str:
    """Put one failing measure in words: the check, the layer, both runs' errors."""
    where = f"{CHECK_TITLES[check]} at {measure.name}"
    if measure.torch > tolerance:
        return (
            f"{where}: PyTorch float32 {measure.torch:.3g} from float64, beyond the "
            f"tolerance {tolerance:g}"
        )
    return (
        f"{where}: Jittor {measure.jittor:.3g} from float64 > threshold {measure.threshold:.3g} "
        f"({FACTOR:g} x {YARDSTICK_TITLE[semantics]}'s {measure.torch:.3g})"
    )


def compare_frameworks(
    archs: list[str],
    framework_paths: Mapping[str, Sequence[str | Path]],
    reference_paths: Sequence[str | Path],
    json_path: str | Path,
    csv_path: str | Path,
    tolerance: float,
    html_path: str | Path | None = None,
    finding_html_path: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Write parity.json/.csv (and the HTML tables) for every arch and Jittor, passed or not.

    `framework_paths`: each framework's results, one per arch, torch's among them. Failing
    records are logged; `check_parity` turns them into an error.
    """
    torch_paths = framework_paths["torch"]
    records = [
        compare_arch(arch, torch_paths[i], paths[i], reference_paths[i], tolerance, framework)
        for i, arch in enumerate(archs)
        for framework, paths in framework_paths.items()
        if framework != "torch"
    ]
    write_parity_json(json_path, tolerance, DEFINITION, records)
    write_parity_csv(csv_path, records)
    if html_path is not None:
        write_parity_html(html_path, records, tolerance)
    if finding_html_path is not None:
        from n2v_repro.parity.finding import write_finding_html

        write_finding_html(finding_html_path, records)
    for r in records:
        log.info("parity %s", {k: v for k, v in r.items() if k not in ("details", FINDING)})
    message = failure_message(records)
    if message is not None:
        log.error("%s", message)
    return records


def run_name(record: Mapping[str, Any]) -> str:
    """`arch (framework)`: one parity record's name in messages, tables and figures."""
    return f"{record['arch']} ({record.get('framework', 'jittor')})"


def failure_message(records: list[dict[str, Any]]) -> str | None:
    """Describe every failing record (its failing checks: layer and measure); None if none."""
    failed = [r for r in records if not r["passed"]]
    if not failed:
        return None
    lines = [f"{run_name(r)}: {r['failure']}" for r in failed]
    return "PyTorch and Jittor disagree:\n  " + "\n  ".join(lines)


def check_parity(json_path: str | Path, passed_path: str | Path) -> list[str]:
    """Gate on parity.json: raise ParityError naming every failing arch, layer and measure.

    When every record passed, write `passed_path` (one line per arch and Jittor) and return
    their names.
    """
    report = read_parity_json(json_path)
    message = failure_message(report["archs"])
    if message is not None:
        raise ParityError(f"{message}\n(measures of every arch and layer: {json_path})")
    names = [run_name(r) for r in report["archs"]]
    with atomic_open(passed_path) as handle:
        handle.write("".join(f"{name} passed\n" for name in names))
    return names


# --- 5. the report's table -----------------------------------------------------------------


def criterion_note(tolerance: float) -> str:
    """Say the criterion in a few sentences, for the report's table."""
    return (
        "Each measure is a float32 framework against a float64 reference of its own "
        "semantics (PyTorch on the CPU; stock Jittor's batch norm keeps the biased running "
        "variance, so its reference does too), per layer: the relative L2 norm of the "
        "difference of its output (train mode; also each batch-norm statistic's update and "
        "the eval-mode output) and of its parameters' gradients; for Adam (parity.steps "
        "steps on prescribed gradients from zero weights), the largest element-wise relative "
        f"error. Jittor passes a layer when its measure is at most {FACTOR:g} x the error of "
        "PyTorch float32 computing the same formulas (PyTorch itself; for stock Jittor's "
        "batch norm, PyTorch with jittor.nn.BatchNorm's formulas), at least "
        f"{FLOOR:g}; PyTorch's own must be within {tolerance:g}, a bound that stock Jittor's "
        "formulas, judged by their own rounding, do not have. Each row shows the first "
        "failing layer (forward) or the one furthest beyond its threshold, else the one "
        "closest to it. Gradients are measured against float64 at each run's own side of "
        "every ReLU kink its units lie within rounding of, and at its own order of every "
        "max-pool window's two largest inputs within rounding of each other (kink units: "
        "how many lay on the other side than in float64)."
    )


def parity_table_html(records: list[dict[str, Any]], tolerance: float) -> str:
    """One row per arch and Jittor; a failing row is red, says FAILED and names its failure."""
    from n2v_repro.backends.registry import FRAMEWORK_TITLES
    from n2v_repro.report.html_pages import Column, digits, render_table

    scientific = digits(".2e")
    columns = [Column("arch", "arch"), Column("jittor", "Jittor"), Column("status", "status")]
    for check, title in CHECK_TITLES.items():
        columns += [
            Column(f"{check}_layer", f"{title}: layer"),
            Column(f"{check}_error_jittor", f"{title}: Jittor", scientific, True),
            Column(f"{check}_error_torch", f"{title}: PyTorch", scientific, True),
            Column(f"{check}_threshold", f"{title}: threshold", scientific, True),
        ]
    columns += [
        Column("grad_cosine_gap", "gradient: 1 - cosine (Jittor)", scientific, True),
        Column("kinks", "kink units (PyTorch / Jittor)"),
        Column("failure", "failure"),
    ]
    rows = [
        {
            **r,
            "jittor": FRAMEWORK_TITLES[r.get("framework", "jittor")]
            + (" (batch norm: stock)" if r.get("batch_norm_semantics") == "jittor" else ""),
            "status": "passed" if r["passed"] else "FAILED",
            "kinks": f"{r.get('kink_flips_torch', '—')} / {r.get('kink_flips_jittor', '—')}",
            # 1 - cosine: the cosine itself reads 1.000000000 for every correct arch.
            "grad_cosine_gap": None
            if r.get("grad_cosine_jittor") is None
            else 1.0 - r["grad_cosine_jittor"],
        }
        for r in records
    ]
    notes = [
        criterion_note(tolerance),
        "PyTorch columns: PyTorch float32 computing the Jittor row's formulas (for stock "
        "Jittor's batch norm, PyTorch with jittor.nn.BatchNorm's; parity.batch_norm).",
    ]
    return render_table(
        "Framework parity",
        columns,
        rows,
        notes,
        row_class=lambda row: None if row["passed"] else "n2v-failed",
    )


def write_parity_html(path: str | Path, records: list[dict[str, Any]], tolerance: float) -> None:
    with atomic_open(path) as handle:
        handle.write(parity_table_html(records, tolerance))
