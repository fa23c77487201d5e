"""The parity gate catches real bugs: faults injected into Jittor's network or Adam fail it,
each naming the layer where it enters, while stock Jittor (jittor.nn.BatchNorm, measured
against its own semantics) and its exact-BN variant pass.

Every fault is patched into the Jittor side only (the framework under test), never into the
PyTorch float32 run or the float64 reference. One batch-norm arch (n2v_unet32, batch 1)
with PyTorch's default initialisation, whose conv biases are not zero; its N2V2 variant for
the max-blur-pool.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from n2v_repro import parity
from n2v_repro.config import MaskingConfig, OptimizerConfig

pytestmark = [pytest.mark.jittor, pytest.mark.slow]

ARCH = "n2v_unet32"
N2V2_ARCH = "n2v2_unet32"
MASKING = MaskingConfig(kind="uniform_withCP", percentage=0.198, radius=2)
OPTIMIZER = OptimizerConfig(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, semantics="torch")
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The inputs and PyTorch's float32 results, shared by every fault."""
    path = tmp_path_factory.mktemp("parity_faults")
    parity.write_parity_inputs(
        path / "inputs.npz", ARCH, seed=5, batch_size=1, masking=MASKING, init="torch_default"
    )
    run("torch", path, "torch")
    return path


@pytest.fixture(scope="module")
def n2v2_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same for N2V2's variant of the arch (max-blur-pool)."""
    path = tmp_path_factory.mktemp("parity_faults_n2v2")
    parity.write_parity_inputs(
        path / "inputs.npz", N2V2_ARCH, seed=5, batch_size=1, masking=MASKING,
        init="torch_default",
    )  # fmt: skip
    run("torch", path, "torch", N2V2_ARCH)
    return path


def run(framework: str, folder: Path, tag: str, arch: str = ARCH) -> Path:
    """One framework's parity results on the folder's inputs, as `<tag>.npz`."""
    output = folder / f"{tag}.npz"
    parity.run_framework(
        framework, arch, folder / "inputs.npz", output,
        steps=2, optimizer=OPTIMIZER, device="cpu", threads=2,
    )  # fmt: skip
    return output


def judge(folder: Path, tag: str, arch: str = ARCH, framework: str = "jittor") -> dict[str, Any]:
    """Run a Jittor (as patched now), the float64 reference, and compare."""
    jittor = run(framework, folder, tag, arch)
    reference = folder / f"reference_{tag}.npz"
    paths = {"torch": folder / "torch.npz", framework: jittor}
    parity.run_reference(arch, folder / "inputs.npz", paths, reference, threads=2)
    return parity.compare_arch(arch, paths["torch"], jittor, reference, TOLERANCE, framework)


# --- the faults: each patches the Jittor network built for the run --------------------------


def submodule(model: Any, name: str) -> Any:
    for part in name.split("."):
        model = getattr(model, part)
    return model


def with_attribute(layer: str, attribute: str, change: Callable[[Any], Any]) -> Callable:
    """Run `layer` with `attribute` (weight, bias) replaced by change(attribute): the gradient
    still reaches the real parameter through the change."""

    def inject(model: Any) -> None:
        module = submodule(model, layer)
        execute = module.execute

        def faulty(x: Any) -> Any:
            original = getattr(module, attribute)
            setattr(module, attribute, change(original))
            try:
                return execute(x)
            finally:
                setattr(module, attribute, original)

        module.execute = faulty

    return inject


def flip_kernel(weight: Any) -> Any:
    _, _, kh, kw = weight.shape
    return weight.reindex(weight.shape, ["i0", "i1", f"{kh - 1}-i2", f"{kw - 1}-i3"])


def transpose_kernel(weight: Any) -> Any:
    return weight.permute(0, 1, 3, 2)


def batch_norm_eps(model: Any) -> None:
    model.down1.bn1.eps = 1e-5  # Keras' 1e-3 in PyTorch's


def unbiased_normalisation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Normalise with the unbiased batch variance: jittor.nn.BatchNorm's code, one change."""
    import jittor as jt
    from jittor import nn

    def execute(self: Any, x: Any) -> Any:
        dims = [0, 2, 3]
        xmean = jt.mean(x, dims=dims)
        x2mean = jt.mean(x * x, dims=dims)
        xvar = (x2mean - xmean * xmean).maximum(0.0)
        count = x.shape[0] * x.shape[2] * x.shape[3]
        w = self.weight / jt.sqrt(xvar * (count / (count - 1)) + self.eps)  # the fault
        b = self.bias - xmean * w
        norm_x = x * w.broadcast(x, dims) + b.broadcast(x, dims)
        self.running_mean.update(self.running_mean + (xmean - self.running_mean) * self.momentum)
        self.running_var.update(self.running_var + (xvar - self.running_var) * self.momentum)
        return norm_x

    monkeypatch.setattr(nn.BatchNorm, "execute", execute)


def skip_order(model: Any) -> None:
    """up1's input as concat(skip, upsampled) instead of concat(upsampled, skip)."""
    import jittor as jt

    from n2v_repro.models.jittor_nets import max_pool2x, upsample2x

    def execute(x: Any) -> Any:
        skip0 = model.down0(x)
        skip1 = model.down1(max_pool2x(skip0))
        mid = model.middle(max_pool2x(skip1))
        up1 = model.up1(jt.concat((skip1, upsample2x(mid)), dim=1))
        up0 = model.up0(jt.concat((upsample2x(up1), skip0), dim=1))
        return model.head(up0) + x

    model.execute = execute


def adam_eps_placement(monkeypatch: pytest.MonkeyPatch) -> None:
    """eps added before dividing by sqrt(1 - b2^t), i.e. to the raw sqrt(v)."""
    from n2v_repro.backends.jittor_backend import JittorAdam

    def update(self: JittorAdam, grads: dict[str, Any]) -> None:
        step_size, sqrt_bc2 = self.next_coefficients()
        (b1, b2), eps = self.settings.betas, self.settings.eps
        for name, p in self.params.items():
            g = grads[name].stop_grad()
            m, v = self.m[name], self.v[name]
            m.update(m * b1 + g * (1 - b1))
            v.update(v * b2 + g * g * (1 - b2))
            p.update(p - (m / ((self.jt.sqrt(v) + eps) / sqrt_bc2)) * step_size)

    monkeypatch.setattr(JittorAdam, "update", update)


# fault -> (what it patches: the Jittor "model" built for the run, or a class through
# "monkeypatch"; the patch; the check that must fail; the layer (or prefix) it must name)
FAULTS: dict[str, tuple[str, Callable, str, str]] = {
    "batch-norm eps 1e-5": ("model", batch_norm_eps, "forward", "down1.bn1"),
    "unbiased batch variance": ("monkeypatch", unbiased_normalisation, "forward", "down0.bn1"),
    "missing bias": ("model", with_attribute("head", "bias", lambda b: None), "forward", "head"),
    "doubled bias": ("model", with_attribute("up0.conv1", "bias", lambda b: b * 2), "forward",
                     "up0.conv1"),
    "flipped kernel": ("model", with_attribute("middle.conv1", "weight", flip_kernel), "forward",
                       "middle.conv1"),
    "transposed kernel": ("model", with_attribute("up1.conv2", "weight", transpose_kernel),
                          "forward", "up1.conv2"),
    "skip concatenated the other way": ("model", skip_order, "forward", "up1.conv1"),
    "Adam eps in the other place": ("monkeypatch", adam_eps_placement, "adam", "torch: "),
}  # fmt: skip


@pytest.mark.parametrize(("framework", "semantics"), [("jittor", "jittor"),
                                                      ("jittor-exactbn", "torch")])  # fmt: skip
def test_both_jittors_pass(folder: Path, framework: str, semantics: str) -> None:
    record = judge(folder, framework, framework=framework)
    assert record["passed"], record["failure"]
    # Each against float64 of its own batch norm: stock Jittor's keeps the biased variance.
    assert record["batch_norm_semantics"] == semantics
    # Every measure was computed and is below its threshold, with room.
    for check in parity.CHECKS:
        assert record[f"{check}_error_jittor"] <= 0.8 * record[f"{check}_threshold"]
    # Stock Jittor's difference from PyTorch is reported, apportioned: the biased running
    # variance is all of the running variance's difference but for rounding.
    finding = record.get(parity.FINDING)
    assert (finding is not None) == (framework == "jittor")
    if finding is not None:
        running_var = finding["summary"]["running_var"]
        assert running_var["biased_running_var"] > 0.9 * running_var["total"] > 0
        assert finding["summary"]["forward"]["biased_running_var"] == 0.0


@pytest.mark.parametrize("fault", list(FAULTS))
def test_an_injected_fault_fails_the_gate_naming_its_layer(
    folder: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    target, inject, check, layer = FAULTS[fault]
    from n2v_repro.backends.jittor_backend import import_jittor

    import_jittor("cpu")  # Jittor's environment before a patch imports jittor
    if target == "monkeypatch":
        inject(monkeypatch)
    else:
        from n2v_repro.models import jittor_nets

        build = jittor_nets.build_model

        def faulty_model(arch: str, batch_norm: type) -> Any:
            model = build(arch, batch_norm)
            inject(model)
            return model

        monkeypatch.setattr(jittor_nets, "build_model", faulty_model)
    tag = fault.replace(" ", "_")
    record = judge(folder, tag)
    assert not record["passed"], f"{fault} passed the gate"
    assert record[f"{check}_layer"].startswith(layer), record
    assert record[f"{check}_error_jittor"] > record[f"{check}_threshold"]
    # The gate's message names the check, the layer and the measure.
    title = parity.CHECK_TITLES[check]
    assert f"{title} at {record[f'{check}_layer']}: Jittor " in record["failure"]
    # Only the check the fault belongs to fails first: a forward fault is named in forward
    # order at the layer it enters, not downstream of it.
    if check == "adam":
        assert record["forward_error_jittor"] <= record["forward_threshold"]
        assert record["grad_error_jittor"] <= record["grad_threshold"]
    assert np.isfinite(record[f"{check}_error_jittor"])


def test_n2v2_with_a_plain_max_pool_fails_where_it_enters(
    n2v2_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """N2V2's max-blur-pool replaced by the plain max-pool in Jittor (shapes unchanged): the
    gate fails at the first layer after the pool, down1.conv1. (The stock n2v2_unet32 passes:
    tests/test_parity.py, test_every_arch_passes_stock.)"""
    from n2v_repro.backends.jittor_backend import import_jittor

    import_jittor("cpu")  # Jittor's environment before jittor_nets imports it
    from n2v_repro.models import jittor_nets

    monkeypatch.setattr(jittor_nets, "max_blur_pool2x", jittor_nets.max_pool2x)
    record = judge(n2v2_folder, "plain_max_pool", N2V2_ARCH)
    assert not record["passed"] and record["forward_layer"] == "down1.conv1", record["failure"]
    assert record["forward_error_jittor"] > 100 * record["forward_threshold"]
