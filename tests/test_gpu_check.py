"""The one-command GPU check (n2v_repro.gpu_check): its data pack, its data stage against the
pipeline's, its time budget, and the whole flow in its CPU mode (`--smoke`) on generated images."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from fake_bsds import FakeBsds, make_fake_bsds

from n2v_repro import parity
from n2v_repro.config import PipelineConfig, load_config
from n2v_repro.data.download import DownloadError
from n2v_repro.gpu_check import check, pack
from n2v_repro.gpu_check.__main__ import main as gpu_check_main
from n2v_repro.gpu_check.__main__ import succeeded

REPO_ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


@pytest.fixture
def fake(tmp_path: Path) -> FakeBsds:
    return make_fake_bsds(tmp_path / "fake", n_train=3, n_test=2, n_val=6, n_bsd68=5)


def prepare(fake: FakeBsds, dest: Path, **limits) -> dict:
    return pack.prepare(
        fake.images, dest, fake.manifest, fake.bsd68_ids, fake.bsd68_pixels, **limits
    )


def test_prepare_packs_the_verified_jpgs_and_the_device_checks_them(fake, tmp_path):
    dest = tmp_path / "pack"
    info = prepare(fake, dest)
    assert (info["train_images"], info["bsd68_images"]) == (5, 5)
    for image_id in fake.train_ids + fake.bsd68:
        packed = dest / "images" / fake.jpg(image_id).relative_to(fake.images)
        assert packed.read_bytes() == fake.jpg(image_id).read_bytes()
    # The val images outside BSD68 are not carried; the pack's manifest lists what is.
    assert len(list((dest / "images").rglob("*.jpg"))) == 10
    assert len((dest / pack.PACK_MANIFEST).read_text().splitlines()) == 10
    train, bsd68, jpgs = pack.verify_pack(dest)
    assert train == fake.train_ids and bsd68 == fake.bsd68 and len(jpgs) == 10

    # A smaller pack into the same folder drops the files no longer wanted.
    prepare(fake, dest, train_images=2, bsd68_images=3)
    assert len(list((dest / "images").rglob("*.jpg"))) == 5
    assert pack.verify_pack(dest)[:2] == (fake.train_ids[:2], fake.bsd68[:3])

    # On the device: an altered or missing jpg is named before anything runs.
    victim = dest / "images" / "val" / f"{fake.bsd68[1]}.jpg"
    victim.write_bytes(victim.read_bytes()[:-10])
    with pytest.raises(pack.PackError, match=f"val/{fake.bsd68[1]}.jpg"):
        pack.verify_pack(dest)
    with pytest.raises(pack.PackError, match="prepare --mirror"):
        pack.verify_pack(tmp_path / "nothing")


def test_prepare_refuses_a_mirror_file_that_does_not_match_the_manifest(fake, tmp_path):
    bad = fake.jpg(fake.train_ids[0])
    bad.write_bytes(bad.read_bytes() + b"x")
    with pytest.raises(DownloadError, match=f"{fake.train_ids[0]}.jpg"):
        prepare(fake, tmp_path / "pack")
    with pytest.raises(pack.PackError, match="no <split>/<id>.jpg folders"):
        pack.prepare(tmp_path, tmp_path / "pack2", fake.manifest, fake.bsd68_ids)


def test_without_packed_data_the_check_says_how_to_make_it(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        gpu_check_main(["--out", str(tmp_path / "out"), "--data", str(tmp_path / "none")])
    assert exit_info.value.code == 2
    assert "python -m n2v_repro.gpu_check prepare" in capsys.readouterr().err


def test_what_the_budget_cannot_fit_is_recorded_as_skipped(fake, tmp_path):
    prepare(fake, tmp_path / "pack")
    started = time.monotonic()
    results = check.run_check(
        out=tmp_path / "out", pack=tmp_path / "pack", work=tmp_path / "work", smoke=True,
        train_frameworks=("torch",), budget_s=5.0,
    )  # fmt: skip
    assert time.monotonic() - started < 30  # the workers were stopped, not waited for
    phases = results["phases"]
    assert phases["parity"]["workers"]["torch"]["status"] == "skipped: time budget"
    assert phases["parity"]["not_compared"] == {
        "n2n_unet": {"torch": "skipped: time budget", "jittor": "skipped: time budget"}
    }
    assert {r["status"] for r in phases["bench"]["records"]} == {"skipped: time budget"}
    assert phases["train"]["torch"] == {"status": "skipped: time budget"}
    assert phases["data"]["status"] == "ok"  # made meanwhile, in the check's own process
    assert not succeeded(results)
    saved = json.loads((tmp_path / "out" / check.RESULTS_JSON).read_text())
    assert saved["phases"] == json.loads(json.dumps(phases))
    page = (tmp_path / "out" / check.RESULTS_MD).read_text()
    assert "| n2n_unet | not compared" in page and "**FAILED**" in page
    assert "| torch | skipped: time budget |" in page


def test_the_markdown_shows_each_figure_and_a_failing_arch():
    record = {
        "arch": "rednet10", "forward_layer": "conv3", "forward_error_jittor": 2e-3,
        "forward_error_torch": 3e-7, "forward_threshold": 3e-6, "grad_layer": "deconv5",
        "grad_error_jittor": 5e-2, "grad_error_torch": 1e-6, "grad_threshold": 1e-5,
        "adam_layer": "keras: conv1", "adam_error_jittor": 2e-7, "adam_error_torch": 3e-7,
        "adam_threshold": 3e-6, "kink_flips_torch": 0, "kink_flips_jittor": 2, "passed": False,
        "failure": "forward at conv3: Jittor 0.002 from float64 > threshold 3e-06",
    }  # fmt: skip
    runs = [
        {"framework": "torch", "arch": "n2v_unet", "batch_size": 128, "precision": "tf32",
         "requested_precision": "tf32", "status": "ok", "patches_per_s": 6123.4,
         "peak_memory_mib": 2048.0, "gpu_busy_percent": 97.0},
        {"framework": "jittor", "arch": "n2v_unet", "batch_size": 128,
         "requested_precision": "tf32", "status": "skipped: time budget"},
    ]  # fmt: skip
    results = {
        "smoke": False,
        "elapsed_s": 512.0,
        "machine": {"date": "2026-01-01T00:00:00+00:00", "gpu": "NVIDIA H200", "cpus": 16,
                    "python": "3.12.3", "driver": "580.1", "cuda_driver": "13.0"},
        "frameworks": {"torch": {"torch": "2.11.0+cu130", "cuda": "13.0", "cudnn": 91000}},
        "settings": {
            "budget_s": 540.0, "device": "cuda",
            "parity": {"batch_size": 4, "steps": 5, "tolerance": 1e-4},
            "train": {"arch": "n2v_unet", "batch_size": 128, "steps_per_epoch": 400,
                      "optimizer": {"lr": 4e-4, "eps": 1e-7}, "schedule": {"kind": "plateau"}},
        },
        "phases": {
            "parity": {"records": [record], "not_compared": {}},
            "bench": {"records": runs, "ratios": []},
            "train": {"torch": {"status": "ok", "train": {
                "precision": "tf32", "budget_s": 300.0, "train_s": 280.5, "steps": 13000,
                "epochs_complete": 32, "patches_per_s": 5931.2, "gpu_busy_percent": 93.5,
                "framework_peak_mib": 3100.0}, "eval": {"images": 68, "test_sets": {"bsd68": {
                    "last": {"psnr_mean": 27.71, "ssim_mean": 0.7801},
                    "best": {"psnr_mean": 27.69, "ssim_mean": 0.7795}}}}}},
        },
    }  # fmt: skip
    page = check.render_markdown(results)
    assert "NVIDIA H200" in page and "torch 2.11.0+cu130" in page
    assert "| rednet10 | conv3 | 2.00e-03 | 3.00e-07 | 3.00e-06 | deconv5 | 5.00e-02 |" in page
    assert "| 0 / 2 | **FAILED**: forward at conv3: Jittor 0.002 from float64" in page
    assert "| n2v_unet | 128 | tf32 | 6123 | skipped: time budget | — | 2048 |" in page
    assert "| torch | ok | tf32 | 300 | 280 | 13000 | 32 | 5931 | 94 | 3100 | 27.71 | 0.7801 |" in (
        page
    )


@pytest.mark.slow
def test_the_check_makes_exactly_the_pipelines_data(fake, tmp_path):
    """The data stage run by the check equals the one the Snakemake rules run (same seed,
    sigma, split size, patch size): byte-identical arrays."""
    # The check's recipe as its smoke mode trains it on generated images: the paper's, on
    # whole images (generated images have no Train400 crops) with one held out.
    config = {
        "seed": 7,
        "sigmas": [25],
        "recipes": ["paper"],
        "recipe_book": {"paper": {"train_set": "bsd400", "validation": {"heldout_images": 1}}},
        "data": fake.data_config([str(fake.images)], n_valid=2, patch_size=32),
    }
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    recipe = (
        PipelineConfig.from_mapping(load_config(REPO_ROOT / "config" / "config.yaml", config_file))
        .recipe("paper")
        .train
    )
    workdir = tmp_path / "pipeline"
    folder = f"resources/patches/{recipe.data_tag}/sigma25"
    targets = [f"{folder}/{name}" for name in
               ("train.npy", "train_index.csv", "train_stats.json", "valid_tiles.npz")]  # fmt: skip
    targets += ["resources/bsd68_split.csv", "resources/noisy/sigma25/bsd68.npz"]
    command = [
        str(SNAKEMAKE), "-s", str(REPO_ROOT / "Snakefile"), "--directory", str(workdir),
        "--workflow-profile", "none", "--cores", "2", *targets, "--configfile", str(config_file),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    prepare(fake, tmp_path / "pack")
    data = pack.make_data(
        tmp_path / "pack", tmp_path / "check", 25, 7, 2, 32, workers=2, recipe=recipe,
        crops_file=REPO_ROOT / "config" / "data" / "train400_crops.txt",
    )  # fmt: skip
    ours, theirs = data.patch_dir, workdir / folder
    assert data.split_csv.read_text() == (workdir / "resources" / "bsd68_split.csv").read_text()
    for name in ("train_index.csv", "train_stats.json"):
        assert (ours / name).read_text() == (theirs / name).read_text(), name
    np.testing.assert_array_equal(np.load(ours / "train.npy"), np.load(theirs / "train.npy"))
    with np.load(ours / "valid_tiles.npz") as a, np.load(theirs / "valid_tiles.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])
    noisy = workdir / "resources" / "noisy" / "sigma25" / "bsd68.npz"
    with np.load(data.noisy_bsd68) as a, np.load(noisy) as b:
        assert sorted(a.files) == sorted(b.files)
        assert all(np.array_equal(a[key], b[key]) for key in a.files)


@pytest.mark.slow
@pytest.mark.jittor
def test_smoke_check_runs_every_phase_on_the_cpu(fake, tmp_path):
    """`prepare`, then `python -m n2v_repro.gpu_check --smoke` as a maintainer runs it."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    packed = tmp_path / "pack"
    command = [
        sys.executable, "-m", "n2v_repro.gpu_check", "prepare", "--mirror", str(fake.images),
        "--dest", str(packed), "--manifest", str(fake.manifest), "--bsd68-ids",
        str(fake.bsd68_ids), "--bsd68-pixels", str(fake.bsd68_pixels),
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "packed 5 training + 5 BSD68 jpgs" in result.stdout

    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "n2v_repro.gpu_check", "--smoke", "--out", str(out),
        "--data", str(packed), "--work", str(tmp_path / "work"),
    ]  # fmt: skip
    started = time.monotonic()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert seconds < check.SMOKE.budget_s + 30
    results = json.loads((out / check.RESULTS_JSON).read_text())
    assert results["smoke"] and results["settings"]["device"] == "cpu"
    assert results["elapsed_s"] <= check.SMOKE.budget_s
    phases = results["phases"]

    (record,) = phases["parity"]["records"]
    assert record["arch"] == "n2n_unet" and record["passed"]
    assert all(record[f"{c}_error_jittor"] <= record[f"{c}_threshold"] for c in parity.CHECKS)

    runs = {r["framework"]: r for r in phases["bench"]["records"]}
    assert set(runs) == {"torch", "jittor"}
    for run in runs.values():
        assert run["status"] == "ok" and run["device"] == "cpu" and run["precision"] == "fp32"
        assert run["patches_per_s"] > 0 and run["gpu_busy_percent"] is None
    (ratio,) = phases["bench"]["ratios"]
    assert ratio["jittor_over_torch"] == pytest.approx(
        runs["jittor"]["patches_per_s"] / runs["torch"]["patches_per_s"]
    )

    assert phases["data"] == {**phases["data"], "status": "ok", "bsd68_images": 5, "n_valid": 2}
    torch_run = phases["train"]["torch"]
    assert torch_run["status"] == "ok"
    train = torch_run["train"]
    assert train["steps"] >= train["steps_per_epoch"] and train["epochs_complete"] >= 1
    assert train["patches"] == train["steps"] * train["batch_size"]
    assert len(train["history"]) == train["epochs_complete"]
    evaluation = torch_run["eval"]
    assert evaluation["images"] == 5
    bsd68 = evaluation["test_sets"]["bsd68"]
    assert set(bsd68) == {"noisy", "last", "best"} and bsd68["last"]["n"] == 5
    assert all(0 < bsd68[w]["psnr_mean"] < 60 for w in bsd68)
    assert len(evaluation["per_image"]) == 10  # 5 images x (last, best)
    # Jittor trains too when the budget leaves it room; either way it is accounted for.
    assert phases["train"]["jittor"]["status"] in ("ok", "skipped: time budget")
    assert results["frameworks"]["torch"]["torch"] and results["frameworks"]["jittor"]["jittor"]

    page = (out / check.RESULTS_MD).read_text()
    assert "| n2n_unet | 2 | fp32 |" in page and "| torch | ok | fp32 |" in page
    assert (out / check.WORKER_LOG).read_text().count("=====") >= 5
    print(f"smoke check: {seconds:.1f} s")


@pytest.mark.slow
def test_a_framework_that_cannot_start_fails_its_parts_and_the_rest_completes(
    fake, tmp_path, monkeypatch
):
    """As when Jittor's CUDA set-up fails on the GPU machine: its parity, throughput runs and
    training are recorded as failed with the reason; torch's parts still run; exit status 1."""
    site = tmp_path / "site_jittor"
    (site / "jittor").mkdir(parents=True)
    (site / "jittor" / "__init__.py").write_text("raise ImportError('no CUDA toolkit here')\n")
    monkeypatch.setenv("N2V_SITE_JITTOR", str(site))
    prepare(fake, tmp_path / "pack")
    results = check.run_check(
        out=tmp_path / "out", pack=tmp_path / "pack", work=tmp_path / "work", smoke=True,
        train_frameworks=("torch", "jittor"),
    )  # fmt: skip
    phases = results["phases"]
    assert results["frameworks"]["jittor"] == {"error": "ImportError: no CUDA toolkit here"}
    assert phases["parity"]["not_compared"]["n2n_unet"]["torch"] == "ok"
    assert "no CUDA toolkit here" in phases["parity"]["not_compared"]["n2n_unet"]["jittor"]
    runs = {r["framework"]: r for r in phases["bench"]["records"]}
    assert runs["torch"]["status"] == "ok"
    assert runs["jittor"]["status"] == "failed: ImportError: no CUDA toolkit here"
    assert phases["train"]["torch"]["status"] == "ok"
    assert phases["train"]["torch"]["eval"]["images"] == 5
    assert phases["train"]["jittor"]["status"].startswith("failed: exit 1")
    assert not succeeded(results)
    page = (tmp_path / "out" / check.RESULTS_MD).read_text()
    assert "- jittor could not start: ImportError: no CUDA toolkit here" in page
