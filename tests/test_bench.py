"""The throughput benchmark: argument checks, the ratio, and a 1-step run of both frameworks."""

from __future__ import annotations

import json

import pytest

from n2v_repro import bench


def test_ratio_per_arch():
    records = [
        {"framework": "torch", "arch": "n2n_unet", "patches_per_s": 20.0},
        {"framework": "jittor", "arch": "n2n_unet", "patches_per_s": 19.0},
        {"framework": "torch", "arch": "n2v_unet", "patches_per_s": 5.0},
    ]
    assert bench.ratios(records) == {"n2n_unet": pytest.approx(0.95)}


def test_every_arch_is_benchmarked_by_default():
    assert bench.parse_args([]).archs == [
        "n2n_unet", "n2v_unet", "rednet10", "rednet20", "rednet30"
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


@pytest.mark.jittor
@pytest.mark.slow
def test_bench_both_frameworks_writes_records(tmp_path, capsys):
    out = tmp_path / "bench.json"
    bench.main(
        ["--archs", "n2n_unet", "--steps", "2", "--warmup", "1", "--batch-size", "1",
         "--device", "cpu", "--threads", "1", "--json", str(out)]
    )  # fmt: skip
    records = json.loads(out.read_text())
    assert [r["framework"] for r in records] == ["torch", "jittor"]
    for record in records:
        assert record["arch"] == "n2n_unet" and record["device"] == "cpu"
        assert record["batch_size"] == 1 and record["steps"] == 2 and record["threads"] == 1
        assert record["patches_per_s"] > 0 and record["seconds"] > 0
        assert record["framework"] in record["versions"]
    assert "jittor/torch n2n_unet" in capsys.readouterr().out


@pytest.mark.jittor
@pytest.mark.slow
def test_bench_reports_the_rednets_for_both_frameworks(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rednets = ["rednet10", "rednet20", "rednet30"]
    bench.main(
        ["--archs", *rednets, "--steps", "1", "--warmup", "0", "--batch-size", "1",
         "--device", "cpu", "--threads", "1", "--json", str(out)]
    )  # fmt: skip
    records = json.loads(out.read_text())
    assert [(r["framework"], r["arch"]) for r in records] == [
        (framework, arch) for framework in ("torch", "jittor") for arch in rednets
    ]
    assert all(r["patches_per_s"] > 0 and r["last_loss"] > 0 for r in records)
    printed = capsys.readouterr().out
    assert all(f"jittor/torch {arch}:" in printed for arch in rednets)
