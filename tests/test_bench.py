"""The throughput benchmark: argument checks, the ratio, and a 1-step run of both frameworks."""

from __future__ import annotations

import json

import pytest

from n2v_repro.cli import bench


def _record(framework, arch, speed, batch_size=16, precision="fp32", status="ok"):
    return {
        "framework": framework, "arch": arch, "batch_size": batch_size,
        "requested_precision": precision, "precision": "fp32", "patches_per_s": speed,
        "status": status,
    }  # fmt: skip


def test_ratio_per_arch_batch_and_precision():
    records = [
        _record("torch", "n2n_unet", 20.0),
        _record("jittor", "n2n_unet", 19.0),
        _record("torch", "n2n_unet", 40.0, precision="tf32"),
        _record("jittor", "n2n_unet", 10.0, precision="tf32"),
        _record("torch", "n2n_unet", 80.0, batch_size=128),
        _record("jittor", "n2n_unet", 1.0, batch_size=128, status="skipped: time budget"),
        _record("torch", "n2v_unet", 5.0),
    ]
    assert bench.ratios(records) == {
        ("n2n_unet", 16, "fp32"): pytest.approx(0.95),
        ("n2n_unet", 16, "tf32"): pytest.approx(0.25),
    }


def test_the_plan_leaves_out_bf16_for_jittor():
    plan = bench.BenchPlan(archs=("n2v_unet",), batch_sizes=(16, 128),
                           precisions=("fp32", "tf32", "bf16"))  # fmt: skip
    assert len(plan.runs("torch")) == 6
    assert plan.runs("jittor") == [
        ("n2v_unet", 16, "fp32"), ("n2v_unet", 16, "tf32"),
        ("n2v_unet", 128, "fp32"), ("n2v_unet", 128, "tf32"),
    ]  # fmt: skip


def test_options_of_the_plan():
    args = bench.parse_args(
        ["--batch-sizes", "16", "128", "--precisions", "fp32", "bf16", "--seconds", "2"]
    )
    plan = bench.plan_of(args)
    assert plan.batch_sizes == (16, 128) and plan.precisions == ("fp32", "bf16")
    assert plan.seconds == 2.0
    assert bench.parse_args(["--batch-size", "4"]).batch_sizes == [4]  # the old spelling
    with pytest.raises(SystemExit):
        bench.parse_args(["--precisions", "fp16"])


def test_runs_not_started_within_the_budget_are_recorded_as_skipped():
    plan = bench.BenchPlan(archs=("n2n_unet", "rednet10"), batch_sizes=(1,), device="cpu")
    records = bench.run_in_subprocess("torch", plan, budget_s=0.0, grace_s=60.0)
    assert [(r["arch"], r["status"]) for r in records] == [
        ("n2n_unet", "skipped: time budget"), ("rednet10", "skipped: time budget")
    ]  # fmt: skip


def test_a_failing_run_is_recorded_and_the_next_one_runs(tmp_path, monkeypatch):
    calls = []

    def fake_run_one(framework, arch, **kwargs):
        calls.append(arch)
        if arch == "n2n_unet":
            raise RuntimeError("CUDA out of memory")
        return {"framework": framework, "arch": arch, "status": "ok", **kwargs}

    monkeypatch.setattr(bench, "run_one", fake_run_one)
    out = tmp_path / "records.jsonl"
    plan = bench.BenchPlan(archs=("n2n_unet", "rednet10"), batch_sizes=(2,), device="cpu")
    bench.run_worker("torch", plan, out, budget_s=None)
    first, second = bench.read_records(out)
    assert calls == ["n2n_unet", "rednet10"]
    assert first["status"] == "failed: RuntimeError: CUDA out of memory"
    assert second["status"] == "ok" and second["batch_size"] == 2


def test_every_arch_is_benchmarked_by_default():
    assert bench.parse_args([]).archs == [
        "n2n_unet", "n2v_unet", "n2v_unet32", "n2v2_unet", "n2v2_unet32", "rednet10", "rednet20",
        "rednet30",
    ]  # fmt: skip


def test_bad_arguments_rejected():
    with pytest.raises(SystemExit):
        bench.parse_args(["--steps", "0"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--archs", "resnet"])


def test_batches_are_the_same_for_both_frameworks():
    first, second = bench.make_batches(2, 5), bench.make_batches(2, 5)
    assert len(first) == bench.DISTINCT_BATCHES
    for a, b in zip(first, second, strict=True):
        for x, y in zip(a, b, strict=True):
            assert x.shape == (2, 1, 64, 64)
            assert (x == y).all()
    assert first[0][2].dtype == bool  # the mask travels as bools, as in training


@pytest.mark.jittor
@pytest.mark.slow
def test_bench_both_frameworks_writes_records(tmp_path, capsys):
    """n2n_unet and the three REDNets (none, then more skip connections) in both frameworks."""
    out = tmp_path / "bench.json"
    archs = ["n2n_unet", "rednet10", "rednet20", "rednet30"]
    bench.main(
        ["--archs", *archs, "--steps", "2", "--warmup", "1", "--batch-size", "1",
         "--device", "cpu", "--threads", "1", "--json", str(out)]
    )  # fmt: skip
    records = json.loads(out.read_text())
    assert [(r["framework"], r["arch"]) for r in records] == [
        (framework, arch) for framework in ("torch", "jittor") for arch in archs
    ]
    for record in records:
        assert record["device"] == "cpu" and record["last_loss"] > 0
        assert record["batch_size"] == 1 and record["steps"] == 2 and record["threads"] == 1
        assert record["patches_per_s"] > 0 and record["seconds"] > 0
        assert record["framework"] in record["versions"]
        assert record["precision"] == "fp32" and record["status"] == "ok"
        assert record["gpu_busy_percent"] is None  # no NVML sampling on the CPU
        assert record["speed_levers"] == []  # stock: each framework's own ops and defaults
    printed = capsys.readouterr().out
    assert all(f"jittor/torch {arch} batch 1 fp32 (stock):" in printed for arch in archs)
