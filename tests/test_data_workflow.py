"""The data rules run through Snakemake, on generated images and on the real BSD68.

Each run uses the repository's Snakefile with a temporary working directory and a config
file pointing the mirrors at a loopback HTTP server, so nothing is written into the checkout.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from fake_bsds import FakeBsds, make_fake_bsds
from http_mirror import serve_directory, unreachable_url
from PIL import Image

from n2v_repro.data.gray import load_gray, pixel_digest, read_pixel_hashes
from n2v_repro.data.manifest import read_manifest

REPO_ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
SIGMA = 15
PATCH = 32


# The data set of the default recipe (port): whole BSD400 images, validation on the BSD68 split.
DATA_TAG = "bsd400_bsd68_split"


def data_targets(sigma: int) -> list[str]:
    folder = f"resources/patches/{DATA_TAG}/sigma{sigma}"
    names = ("train.npy", "train_index.csv", "train_stats.json", "valid_tiles.npz")
    return [f"{folder}/{name}" for name in names]


def run_snakemake(
    tmp_path: Path, config: dict, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    command = [
        str(SNAKEMAKE), "-s", str(REPO_ROOT / "Snakefile"), "--directory", str(workdir),
        "--configfile", str(config_file), "--workflow-profile", "none", "--cores", "2", *args,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if check:
        assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return result


def small_config(fake: FakeBsds, mirrors: list[str]) -> dict:
    return {
        "sigmas": [SIGMA],
        "data": fake.data_config(mirrors, n_valid=2, patch_size=PATCH),
    }


# N2N's and N2C's data sets (their own training targets), validated on a held-out image.
TARGET_RECIPES = {
    method: {"method": method, "validation": {"scheme": "heldout_train", "heldout_images": 1}}
    for method in ("n2n", "n2c")
}


def target_folder(target: str, sigma: int) -> str:
    return f"resources/patches/bsd400_heldout1_{target}/sigma{sigma}"


@pytest.mark.slow
def test_generated_data_end_to_end(tmp_path: Path) -> None:
    fake = make_fake_bsds(tmp_path / "fake", n_train=3, n_test=2, n_val=6, n_bsd68=5)
    work = tmp_path / "work"
    targets = [f"{target_folder(t, SIGMA)}/train_target.npy" for t in ("noisy2", "clean")]
    with serve_directory(fake.images) as base:
        config = small_config(fake, [unreachable_url(), base])
        config |= {"recipes": ["port", *TARGET_RECIPES], "recipe_book": TARGET_RECIPES}
        run_snakemake(tmp_path, config, *data_targets(SIGMA), *targets)

    manifest = read_manifest(fake.manifest)
    for image_id in fake.train_ids + fake.bsd68:
        jpg = work / "resources" / "bsds500" / manifest[image_id].relpath
        assert jpg.read_bytes() == fake.jpg(image_id).read_bytes()
    for image_id in fake.bsd68:
        with Image.open(work / f"resources/gray/bsd68/{image_id}.png") as png:
            assert png.mode == "L"
            assert np.array_equal(np.asarray(png), load_gray(fake.jpg(image_id)))

    with open(work / "resources/bsd68_split.csv", newline="") as handle:
        split = {row["id"]: row["subset"] for row in csv.DictReader(handle)}
    assert list(split) == fake.bsd68 and list(split.values()).count("valid") == 2

    with np.load(work / f"resources/noisy/sigma{SIGMA}/bsd400.npz") as noisy:
        assert sorted(noisy.files, key=int) == fake.train_ids
        assert all(noisy[k].dtype == np.float32 for k in noisy.files)

    folder = work / f"resources/patches/{DATA_TAG}/sigma{SIGMA}"
    flat = np.load(folder / "train.npy", mmap_mode="r")
    with open(folder / "train_index.csv", newline="") as handle:
        index = list(csv.DictReader(handle))
    assert [r["id"] for r in index] == fake.train_ids
    assert flat.size == sum(int(r["height"]) * int(r["width"]) for r in index)
    portrait = next(r for r in index if r["id"] == fake.ids["train"][-1])
    assert (int(portrait["height"]), int(portrait["width"])) == (128, 96)
    stats = json.loads((folder / "train_stats.json").read_text())
    assert stats["mean"] == pytest.approx(float(np.mean(flat, dtype=np.float64)))
    assert stats["std"] == pytest.approx(float(np.std(flat, dtype=np.float64)))
    with np.load(folder / "valid_tiles.npz") as tiles:
        valid = sorted((i for i, s in split.items() if s == "valid"), key=int)
        # 96x128 or 128x96 images hold 3x4 = 12 tiles of 32.
        assert tiles["ids"].tolist() == [i for i in valid for _ in range(12)]
        assert tiles["noisy"].shape == (24, PATCH, PATCH)
        residual = tiles["noisy"] - tiles["clean"].astype(np.float32)
        assert abs(residual.std() - SIGMA) < 2.5
    for log in ("download_bsds500/download_bsds500", "to_gray/bsd400", "to_gray/bsd68"):
        assert (work / "logs" / f"{log}.log").exists(), log
    assert (work / "logs/split_bsd68/split_bsd68.log").exists()
    assert "MB/s" in (work / "logs/download_bsds500/download_bsds500.log").read_text()

    # N2N trains against a second, independent realisation; N2C against the clean pixels.
    for target in ("noisy2", "clean"):
        folder = work / target_folder(target, SIGMA)
        train = np.load(folder / "train.npy").astype(np.float64)
        difference = np.load(folder / "train_target.npy") - train
        expected = SIGMA * (2**0.5 if target == "noisy2" else 1)
        assert abs(difference.std() - expected) < 0.1 * expected, target
        with np.load(folder / "valid_tiles.npz") as tiles:
            assert ("noisy2" in tiles.files) == (target == "noisy2")
    with np.load(work / f"resources/noisy/sigma{SIGMA}/bsd400_noisy2.npz") as second:
        assert sorted(second.files, key=int) == fake.train_ids
    assert (work / f"logs/add_noise/sigma{SIGMA}/bsd400_noisy2.log").exists()

    # Nothing left to do on a second run (a mirror URL that a dry run never contacts; a local
    # folder would have to exist).
    unused = ["http://127.0.0.1:9/unused"]
    dry = run_snakemake(tmp_path, small_config(fake, unused), "-n", *data_targets(SIGMA))
    assert "Nothing to be done" in dry.stdout + dry.stderr


@pytest.mark.slow
def test_checksum_mismatch_fails_the_job_and_keeps_verified_files(tmp_path: Path) -> None:
    fake = make_fake_bsds(tmp_path / "fake", n_train=2, n_test=0, n_val=3, n_bsd68=3)
    victim = fake.bsd68[1]
    jpg = fake.jpg(victim)
    original = jpg.read_bytes()
    jpg.write_bytes(original[:-4] + b"\0\0\0\0")
    work = tmp_path / "work"
    with serve_directory(fake.images) as base:
        result = run_snakemake(
            tmp_path,
            small_config(fake, [base]),
            "resources/bsd68_split.csv",
            "to_gray",
            check=False,
        )
    assert result.returncode != 0
    log = (work / "logs/download_bsds500/download_bsds500.log").read_text()
    assert f"val/{victim}.jpg" in log and "sha256 mismatch" in log and base in log
    # Snakemake removed the failed job's outputs; the verified files stay in the cache.
    assert not list((work / "resources" / "bsds500").rglob("*.jpg"))
    cached = sorted(p.stem for p in (work / "resources" / ".download_cache").rglob("*.jpg"))
    assert cached == sorted(i for i in fake.train_ids + fake.bsd68 if i != victim)
    assert not list(work.rglob("*.part"))

    # Repaired mirror and a manifest newer than the cache: only the missing file is fetched,
    # the rest come from the cache, and the result is up to date afterwards.
    jpg.write_bytes(original)
    fake.manifest.touch()
    with serve_directory(fake.images) as base:
        run_snakemake(tmp_path, small_config(fake, [base]), "resources/bsd68_split.csv", "to_gray")
    log = (work / "logs/download_bsds500/download_bsds500.log").read_text()
    assert f"val/{victim}.jpg from {base}" in log
    assert f"val/{fake.bsd68[0]}.jpg from cache" in log
    dry = run_snakemake(tmp_path, small_config(fake, [base]), "-n", "to_gray")
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]


@pytest.mark.slow
def test_real_bsd68_pixels(tmp_path: Path, shared_bsds500: Path, repo_root: Path) -> None:
    data_dir = repo_root / "config" / "data"
    config = {
        "sigmas": [25],
        "data": {
            "mirrors": [],
            "manifest": str(data_dir / "bsds500.sha256"),
            "bsd68_ids": str(data_dir / "bsd68_ids.txt"),
            "bsd68_pixels": str(data_dir / "bsd68_pixels.sha256"),
            "train_images": 2,
        },
    }
    with serve_directory(shared_bsds500 / "data" / "images") as base:
        config["data"]["mirrors"] = [base]
        run_snakemake(tmp_path, config, "to_gray")
    references = read_pixel_hashes(data_dir / "bsd68_pixels.sha256")
    pngs = sorted((tmp_path / "work" / "resources" / "gray" / "bsd68").glob("*.png"))
    assert len(pngs) == len(references) == 68
    for png in pngs:
        with Image.open(png) as image:
            pixels = np.asarray(image)
        reference = references[png.stem]
        assert pixels.shape == (reference.height, reference.width), png.stem
        assert pixel_digest(pixels) == reference.sha256, png.stem
    assert len(list((tmp_path / "work" / "resources" / "gray" / "bsd400").glob("*.png"))) == 2
