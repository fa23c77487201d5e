"""Noise: one realisation per (seed, sigma, id), float32, unclipped, with the right statistics."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from n2v_repro.data.noise import NoiseError, add_gaussian_noise, noisy_set, write_noisy_sets
from n2v_repro.io.formats import FormatError, write_gray_png


def _write_pngs(folder: Path, images: dict[str, np.ndarray]) -> list[Path]:
    for image_id, pixels in images.items():
        write_gray_png(folder / f"{image_id}.png", pixels)
    return [folder / f"{image_id}.png" for image_id in images]


def test_same_key_same_noise_regardless_of_other_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = {i: rng.integers(0, 256, (20, 30), dtype=np.uint8) for i in ("101", "202", "303")}
    all_three = noisy_set(_write_pngs(tmp_path / "all", images), sigma=25, seed=123)
    only_one = noisy_set(_write_pngs(tmp_path / "one", {"202": images["202"]}), 25, 123)
    assert np.array_equal(all_three["202"], only_one["202"])
    assert list(all_three) == ["101", "202", "303"]


def test_different_sigma_id_or_seed_differ() -> None:
    clean = np.full((16, 16), 128, dtype=np.uint8)
    base = add_gaussian_noise(clean, 25, 123, "101") - clean
    assert not np.allclose(base / 25, (add_gaussian_noise(clean, 50, 123, "101") - clean) / 50)
    assert not np.allclose(base, add_gaussian_noise(clean, 25, 123, "102") - clean)
    assert not np.allclose(base, add_gaussian_noise(clean, 25, 124, "101") - clean)
    assert np.array_equal(base, add_gaussian_noise(clean, 25, 123, "101") - clean)


def test_statistics_dtype_and_no_clipping() -> None:
    clean = np.zeros((512, 512), dtype=np.uint8)
    clean[:, 256:] = 255
    noisy = add_gaussian_noise(clean, 30, 5, "7")
    assert noisy.dtype == np.float32 and noisy.shape == clean.shape
    noise = noisy.astype(np.float64) - clean
    assert abs(noise.mean()) < 0.2  # standard error 30/512 ~ 0.06
    assert abs(noise.std() - 30) < 0.2
    assert noisy.min() < -50 and noisy.max() > 300  # not clipped to [0, 255]
    assert not np.array_equal(noisy, np.round(noisy))  # not rounded


def test_bad_sigma_names_the_key() -> None:
    with pytest.raises(NoiseError, match="sigmas"):
        add_gaussian_noise(np.zeros((2, 2), dtype=np.uint8), 0, 1, "1")


def test_write_noisy_sets_keys_and_rejects_colour_png(tmp_path: Path) -> None:
    images = {"5": np.full((8, 9), 10, np.uint8), "40": np.full((9, 8), 200, np.uint8)}
    pngs = _write_pngs(tmp_path / "a", images)
    out = tmp_path / "noisy" / "a.npz"
    write_noisy_sets({"a": (pngs, out)}, sigma=10, seed=1)
    with np.load(out) as archive:
        assert archive.files == ["5", "40"]
        assert archive["40"].shape == (9, 8) and archive["40"].dtype == np.float32
    rgb = tmp_path / "rgb" / "9.png"
    rgb.parent.mkdir()
    Image.new("RGB", (4, 4)).save(rgb)
    with pytest.raises(FormatError, match=r"9\.png.*mode RGB"):
        write_noisy_sets({"b": ([rgb], tmp_path / "noisy" / "b.npz")}, 10, 1)
    assert not (tmp_path / "noisy" / "b.npz").exists()


def test_second_realisation_is_independent_and_leaves_the_first_unchanged() -> None:
    """N2N's second copy: new noise of the same statistics; realisation 0 is the pipeline's."""
    clean = np.full((200, 200), 100, dtype=np.uint8)
    first = add_gaussian_noise(clean, 25, 123, "101") - 100.0
    again = add_gaussian_noise(clean, 25, 123, "101", realisation=0) - 100.0
    second = add_gaussian_noise(clean, 25, 123, "101", realisation=1) - 100.0
    assert np.array_equal(first, again)
    assert abs(np.corrcoef(first.ravel(), second.ravel())[0, 1]) < 0.02
    assert second.std() == pytest.approx(25, rel=0.02)
    assert second.min() < -50 and second.max() > 50  # neither clipped nor rounded
    with pytest.raises(NoiseError, match="realisation"):
        add_gaussian_noise(clean, 25, 123, "101", realisation=2)
