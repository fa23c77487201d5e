"""The BM3D baseline: its scaling of sigma, its files (the learned evaluations' formats), and
the rule through Snakemake on two generated BSD68 images with config/test.yaml."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from fake_bsds import make_fake_bsds
from fake_results import fake_bm3d, smooth_image, write_bm3d, write_data
from pipeline_runner import run_snakemake, write_config

from n2v_repro import paths
from n2v_repro.evaluation.bm3d_baseline import BM3D_WEIGHTS, bm3d_denoise
from n2v_repro.evaluation.metrics import psnr
from n2v_repro.evaluation.predict import TEST_SETS
from n2v_repro.io.formats import EVAL_SUMMARY_KEYS, PER_IMAGE_COLUMNS, read_per_image

SIGMA = 25


def test_bm3d_takes_sigma_in_the_images_grey_levels() -> None:
    """sigma is in 8-bit grey levels like the image: the true sigma must beat one 4x too small
    (what a [0, 1] image with a 0-255 sigma, or the reverse, would amount to) by far."""
    pytest.importorskip("bm3d")
    rng = np.random.default_rng(0)
    clean = smooth_image((48, 48), rng)
    noisy = (clean + rng.normal(0, SIGMA, clean.shape)).astype(np.float32)
    noisy[0, 0] = 300.0  # unclipped input: must be accepted as it is
    right = bm3d_denoise(noisy, SIGMA)
    too_small = bm3d_denoise(noisy, SIGMA / 4)
    assert right.dtype == np.float32 and right.shape == noisy.shape
    assert psnr(clean, right) > psnr(clean, noisy) + 5.0
    assert psnr(clean, right) > psnr(clean, too_small) + 2.0


def test_run_bm3d_writes_the_learned_evaluations_formats(tmp_path: Path) -> None:
    ids = [f"im{i}" for i in range(4)]
    write_data(tmp_path, ids, n_valid=1, sigmas=[SIGMA])
    summary = write_bm3d(tmp_path, SIGMA)
    out = tmp_path / paths.BM3D_EVAL_DIR.format(sigma=SIGMA)

    assert set(EVAL_SUMMARY_KEYS) <= set(summary)
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    with open(out / "per_image.csv", newline="") as handle:
        assert tuple(csv.DictReader(handle).fieldnames or ()) == PER_IMAGE_COLUMNS
    rows = read_per_image(out / "per_image.csv")
    assert [(r["id"], r["weights"]) for r in rows] == [
        (i, w) for w in ("noisy", BM3D_WEIGHTS) for i in ids
    ]
    subsets = {r["id"]: r["subset"] for r in rows}
    assert subsets == {i: "valid" if i == "im0" else "test" for i in ids}
    # BM3D chose nothing: every image of every test set is scored, best-style exclusions none.
    for test_set, subsets in TEST_SETS.items():
        n = sum(r["subset"] in subsets for r in rows if r["weights"] == BM3D_WEIGHTS)
        assert summary["test_sets"][test_set][BM3D_WEIGHTS]["n"] == n
    scores = summary["test_sets"]["bsd68"]
    assert scores[BM3D_WEIGHTS]["psnr_mean"] > scores["noisy"]["psnr_mean"]
    assert summary["framework"] is None and summary["recipe"] == "bm3d"
    assert summary["inference"]["images"] == 4 and summary["inference"]["seconds_per_image"] > 0
    assert sorted(p.name for p in (out / "denoised").iterdir()) == [f"{i}.png" for i in ids]
    assert fake_bm3d(np.ones((2, 2), np.float32), SIGMA).dtype == np.float32


@pytest.mark.slow
def test_bm3d_rule_on_two_images_of_the_test_config(tmp_path: Path) -> None:
    """The rule end to end: the data jobs it needs, then BM3D on both BSD68 images."""
    pytest.importorskip("bm3d")
    fake = make_fake_bsds(tmp_path / "fake", n_train=2, n_test=1, n_val=3, n_bsd68=2,
                          size=(64, 80))  # fmt: skip
    workdir = tmp_path / "work"
    config = {
        "frameworks": ["torch"],
        "sigmas": [SIGMA],
        "baselines": ["bm3d"],
        "data": fake.data_config(
            [str(fake.images)], n_valid=1, bsd68_images=None, train_images=None, patch_size=32
        ),  # fmt: skip
    }
    configfile = write_config(tmp_path / "config.yaml", config)
    summary_path = paths.BM3D_EVAL_DIR.format(sigma=SIGMA) + "/summary.json"
    workdir.mkdir()
    result = run_snakemake(workdir, configfile, [summary_path], timeout_s=300)
    assert result.returncode == 0, result.stdout[-6000:]

    summary = json.loads((workdir / summary_path).read_text())
    assert summary["test_sets"]["bsd68"][BM3D_WEIGHTS]["n"] == 2
    assert summary["test_sets"]["bsd68_test"][BM3D_WEIGHTS]["n"] == 1
    scores = summary["test_sets"]["bsd68"]
    assert scores[BM3D_WEIGHTS]["psnr_mean"] > scores["noisy"]["psnr_mean"] + 3.0
    assert (workdir / paths.BM3D_BENCHMARK.format(sigma=SIGMA)).stat().st_size > 0
    assert "BM3D sigma 25: 2 images" in (workdir / f"logs/bm3d/sigma{SIGMA}.log").read_text()
    denoised = workdir / paths.BM3D_EVAL_DIR.format(sigma=SIGMA) / "denoised"
    assert sorted(p.stem for p in denoised.glob("*.png")) == sorted(fake.bsd68)

    # With baselines: [] the run plans no BM3D job and the methods table reads none.
    config["baselines"] = []
    write_config(configfile, config)
    dry = run_snakemake(workdir, configfile, ["results/tables/methods.csv"], ["-n"],
                        timeout_s=120)  # fmt: skip
    assert dry.returncode == 0, dry.stdout[-4000:]
    assert "rule bm3d" not in dry.stdout and "methods_table" in dry.stdout
