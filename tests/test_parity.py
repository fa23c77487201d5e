"""Framework parity: error definitions, the inputs, one framework's run, the comparison."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
from fake_results import fake_parity_result as fake_result

from n2v_repro import parity
from n2v_repro.config import MaskingConfig, OptimizerConfig
from n2v_repro.io.atomic import save_npz
from n2v_repro.io.formats import PARITY_COLUMNS
from n2v_repro.models import spec as arch_spec

MASKING = MaskingConfig(kind="uniform_withCP", percentage=0.198, radius=2)
OPTIMIZER = OptimizerConfig(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, semantics="torch")


def test_rel_error_definition():
    b = np.array([1.0, -4.0, 2.0])
    assert parity.rel_error(b + np.array([0, 0.4, 0]), b) == pytest.approx(0.1)
    assert parity.rel_error(np.zeros(3), np.zeros(3)) == 0.0
    assert parity.rel_error(np.ones(3), np.zeros(3)) == float("inf")


def test_parity_inputs(tmp_path):
    path = tmp_path / "in.npz"
    parity.write_parity_inputs(path, "n2v_unet", seed=3, batch_size=2, masking=MASKING)
    data = np.load(path)
    names = arch_spec.parameter_shapes("n2v_unet")
    assert {f"weights/{k}" for k in names} <= set(data.files)
    for key in ("inputs", "targets", "mask"):
        assert data[key].shape == (2, 1, 64, 64) and data[key].dtype == np.float32
    assert 5 <= data["mask"][0].sum() <= 9  # uniform_withCP on 64x64
    again = tmp_path / "again.npz"
    parity.write_parity_inputs(again, "n2v_unet", seed=3, batch_size=2, masking=MASKING)
    np.testing.assert_array_equal(np.load(again)["inputs"], data["inputs"])


def test_compare_passes_and_writes_both_files(tmp_path):
    save_npz(tmp_path / "t.npz", fake_result("n2n_unet"))
    save_npz(tmp_path / "j.npz", fake_result("n2n_unet", scale=1e-6, seed=1))
    records = parity.compare_frameworks(
        ["n2n_unet"], [tmp_path / "t.npz"], [tmp_path / "j.npz"],
        tmp_path / "p.json", tmp_path / "p.csv", tolerance=1e-4,
    )  # fmt: skip
    assert records[0]["passed"] and 0 < records[0]["forward_rel_error"] < 1e-4
    assert records[0]["grad_threshold"] == 1e-4
    with open(tmp_path / "p.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["arch"] == "n2n_unet" and list(rows[0]) == list(PARITY_COLUMNS)
    assert all(rows[0][column] != "" for column in PARITY_COLUMNS)  # every column filled
    assert json.loads((tmp_path / "p.json").read_text())["tolerance"] == 1e-4


def test_a_failing_arch_is_written_and_then_fails_the_gate(tmp_path):
    torch_result = fake_result("n2n_unet")
    jittor_result = dict(torch_result)
    jittor_result["grad/head.conv2.weight"] = torch_result["grad/head.conv2.weight"] * 1.01
    save_npz(tmp_path / "t.npz", torch_result)
    save_npz(tmp_path / "j.npz", jittor_result)
    save_npz(tmp_path / "t2.npz", fake_result("rednet10"))
    save_npz(tmp_path / "j2.npz", fake_result("rednet10", scale=1e-6, seed=1))
    # The comparison itself does not stop the workflow: every output is written.
    records = parity.compare_frameworks(
        ["n2n_unet", "rednet10"], [tmp_path / "t.npz", tmp_path / "t2.npz"],
        [tmp_path / "j.npz", tmp_path / "j2.npz"], tmp_path / "p.json", tmp_path / "p.csv",
        tolerance=1e-4, html_path=tmp_path / "p.html",
    )  # fmt: skip
    assert [r["passed"] for r in records] == [False, True]
    assert (tmp_path / "p.csv").exists() and (tmp_path / "p.json").exists()
    # The gate fails naming the failing arch and its worst parameter, not the passing one.
    with pytest.raises(parity.ParityError, match=r"n2n_unet: .*head\.conv2\.weight") as error:
        parity.check_parity(tmp_path / "p.json", tmp_path / "passed.txt")
    assert "rednet10" not in str(error.value)
    assert not (tmp_path / "passed.txt").exists()
    # The report's table: the failing row is red and says FAILED; the passing one is not.
    page = (tmp_path / "p.html").read_text()
    rows = {
        arch: next(line for line in page.splitlines() if f"<td>{arch}</td>" in line)
        for arch in ("n2n_unet", "rednet10")
    }
    assert rows["n2n_unet"].startswith('<tr class="n2v-failed">')
    assert "<td>FAILED</td>" in rows["n2n_unet"]
    assert rows["rednet10"].startswith("<tr>") and "<td>passed</td>" in rows["rednet10"]
    red = re.search(r"tr\.n2v-failed td \{([^}]*)\}", page)
    assert red and "color: #b00020" in red.group(1)


def test_the_gate_passes_when_every_arch_passes(tmp_path):
    save_npz(tmp_path / "t.npz", fake_result("n2n_unet"))
    save_npz(tmp_path / "j.npz", fake_result("n2n_unet", scale=1e-6, seed=1))
    parity.compare_frameworks(
        ["n2n_unet"], [tmp_path / "t.npz"], [tmp_path / "j.npz"],
        tmp_path / "p.json", tmp_path / "p.csv", tolerance=1e-4,
    )  # fmt: skip
    assert parity.check_parity(tmp_path / "p.json", tmp_path / "passed.txt") == ["n2n_unet"]
    assert (tmp_path / "passed.txt").read_text() == "n2n_unet passed\n"


def test_zero_gradient_biases_are_not_compared(tmp_path):
    torch_result = fake_result("n2v_unet")
    jittor_result = dict(torch_result)
    jittor_result["grad/down0.conv1.bias"] = -torch_result["grad/down0.conv1.bias"]
    save_npz(tmp_path / "t.npz", torch_result)
    save_npz(tmp_path / "j.npz", jittor_result)
    record = parity.compare_arch("n2v_unet", tmp_path / "t.npz", tmp_path / "j.npz", 1e-4)
    assert record["passed"] and record["grad_rel_error"] == 0.0
    assert "down0.conv1.bias" in arch_spec.biases_before_batch_norm("n2v_unet")


def test_ill_conditioned_gradients_get_a_wider_threshold(tmp_path):
    """When PyTorch's float32 gradient is itself 1e-3 off float64, 2e-3 between frameworks
    is what two correct float32 implementations can show; beyond that is a failure."""
    torch_result = fake_result("n2n_unet")
    for key in [k for k in torch_result if k.startswith("grad64/")]:
        torch_result[key] = torch_result[key] * (1 + 1e-3)
    jittor_result = dict(torch_result)
    jittor_result["grad/head.conv2.weight"] = torch_result["grad/head.conv2.weight"] * 1.0015
    save_npz(tmp_path / "t.npz", torch_result)
    save_npz(tmp_path / "j.npz", jittor_result)
    record = parity.compare_arch("n2n_unet", tmp_path / "t.npz", tmp_path / "j.npz", 1e-4)
    assert record["grad_rel_error_torch_vs_float64"] == pytest.approx(1e-3, rel=1e-2)
    assert record["grad_threshold"] == pytest.approx(2e-3, rel=1e-2)
    assert record["grad_rel_error"] > 1e-4 and record["passed"]

    jittor_result["grad/head.conv2.weight"] = torch_result["grad/head.conv2.weight"] * 1.003
    save_npz(tmp_path / "j.npz", jittor_result)
    record = parity.compare_arch("n2n_unet", tmp_path / "t.npz", tmp_path / "j.npz", 1e-4)
    assert not record["passed"]


def run_both(tmp_path, frameworks, arch="n2n_unet"):
    inputs = tmp_path / "in.npz"
    parity.write_parity_inputs(inputs, arch, seed=1, batch_size=1, masking=MASKING)
    for framework in frameworks:
        parity.run_framework(
            framework, arch, inputs, tmp_path / f"{framework}.npz",
            steps=2, optimizer=OPTIMIZER, device="cpu", threads=2,
        )  # fmt: skip
    return inputs


def test_run_framework_torch(tmp_path):
    run_both(tmp_path, ["torch"])
    out = np.load(tmp_path / "torch.npz")
    assert out["forward"].shape == (1, 1, 64, 64)
    assert out["losses_torch"].shape == (2,) and int(out["steps"]) == 2
    # The two Adam semantics give different weights after the same steps.
    a, b = out["after_torch/enc_in.conv1.weight"], out["after_keras/enc_in.conv1.weight"]
    assert not np.array_equal(a, b)
    # The float64 reference: same gradients to float32 accuracy on this well-conditioned net.
    for name in arch_spec.trainable_names("n2n_unet"):
        exact = out[f"grad64/{name}"]
        assert exact.dtype == np.float64
        assert parity.rel_error(out[f"grad/{name}"], exact) < 1e-4, name


@pytest.mark.jittor
@pytest.mark.slow
@pytest.mark.parametrize("arch", ["n2n_unet", "rednet10", "rednet20", "rednet30"])
def test_parity_torch_vs_jittor(tmp_path, arch):
    run_both(tmp_path, ["torch", "jittor"], arch)
    (record,) = parity.compare_frameworks(
        [arch], [tmp_path / "torch.npz"], [tmp_path / "jittor.npz"],
        tmp_path / "p.json", tmp_path / "p.csv", tolerance=1e-4,
    )  # fmt: skip
    assert record["forward_rel_error"] < 1e-5 and record["grad_rel_error"] < 1e-4
    assert record["loss_rel_error"] < 1e-5
    # Well conditioned (no batch norm): the tolerance itself is the threshold.
    assert record["grad_threshold"] == 1e-4 and record["passed"]


def test_a_parity_failure_fails_only_the_gate_in_the_workflow(tmp_path):
    """Through Snakemake with the default profile: parity_compare writes its table and the
    figure is drawn although rednet20 fails; parity_gate fails naming it; the run exits != 0."""
    from fake_results import fake_parity_result
    from pipeline_runner import merged, repo_data_config, run_snakemake, write_config

    for arch in arch_spec.ARCHS:
        noise = 1e-2 if arch == "rednet20" else 1e-6
        save_npz(tmp_path / f"results/parity/torch/{arch}.npz", fake_parity_result(arch))
        jittor = fake_parity_result(arch, scale=noise, seed=1)
        save_npz(tmp_path / f"results/parity/jittor/{arch}.npz", jittor)
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
    assert "ParityError" in gate_log and "rednet20: forward" in gate_log
    assert "n2n_unet:" not in gate_log
