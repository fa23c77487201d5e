"""Patch stage: tiling, flat training source, statistics and the whole patchify step."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from n2v_repro.config import ValidationConfig
from n2v_repro.data.gray import pixel_digest
from n2v_repro.data.patches import PatchError, patchify, pixel_stats, tile_grid, tile_image
from n2v_repro.data.train400 import CropError, locate_crops, read_crops
from n2v_repro.io.formats import write_gray_png, write_split

BSD68_SPLIT = ValidationConfig("bsd68_split", 4)


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


def _pngs(folder: Path, images: dict[str, np.ndarray]) -> list[Path]:
    for image_id, pixels in images.items():
        write_gray_png(folder / f"{image_id}.png", pixels)
    return [folder / f"{image_id}.png" for image_id in images]


def _outputs(folder: Path) -> dict[str, Path]:
    names = {"train": "train.npy", "index": "train_index.csv", "stats": "train_stats.json",
             "valid": "valid_tiles.npz"}  # fmt: skip
    return {key: folder / "out" / name for key, name in names.items()}


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
    pngs = _pngs(tmp_path / "gray", clean)
    write_split(tmp_path / "split.csv", {i: ("valid" if i in valid else "test") for i in shapes})
    return dict(clean=clean, noisy=noisy, train=train, pngs=pngs, outputs=_outputs(tmp_path))


def _patchify_split(tmp_path: Path, s: dict) -> None:
    """patchify of the port recipe: validation on the BSD68 split."""
    patchify(train_npz=tmp_path / "bsd400.npz", bsd68_npz=tmp_path / "bsd68.npz",
             split_csv=tmp_path / "split.csv", clean_bsd68_pngs=s["pngs"], patch_size=32,
             outputs=s["outputs"], validation=BSD68_SPLIT)  # fmt: skip


def test_patchify_writes_the_contract_formats(tmp_path: Path) -> None:
    shapes = {"20": (70, 100), "9": (100, 70), "31": (64, 64), "4": (33, 33)}
    s = _setup(tmp_path, shapes, valid={"20", "9", "31"})
    _patchify_split(tmp_path, s)

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
        _patchify_split(tmp_path, s)
    assert not s["outputs"]["valid"].exists()


# --- validation on held-out training images (the paper) -----------------------------------


def _training_set(tmp_path: Path, ids: list[str], shape: tuple[int, int] = (70, 90)) -> dict:
    """Clean and noisy training images; clean PNGs in tmp_path/gray400; noisy npz."""
    rng = np.random.default_rng(5)
    clean = {i: rng.integers(0, 256, shape, dtype=np.uint8) for i in ids}
    noisy = {i: c + rng.normal(0, 25, shape).astype(np.float32) for i, c in clean.items()}
    np.savez(tmp_path / "bsd400.npz", **noisy)
    pngs = _pngs(tmp_path / "gray400", clean)
    return {"clean": clean, "noisy": noisy, "pngs": pngs, "outputs": _outputs(tmp_path)}


def _patchify_heldout(tmp_path: Path, t: dict, heldout: int, **train400: Path | str) -> None:
    """patchify of the paper recipe: validation on the last `heldout` training images."""
    patchify(train_npz=tmp_path / "bsd400.npz", clean_train_pngs=t["pngs"], patch_size=32,
             outputs=t["outputs"], validation=ValidationConfig("heldout_train", heldout),
             **train400)  # fmt: skip


def test_heldout_train_validates_on_the_last_training_images_and_trains_on_the_rest(
    tmp_path: Path,
) -> None:
    t = _training_set(tmp_path, ["5", "40", "7", "100"])  # id order 5, 7, 40, 100
    _patchify_heldout(tmp_path, t, 2)
    with open(t["outputs"]["index"], newline="") as handle:
        assert [r["id"] for r in csv.DictReader(handle)] == ["5", "7"]
    stats = json.loads(t["outputs"]["stats"].read_text())
    values = np.concatenate([t["noisy"][i].ravel() for i in ("5", "7")]).astype(np.float64)
    assert stats["mean"] == pytest.approx(values.mean())  # held-out pixels left out
    assert stats["validation_scheme"] == "heldout_train"
    assert stats["validation_ids"] == ["40", "100"]
    with np.load(t["outputs"]["valid"]) as tiles:
        assert tiles["ids"].tolist() == ["40"] * 4 + ["100"] * 4  # 2x2 tiles of 32 in 70x90
        np.testing.assert_array_equal(tiles["noisy"][5], t["noisy"]["100"][0:32, 32:64])
        np.testing.assert_array_equal(tiles["clean"][5], t["clean"]["100"][0:32, 32:64])


def test_heldout_train_must_leave_a_training_image(tmp_path: Path) -> None:
    t = _training_set(tmp_path, ["1", "2"])
    with pytest.raises(PatchError, match="heldout_images"):
        _patchify_heldout(tmp_path, t, 2)
    assert not t["outputs"]["train"].exists()


def _crop_table(path: Path, rows: list[tuple[str, str, int, int, int, str]]) -> Path:
    lines = ["# name id top left size sha256"]
    lines += [
        f"{n}  {i}  {top}  {left}  {size}  {digest}" for n, i, top, left, size, digest in rows
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_train400_crops_are_cut_in_table_order_and_checked(tmp_path: Path) -> None:
    t = _training_set(tmp_path, ["5", "40", "7"])
    size = 40
    corners = {"40": (3, 11), "5": (30, 50), "7": (0, 0)}  # table order: 40, 5, 7
    rows = [
        (
            f"test_{k:03d}",
            i,
            top,
            left,
            size,
            pixel_digest(t["clean"][i][top : top + size, left : left + size]),
        )
        for k, (i, (top, left)) in enumerate(corners.items(), start=1)
    ]
    table = _crop_table(tmp_path / "crops.txt", rows)
    _patchify_heldout(tmp_path, t, 1, train_set="train400", crops_file=table)
    with open(t["outputs"]["index"], newline="") as handle:
        index = list(csv.DictReader(handle))
    assert {r["id"] for r in index} == {"40", "5"}  # 7, last in table order, is held out
    flat = np.load(t["outputs"]["train"])
    for row in index:
        top, left = corners[row["id"]]
        start = int(row["offset"])
        np.testing.assert_array_equal(
            flat[start : start + size * size].reshape(size, size),
            t["noisy"][row["id"]][top : top + size, left : left + size],
        )
    with np.load(t["outputs"]["valid"]) as tiles:
        assert tiles["ids"].tolist() == ["7"]  # one 32x32 tile fits in a 40x40 crop
        np.testing.assert_array_equal(tiles["clean"][0], t["clean"]["7"][:32, :32])

    # A crop whose pixels differ from the recorded hash is refused, naming it.
    rows[1] = (*rows[1][:5], "0" * 64)
    _crop_table(table, rows)
    with pytest.raises(CropError, match="test_002"):
        _patchify_heldout(tmp_path, t, 1, train_set="train400", crops_file=table)


def test_repository_crop_table_covers_bsd400_once() -> None:
    crops = read_crops(
        Path(__file__).resolve().parents[1] / "config" / "data" / "train400_crops.txt"
    )
    assert len(crops) == 400 and len({c.image_id for c in crops}) == 400
    assert all(c.size == 180 for c in crops)


def test_locate_crops_finds_the_exact_block_only() -> None:
    rng = np.random.default_rng(0)
    images = {
        "a": rng.integers(0, 256, (50, 60), dtype=np.uint8),
        "b": rng.integers(0, 256, (40, 40), dtype=np.uint8),
    }
    crop = images["a"][7:27, 13:33].copy()
    changed = crop.copy()
    changed[5, 5] ^= 1
    found = locate_crops({"x": crop, "y": changed}, images)
    assert found == {"x": [("a", 7, 13)], "y": []}


@pytest.mark.parametrize("target", ["clean", "noisy2"])
def test_patchify_writes_the_targets_of_n2c_and_n2n(tmp_path: Path, target: str) -> None:
    """N2C's clean and N2N's second-realisation targets line up with the noisy source."""
    t = _training_set(tmp_path, ["5", "40", "7", "100"])
    second = {i: n + np.float32(3.5) for i, n in t["noisy"].items()}
    np.savez(tmp_path / "bsd400_noisy2.npz", **second)
    outputs = {**t["outputs"], "target": tmp_path / "train_target.npy"}
    patchify(train_npz=tmp_path / "bsd400.npz", clean_train_pngs=t["pngs"], patch_size=32,
             outputs=outputs, validation=ValidationConfig("heldout_train", 2), target=target,
             train2_npz=tmp_path / "bsd400_noisy2.npz")  # fmt: skip
    expected = t["clean"] if target == "clean" else second
    flat = np.load(outputs["target"])
    assert flat.dtype == np.float32
    np.testing.assert_array_equal(
        flat, np.concatenate([expected[i].ravel() for i in ("5", "7")]).astype(np.float32)
    )
    with np.load(outputs["valid"]) as tiles:
        assert ("noisy2" in tiles.files) == (target == "noisy2")
        if target == "noisy2":
            np.testing.assert_array_equal(tiles["noisy2"][5], second["100"][0:32, 32:64])


def test_patchify_n2n_needs_heldout_validation(tmp_path: Path) -> None:
    t = _training_set(tmp_path, ["5", "7"])
    with pytest.raises(PatchError, match="held-out"):
        patchify(train_npz=tmp_path / "bsd400.npz", clean_train_pngs=t["pngs"], patch_size=32,
                 outputs={**t["outputs"], "target": tmp_path / "t.npy"},
                 validation=ValidationConfig("bsd68_split", 2), target="clean")  # fmt: skip
