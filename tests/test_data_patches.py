"""Patch stage: tiling, flat training source, statistics and the whole patchify step."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from n2v_repro.data.patches import PatchError, patchify, pixel_stats, tile_grid, tile_image
from n2v_repro.io.formats import write_split


def test_tile_grid_counts_positions_and_drops_partial_tiles() -> None:
    assert tile_grid(321, 481, 64) == [(r, c) for r in range(0, 257, 64) for c in range(0, 418, 64)]
    assert len(tile_grid(321, 481, 64)) == 35
    assert len(tile_grid(481, 321, 64)) == 35
    assert tile_grid(63, 100, 64) == []
    assert tile_grid(64, 130, 64) == [(0, 0), (0, 64)]


def test_tile_image_content_row_major() -> None:
    image = np.arange(7 * 10).reshape(7, 10)
    tiles = tile_image(image, 3)
    assert tiles.shape == (6, 3, 3)  # 2 rows x 3 cols; the partial ones dropped
    assert np.array_equal(tiles[1], image[0:3, 3:6])
    assert np.array_equal(tiles[3], image[3:6, 0:3])


def test_pixel_stats_float64_two_pass() -> None:
    images = {
        "1": np.full((100, 100), 1e4 + 1, np.float32),
        "2": np.full((50, 10), 1e4 - 1, np.float32),
    }
    stats = pixel_stats(images)
    values = np.concatenate([a.ravel().astype(np.float64) for a in images.values()])
    assert stats["mean"] == pytest.approx(values.mean(), rel=1e-12)
    assert stats["std"] == pytest.approx(values.std(), rel=1e-9)


def _setup(tmp_path: Path, shapes: dict[str, tuple[int, int]], valid: set[str]) -> dict:
    rng = np.random.default_rng(3)
    clean = {i: rng.integers(0, 256, s, dtype=np.uint8) for i, s in shapes.items()}
    noisy = {
        i: c.astype(np.float32) + rng.normal(0, 25, c.shape).astype(np.float32)
        for i, c in clean.items()
    }
    np.savez(tmp_path / "bsd68.npz", **noisy)
    train = {
        "12": rng.normal(100, 50, (40, 70)).astype(np.float32),
        "3": rng.normal(100, 50, (70, 40)).astype(np.float32),
    }
    np.savez(tmp_path / "bsd400.npz", **train)
    pngs = []
    for image_id, pixels in clean.items():
        pngs.append(tmp_path / "gray" / f"{image_id}.png")
        pngs[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(pixels, mode="L").save(pngs[-1])
    write_split(tmp_path / "split.csv", {i: ("valid" if i in valid else "test") for i in shapes})
    outputs = {
        k: tmp_path / "out" / name
        for k, name in [
            ("train", "train.npy"),
            ("index", "train_index.csv"),
            ("stats", "train_stats.json"),
            ("valid", "valid_tiles.npz"),
        ]
    }
    return {"clean": clean, "noisy": noisy, "train": train, "pngs": pngs, "outputs": outputs}


def test_patchify_writes_the_contract_formats(tmp_path: Path) -> None:
    shapes = {"20": (70, 100), "9": (100, 70), "31": (64, 64), "4": (33, 33)}
    s = _setup(tmp_path, shapes, valid={"20", "9", "31"})
    patchify(
        tmp_path / "bsd400.npz",
        tmp_path / "bsd68.npz",
        tmp_path / "split.csv",
        s["pngs"],
        32,
        s["outputs"],
    )

    flat = np.load(s["outputs"]["train"], mmap_mode="r")
    assert flat.dtype == np.float32 and flat.ndim == 1
    with open(s["outputs"]["index"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["id"] for r in rows] == ["3", "12"]  # numeric id order
    for row in rows:
        start, h, w = int(row["offset"]), int(row["height"]), int(row["width"])
        assert np.array_equal(flat[start : start + h * w].reshape(h, w), s["train"][row["id"]])
    assert flat.size == sum(a.size for a in s["train"].values())

    stats = json.loads(s["outputs"]["stats"].read_text())
    values = np.concatenate([a.ravel() for a in s["train"].values()]).astype(np.float64)
    assert stats["mean"] == pytest.approx(values.mean()) and stats["std"] == pytest.approx(
        values.std()
    )

    with np.load(s["outputs"]["valid"]) as tiles:
        noisy, clean, ids = tiles["noisy"], tiles["clean"], tiles["ids"]
    # id order 9, 20, 31: 3x2 + 2x3 + 2x2 tiles of 32; image 4 is test.
    assert ids.tolist() == ["9"] * 6 + ["20"] * 6 + ["31"] * 4
    assert noisy.dtype == np.float32 and clean.dtype == np.uint8 and noisy.shape == (16, 32, 32)
    assert np.array_equal(clean[6 + 4], s["clean"]["20"][32:64, 32:64])
    assert np.array_equal(noisy[6 + 4], s["noisy"]["20"][32:64, 32:64])
    assert np.array_equal(clean[1], s["clean"]["9"][0:32, 32:64])
    assert np.all(np.abs(noisy - clean) < 200) and not np.array_equal(noisy, clean)


def test_patchify_missing_validation_image_names_it(tmp_path: Path) -> None:
    s = _setup(tmp_path, {"20": (64, 64), "9": (64, 64)}, valid={"20"})
    write_split(tmp_path / "split.csv", {"20": "valid", "9": "test", "77": "valid"})
    with pytest.raises(PatchError, match="validation id 77"):
        patchify(
            tmp_path / "bsd400.npz",
            tmp_path / "bsd68.npz",
            tmp_path / "split.csv",
            s["pngs"],
            32,
            s["outputs"],
        )
    assert not s["outputs"]["valid"].exists()
