"""Framework parity: the measures, the inputs, one framework's run, the float64 reference,
the criterion and the gate. tests/test_parity_faults.py injects real faults into Jittor."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
import torch
from fake_results import (
    fake_parity_reference,
    fake_parity_result,
    reference_file,
    save_fake_parity,
)

from n2v_repro import parity
from n2v_repro.backends.torch_backend import TorchBackend, float64_loss_and_grads
from n2v_repro.config import MaskingConfig, OptimizerConfig
from n2v_repro.io.atomic import save_npz
from n2v_repro.io.formats import PARITY_COLUMNS, load_npz
from n2v_repro.models import spec as arch_spec

MASKING = MaskingConfig(kind="uniform_withCP", percentage=0.198, radius=2)
OPTIMIZER = OptimizerConfig(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, semantics="torch")


def compare(tmp_path, arch="n2n_unet", jittor_scale=1e-7, jittor=None, tolerance=1e-4):
    files = save_fake_parity(tmp_path, arch, jittor_scale, jittor)
    return parity.compare_arch(arch, *files, tolerance)


# --- measures -------------------------------------------------------------------------------


def test_measure_definitions():
    b = np.array([3.0, -4.0])
    assert parity.relative_l2(b + np.array([0.0, 0.5]), b) == pytest.approx(0.1)
    assert parity.relative_l2(np.zeros(2), np.zeros(2)) == 0.0
    assert parity.relative_l2(np.ones(2), np.zeros(2)) == float("inf")
    assert parity.cosine(b, 2 * b) == pytest.approx(1.0)
    assert parity.cosine(b, np.array([4.0, 3.0])) == pytest.approx(0.0)
    assert parity.max_elementwise(np.array([1.1, -2.0]), np.array([1.0, -2.0])) == pytest.approx(
        0.1
    )


def test_threshold_is_factor_times_torch_within_floor_and_tolerance():
    assert parity.threshold(1e-6, 1e-4) == pytest.approx(parity.FACTOR * 1e-6)
    assert parity.threshold(1e-9, 1e-4) == parity.FLOOR
    assert parity.threshold(1e-3, 1e-4) == 1e-4


def test_sample_positions_are_distinct_fixed_and_spread():
    assert np.array_equal(parity.sample_index(10), np.arange(10))
    index = parity.sample_index(4 * 96 * 64 * 64)
    assert len(index) == parity.SAMPLE == len(np.unique(index))
    assert np.array_equal(index, parity.sample_index(4 * 96 * 64 * 64))
    # Every channel of a (4, 96, 64, 64) output is sampled, about equally.
    channels = np.bincount(index // (64 * 64) % 96, minlength=96)
    assert channels.min() > 0.8 * channels.mean()


# --- inputs and Adam's prescribed gradients ---------------------------------------------------


def test_parity_inputs(tmp_path):
    path = tmp_path / "in.npz"
    parity.write_parity_inputs(path, "n2v_unet", seed=3, batch_size=2, masking=MASKING)
    data = np.load(path)
    names = arch_spec.parameter_shapes("n2v_unet")
    assert {f"weights/{k}" for k in names} <= set(data.files)
    for key in ("inputs", "targets", "mask"):
        assert data[key].shape == (2, 1, 64, 64) and data[key].dtype == np.float32
    assert 5 <= data["mask"][0].sum() <= 9  # uniform_withCP on 64x64
    assert int(data["seed"]) == 3
    again = tmp_path / "again.npz"
    parity.write_parity_inputs(again, "n2v_unet", seed=3, batch_size=2, masking=MASKING)
    np.testing.assert_array_equal(np.load(again)["inputs"], data["inputs"])


def test_adam_gradients_span_epsilon_and_keep_their_sign():
    first, second = (parity.adam_gradients("rednet10", 7, step) for step in (1, 2))
    g1, g2 = first["conv2.weight"], second["conv2.weight"]
    assert g1.dtype == np.float32 and g1.shape == (64, 64, 3, 3)
    magnitudes = np.abs(np.concatenate([g.ravel() for g in first.values()]))
    assert magnitudes.min() < 2e-12 and magnitudes.max() > 1.0  # below and above any eps
    assert np.array_equal(np.sign(g1), np.sign(g2)) and not np.array_equal(g1, g2)
    assert np.all(np.abs(g2 / g1) < 2) and np.all(np.abs(g2 / g1) > 0.5)  # same power of 2
    np.testing.assert_array_equal(parity.adam_gradients("rednet10", 7, 1)["conv2.weight"], g1)


def test_pytorch_adam_matches_the_float64_reference_in_both_semantics():
    backend = TorchBackend("rednet10", device="cpu", threads=2)
    zeros = {k: np.zeros(s, np.float32) for k, s in arch_spec.parameter_shapes("rednet10").items()}
    results = {}
    for semantics in parity.SEMANTICS:
        settings = OptimizerConfig(lr=4e-4, betas=(0.9, 0.999), eps=1e-7, semantics=semantics)
        backend.load_weights(zeros)
        backend.configure_optimizer(settings)
        for step in (1, 2, 3):
            backend.apply_gradients(parity.adam_gradients("rednet10", 5, step))
        got = backend.get_weights()
        exact = parity.adam_reference("rednet10", settings, 5, 3)
        results[semantics] = exact
        for name, value in exact.items():
            assert parity.max_elementwise(got[name], value) < 1e-5, (semantics, name)
    # Where |g| is far below epsilon the semantics differ by a factor (Keras' step there is
    # sqrt(1 - b2^t) as large): far beyond float32 rounding.
    apart = parity.max_elementwise(
        results["keras"]["conv1.weight"], results["torch"]["conv1.weight"]
    )
    assert apart > 0.5
    with pytest.raises(ValueError, match="missing conv1.weight"):
        backend.apply_gradients({})


# --- one framework and the float64 reference, in PyTorch --------------------------------------


def test_the_nets_activations_and_pools_are_the_ones_spec_names(monkeypatch):
    """activation_inputs lists exactly the layers whose outputs go into a ReLU (or leaky);
    pool_inputs those whose ReLU'd outputs go into a max-pool, with its stride (N2V2's
    max-blur-pool: 1). One forward pass of each net serves both."""
    from n2v_repro.backends.torch_backend import recorded_layers
    from n2v_repro.models.torch_nets import build_model

    functional = torch.nn.functional
    real_pool = functional.max_pool2d
    for arch in arch_spec.ARCHS:
        # Inputs and outputs kept alive: no later tensor can take their memory.
        fed: list[tuple[torch.Tensor, torch.Tensor]] = []
        pooled: list[tuple[torch.Tensor, int]] = []
        for name in ("relu", "leaky_relu"):
            real = getattr(functional, name)

            def spy(x, *args, _real=real, _fed=fed, **kwargs):
                y = _real(x, *args, **kwargs)
                _fed.append((x, y))
                return y

            monkeypatch.setattr(functional, name, spy)

        def max_pool2d(x, kernel, stride=None, *args, _pooled=pooled, **kwargs):
            _pooled.append((x, kernel if stride is None else stride))
            return real_pool(x, kernel, stride, *args, **kwargs)

        monkeypatch.setattr(functional, "max_pool2d", max_pool2d)
        model = build_model(arch)
        with torch.no_grad(), recorded_layers(model, arch) as outputs:
            model(torch.zeros(1, 1, 32, 32))
        monkeypatch.undo()
        inputs = {x.data_ptr() for x, _ in fed}
        activated = {parity.layer_base(n) for n, out in outputs.items() if out.data_ptr() in inputs}
        assert activated == set(arch_spec.activation_inputs(arch)), arch
        layer_of = {out.data_ptr(): parity.layer_base(n) for n, out in outputs.items()}
        relu_input = {y.data_ptr(): x.data_ptr() for x, y in fed}
        found = {layer_of[relu_input[x.data_ptr()]]: stride for x, stride in pooled}
        assert found == arch_spec.pool_inputs(arch), arch


def test_pool_ties_are_the_pairs_float64_orders_the_other_way():
    # One 1x1x2x4 output, two stride-2 windows: (0.5, 0.5 + 1e-9 | ...) nearly tied, the other
    # far apart; the framework's values order the tie the other way than float64's.
    exact = np.array([[[[0.5, 0.5 + 1e-9, 2.0, -1.0], [-1.0, 0.1, -1.0, 0.2]]]])
    framework = exact.copy()
    framework[0, 0, 0, 0] = 0.5 + 2e-9
    ties = parity._pool_ties("n2v_unet32", {"down0.bn2": framework})
    np.testing.assert_array_equal(ties["tie/down0.bn2/index"], [[1, 0]])  # (second, first)
    flips, farthest = parity.kink_flips({"down0.bn2": exact}, ties)
    np.testing.assert_array_equal(flips["down0.bn2"][0], [0, 1])
    np.testing.assert_array_equal(flips["down0.bn2"][1], framework.reshape(-1)[:2])
    assert farthest == pytest.approx(1e-9 / np.sqrt(np.mean(exact**2)))
    # Measured against values in the framework's own order: nothing to replace.
    assert parity.kink_flips({"down0.bn2": framework}, ties) == ({}, 0.0)
    stride1 = parity._pool_ties("n2v2_unet32", {"down0.bn2": framework})
    assert [1, 0] in stride1["tie/down0.bn2/index"].tolist()  # windows overlap at stride 1
    windows, index = parity.pool_windows(exact, 1)
    assert windows.shape == index.shape == (1, 1, 1, 3, 4)


def test_replaced_units_set_the_values_and_pass_the_gradient():
    arch = "rednet10"
    inputs = tmp_inputs(arch)
    weights = inputs.pop("weights")
    _, plain, recorded = float64_loss_and_grads(arch, weights, *inputs.values())
    conv2 = recorded["conv2"].reshape(-1)
    index = np.argsort(np.abs(conv2))[:5]  # the units nearest the kink
    values = -conv2[index]  # each on the other side
    _, moved, again = float64_loss_and_grads(
        arch, weights, *inputs.values(), replace={"conv2": (index, values)}
    )
    np.testing.assert_array_equal(again["conv2"].reshape(-1)[index], values)
    others = np.setdiff1d(np.arange(conv2.size), index)
    np.testing.assert_array_equal(again["conv2"].reshape(-1)[others], conv2[others])
    # Across the kink, those units pass their gradient (or stop it): the gradients change.
    assert not np.array_equal(moved["conv1.weight"], plain["conv1.weight"])
    # Replaced by their own values, nothing changes: the replacement adds no operation's
    # rounding to the gradient.
    same = {"conv2": (index, conv2[index])}
    _, unchanged, _ = float64_loss_and_grads(arch, weights, *inputs.values(), replace=same)
    for name, value in plain.items():
        np.testing.assert_array_equal(unchanged[name], value)


def tmp_inputs(arch):
    weights = parity.make_init_weights(arch, 1, "torch_default")
    batch = parity.make_batch(1, 1, MASKING)
    return {"weights": weights, **batch}


def test_kink_flips_are_the_units_on_the_other_side():
    recorded = {"conv1": np.array([[0.5, -1e-6, 2e-6, -3.0]])}
    result = {"kink/conv1/index": np.array([1, 2]), "kink/conv1/value": np.array([1e-7, 3e-6])}
    flips, farthest = parity.kink_flips(recorded, result)
    assert list(flips) == ["conv1"]
    np.testing.assert_array_equal(flips["conv1"][0], [1])
    rms = np.sqrt(np.mean(recorded["conv1"] ** 2))
    assert farthest == pytest.approx(1e-6 / rms)
    assert parity.kink_flips(recorded, {}) == ({}, 0.0)


def run_both(tmp_path, frameworks, arch="n2n_unet", batch_size=1, init="torch_default"):
    inputs = tmp_path / "in.npz"
    parity.write_parity_inputs(inputs, arch, seed=1, batch_size=batch_size, masking=MASKING,
                               init=init)  # fmt: skip
    for framework in frameworks:
        parity.run_framework(
            framework, arch, inputs, tmp_path / f"{framework}.npz",
            steps=2, optimizer=OPTIMIZER, device="cpu", threads=2,
        )  # fmt: skip
    paths = {fw: tmp_path / f"{fw}.npz" for fw in frameworks}
    parity.run_reference(arch, inputs, paths, tmp_path / "reference.npz", threads=2)
    return inputs


def test_run_framework_and_reference_torch(tmp_path):
    run_both(tmp_path, ["torch"], arch="n2v_unet32")
    out, ref = load_npz(tmp_path / "torch.npz"), load_npz(tmp_path / "reference.npz")
    assert out["eval_output"].shape == (1, 1, 64, 64) and int(out["steps"]) == 2
    names = list(out["layer_names"])
    # Every spec layer, in call order; the outputs as sampled, identically in both files.
    assert names == [layer.name for layer in arch_spec.layers("n2v_unet32")]
    assert names == list(ref["torch/layer_names"])
    assert out["layer/down0.conv1"].size == min(32 * 64 * 64, parity.SAMPLE)
    assert ref["torch/layer/down0.conv1"].dtype == np.float64
    # PyTorch's semantics only: no stock Jittor, so neither its reference nor its yardstick.
    assert not any(k.startswith(("jittor/", "emulation/")) for k in ref)
    assert {k for k in out if k.startswith("buffer/")} == {
        f"buffer/{name}" for name in arch_spec.parameter_shapes("n2v_unet32") if
        arch_spec.is_buffer(name)
    }  # fmt: skip
    # Kink units only for layers that feed a ReLU, each within the band.
    kinked = {k.split("/")[1] for k in out if k.startswith("kink/")}
    assert kinked == set(arch_spec.activation_inputs("n2v_unet32"))
    # Max-pool near-ties only for the layers feeding a pool, as (second, first) pairs.
    tied = {k.split("/")[1] for k in out if k.startswith("tie/")}
    assert tied == set(arch_spec.pool_inputs("n2v_unet32"))
    assert out["tie/down0.bn2/index"].shape[1:] == (2,)
    # The two Adam semantics give different weights after the same steps.
    a, b = out["adam_torch/down0.conv1.weight"], out["adam_keras/down0.conv1.weight"]
    assert not np.array_equal(a, b)
    for name in arch_spec.trainable_names("n2v_unet32"):
        assert ref[f"torch/grad/{name}"].dtype == np.float64
    assert int(ref["kink_flips/torch"]) >= 0


@pytest.mark.jittor
@pytest.mark.slow
# n2v2_unet is n2v2_unet32's code at three times the width (20 s more here): the CPU gate
# measures it (docs/models.md, Parity of every arch).
@pytest.mark.parametrize("arch", [arch for arch in arch_spec.ARCHS if arch != "n2v2_unet"])
def test_every_arch_passes_in_both_jittors(tmp_path, arch):
    """Stock Jittor against float64 of its own batch norm, and the exact-BN variant (an arch
    with batch norm: elsewhere it is the stock model) against PyTorch's."""
    init = "glorot_uniform" if arch in arch_spec.N2V_WIDTHS else "torch_default"
    jittors = ["jittor", "jittor-exactbn"] if arch_spec.has_batch_norm(arch) else ["jittor"]
    run_both(tmp_path, ["torch", *jittors], arch, init=init)
    records = parity.compare_frameworks(
        [arch], {fw: [tmp_path / f"{fw}.npz"] for fw in ["torch", *jittors]},
        [tmp_path / "reference.npz"], tmp_path / "p.json", tmp_path / "p.csv", tolerance=1e-4,
        finding_html_path=tmp_path / "finding.html",
    )  # fmt: skip
    assert [r["framework"] for r in records] == jittors
    for record in records:
        assert record["passed"], record["failure"]
        for check in parity.CHECKS:
            assert record[f"{check}_error_jittor"] < 0.8 * record[f"{check}_threshold"], check
        assert record["grad_cosine_jittor"] > 1 - 1e-9
    stock = records[0]
    assert stock["batch_norm_semantics"] == ("jittor" if len(jittors) == 2 else "torch")
    # The finding exists where stock Jittor's batch norm does, and is on the report's page.
    assert (parity.FINDING in stock) == (len(jittors) == 2)
    page = (tmp_path / "finding.html").read_text()
    assert (f"<td>{arch}</td>" in page) == (len(jittors) == 2)


@pytest.mark.jittor
@pytest.mark.slow
def test_the_papers_unet_passes_because_its_kinks_are_matched(tmp_path):
    """n2v_unet as config/test.yaml checks it (batch 4, seed 123): some of Jittor's units
    lie across a ReLU kink from float64's; measured against the float64 gradients at float64's
    own kinks, Jittor fails (the old gate's failure); at its own, it passes."""
    inputs = tmp_path / "in.npz"
    parity.write_parity_inputs(inputs, "n2v_unet", 123, 4, MASKING, "glorot_uniform")
    for framework in ("torch", "jittor"):
        parity.run_framework(framework, "n2v_unet", inputs, tmp_path / f"{framework}.npz", 1,
                             OPTIMIZER, device="cpu", threads=2)  # fmt: skip
    paths = {fw: tmp_path / f"{fw}.npz" for fw in ("torch", "jittor")}
    parity.run_reference("n2v_unet", inputs, paths, tmp_path / "reference.npz", threads=2)
    record = parity.compare_arch("n2v_unet", *paths.values(), tmp_path / "reference.npz", 1e-4)
    assert record["passed"], record["failure"]
    assert record["kink_flips_jittor"] > 0
    assert record["grad_error_jittor_unmatched"] > 3 * record["grad_threshold"]
    assert record["details"]["kink_distance"]["jittor"] < 1e-4  # within rounding of the kink


# --- the comparison and the gate, on fake results ---------------------------------------------


def test_compare_passes_and_writes_both_files(tmp_path):
    files = save_fake_parity(tmp_path, "n2n_unet")
    records = parity.compare_frameworks(
        ["n2n_unet"], {"torch": [files[0]], "jittor": [files[1]]}, [files[2]],
        tmp_path / "p.json", tmp_path / "p.csv", tolerance=1e-4,
    )  # fmt: skip
    (record,) = records
    assert record["passed"] and record["failure"] == ""
    assert 0 < record["forward_error_jittor"] < record["forward_threshold"] == parity.FLOOR
    with open(tmp_path / "p.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["arch"] == "n2n_unet" and list(rows[0]) == list(PARITY_COLUMNS)
    assert all(rows[0][c] != "" for c in PARITY_COLUMNS if c != "failure")
    report = json.loads((tmp_path / "p.json").read_text())
    assert report["tolerance"] == 1e-4 and "Criterion" in report["definition"]
    # Every layer's measures are in the JSON, in forward order.
    layers = [m["name"] for m in report["archs"][0]["details"]["forward"]]
    assert layers[:3] == ["enc_in.conv1", "enc_in.conv2", "enc_down.conv"]
    assert layers[-1] == "output (eval mode)"


def test_forward_names_the_first_failing_layer_and_its_measure(tmp_path):
    jittor = fake_parity_result("n2v_unet", seed=1)
    jittor["layer/down0.conv2"] = jittor["layer/down0.conv2"] * np.float32(1 + 1e-4)
    jittor["layer/down0.bn1"] = jittor["layer/down0.bn1"] * np.float32(1 + 3e-5)
    record = compare(tmp_path, "n2v_unet", jittor=jittor)
    assert not record["passed"] and record["forward_layer"] == "down0.bn1"
    assert record["forward_error_jittor"] == pytest.approx(3e-5, rel=0.05)
    assert "forward at down0.bn1: Jittor 3" in record["failure"]
    assert "gradient" not in record["failure"] and "Adam" not in record["failure"]


def test_a_gradient_or_adam_difference_fails_naming_its_layer(tmp_path):
    jittor = fake_parity_result("rednet10", seed=1)
    jittor["grad/deconv2.weight"] = jittor["grad/deconv2.weight"] * np.float32(1.001)
    jittor["adam_keras/conv3.bias"] = jittor["adam_keras/conv3.bias"] * np.float32(1.01)
    record = compare(tmp_path, "rednet10", jittor=jittor)
    # Both per layer: a parameter's arrays are measured with the rest of its layer's.
    assert record["grad_layer"] == "deconv2" and record["adam_layer"] == "keras: conv3"
    assert re.search(r"gradient at deconv2: Jittor 0\.000\d+ from float64", record["failure"])
    assert "Adam at keras: conv3: Jittor 0.01" in record["failure"]
    assert record["forward_error_jittor"] <= record["forward_threshold"]


def test_pytorch_beyond_the_tolerance_fails_even_if_jittor_agrees(tmp_path):
    files = save_fake_parity(tmp_path, "rednet10")
    ref = fake_parity_reference("rednet10")
    ref["layer/conv2"] = ref["layer/conv2"] * (1 + 1e-3)  # both frameworks 1e-3 from it
    save_npz(files[2], reference_file("rednet10", ref))
    record = parity.compare_arch("rednet10", *files, 1e-4)
    assert not record["passed"] and record["forward_layer"] == "conv2"
    beyond = (
        r"forward at conv2: PyTorch float32 0\.000999 from float64, beyond the tolerance 0\.0001"
    )
    assert re.search(beyond, record["failure"]), record["failure"]


def test_jittor_results_that_are_pytorchs_fail(tmp_path):
    """A copy is not a second computation: it would pass every measure."""
    record = compare(tmp_path, "rednet10", jittor=fake_parity_result("rednet10"))
    assert not record["passed"] and "bit for bit" in record["failure"]


def test_zero_gradient_biases_are_not_compared(tmp_path):
    jittor = fake_parity_result("n2v_unet", seed=1)
    jittor["grad/down0.conv1.bias"] = -jittor["grad/down0.conv1.bias"]
    record = compare(tmp_path, "n2v_unet", jittor=jittor)
    groups = parity.layer_parameters("n2v_unet", arch_spec.biases_before_batch_norm("n2v_unet"))
    assert record["passed"] and groups["down0.conv1"] == ["down0.conv1.weight"]
    assert "down0.conv1.bias" in arch_spec.biases_before_batch_norm("n2v_unet")


def test_gradients_are_measured_at_each_frameworks_own_kinks(tmp_path):
    """The reference's per-framework gradients (grad_jittor/...) are Jittor's yardstick."""
    files = save_fake_parity(tmp_path, "rednet10")
    jittor = fake_parity_result("rednet10", seed=1)
    jittor["grad/conv1.weight"] = jittor["grad/conv1.weight"] * np.float32(1.01)
    save_npz(files[1], jittor)
    assert not parity.compare_arch("rednet10", *files, 1e-4)["passed"]
    ref = fake_parity_reference("rednet10")
    matched = {f"grad_jittor/{k}": v for k, v in parity.arrays_under(ref, "grad").items()}
    matched["grad_jittor/conv1.weight"] = ref["grad/conv1.weight"] * 1.01
    save_npz(
        files[2], reference_file("rednet10", ref | matched) | {"kink_flips/jittor": np.array(3)}
    )
    record = parity.compare_arch("rednet10", *files, 1e-4)
    assert record["passed"] and record["kink_flips_jittor"] == 3
    assert record["grad_error_jittor_unmatched"] > 1e-3  # against float64's own kinks


def test_a_failing_arch_is_written_and_then_fails_the_gate(tmp_path):
    failing = save_fake_parity(tmp_path / "a", "n2n_unet", jittor_scale=1e-3)
    passing = save_fake_parity(tmp_path / "b", "rednet10")
    # The comparison itself does not stop the workflow: every output is written.
    (torch_paths, jittor_paths, references) = zip(failing, passing, strict=True)
    records = parity.compare_frameworks(
        ["n2n_unet", "rednet10"], {"torch": torch_paths, "jittor": jittor_paths}, references,
        tmp_path / "p.json", tmp_path / "p.csv", tolerance=1e-4, html_path=tmp_path / "p.html",
    )  # fmt: skip
    assert [r["passed"] for r in records] == [False, True]
    # The gate fails naming the failing arch, its first layer and the measure.
    message = (
        rf"n2n_unet \(jittor\): forward at enc_in\.conv1: Jittor \S+ from float64 > "
        rf"threshold {2e-6:.3g}"
    )
    with pytest.raises(parity.ParityError, match=message) as error:
        parity.check_parity(tmp_path / "p.json", tmp_path / "passed.txt")
    assert "rednet10" not in str(error.value)
    assert not (tmp_path / "passed.txt").exists()
    # The report's table: the failing row is red, says FAILED and names layer and measure.
    page = (tmp_path / "p.html").read_text()
    rows = {
        arch: next(line for line in page.splitlines() if f"<td>{arch}</td>" in line)
        for arch in ("n2n_unet", "rednet10")
    }
    assert rows["n2n_unet"].startswith('<tr class="n2v-failed">')
    assert "<td>FAILED</td>" in rows["n2n_unet"] and "<td>enc_in.conv1</td>" in rows["n2n_unet"]
    assert "forward at enc_in.conv1: Jittor" in rows["n2n_unet"]
    assert rows["rednet10"].startswith("<tr>") and "<td>passed</td>" in rows["rednet10"]
    red = re.search(r"tr\.n2v-failed td \{([^}]*)\}", page)
    assert red and "color: #b00020" in red.group(1)
    assert f"at most {parity.FACTOR:g} x the error of PyTorch float32" in page  # the criterion


def test_the_gate_passes_when_every_arch_passes(tmp_path):
    files = save_fake_parity(tmp_path, "n2n_unet")
    parity.compare_frameworks(
        ["n2n_unet"], {"torch": [files[0]], "jittor": [files[1]]}, [files[2]],
        tmp_path / "p.json", tmp_path / "p.csv", tolerance=1e-4,
    )  # fmt: skip
    names = parity.check_parity(tmp_path / "p.json", tmp_path / "passed.txt")
    assert names == ["n2n_unet (jittor)"]
    assert (tmp_path / "passed.txt").read_text() == "n2n_unet (jittor) passed\n"


def test_a_parity_failure_fails_only_the_gate_in_the_workflow(tmp_path):
    """Through Snakemake with the default profile: parity_compare writes its table and the
    figure is drawn although rednet20 fails; parity_gate fails naming it; the run exits != 0."""
    from pipeline_runner import merged, repo_data_config, run_snakemake, write_config

    for arch in arch_spec.ARCHS:
        noise = 1e-2 if arch == "rednet20" else 1e-7
        save_fake_parity(tmp_path / "results" / "parity", arch, jittor_scale=noise)
    # Two archs in use (parity covers the networks the run's recipes train): rednet20 fails.
    change = {
        "frameworks": ["torch", "jittor"],
        "train": {"arch": "n2n_unet"},
        "recipe_book": {"paper": {"arch": "rednet20"}},
    }
    config = write_config(tmp_path / "config.yaml", merged(repo_data_config(), change))
    targets = ["results/parity/passed.txt", "results/figures/parity.png"]
    # Only these rules may run: the fake per-framework results stand for the parity jobs.
    allowed = ["--allowed-rules", "parity_compare", "parity_gate", "plot_parity", "-p"]
    result = run_snakemake(tmp_path, config, targets, extra=allowed, cores=1)
    assert result.returncode != 0, result.stdout
    parity_dir = tmp_path / "results" / "parity"
    assert not (parity_dir / "passed.txt").exists()
    assert (parity_dir / "parity.json").exists() and (tmp_path / targets[1]).exists()
    assert '<tr class="n2v-failed"><td>rednet20</td>' in (parity_dir / "parity.html").read_text()
    gate_log = (tmp_path / "logs" / "parity_gate" / "parity_gate.log").read_text()
    assert "ParityError" in gate_log and "rednet20 (jittor): forward at conv1: Jittor" in gate_log
    assert "n2n_unet (" not in gate_log


def test_a_result_from_the_former_parity_steps_is_named(tmp_path):
    files = save_fake_parity(tmp_path, "rednet10")
    save_npz(files[1], {"forward": np.zeros(3), "grad/conv1.weight": np.zeros(3)})
    with pytest.raises(parity.FormatError, match=r"jittor/rednet10\.npz: lacks .*remove results"):
        parity.compare_arch("rednet10", *files, 1e-4)
