"""Gray conversion: MATLAB rgb2gray weights and rounding, decoding errors, BSD68 checks."""

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from fake_bsds import make_fake_bsds
from PIL import Image

from n2v_repro.data import gray


def _exact_gray(r: int, g: int, b: int) -> int:
    """rgb2gray in exact rational arithmetic, rounded half up."""
    total = sum(
        Fraction(w) * v
        for w, v in zip(
            ("0.298936021293775", "0.587043074451121", "0.114020904255103"), (r, g, b), strict=True
        )
    )
    return int(total + Fraction(1, 2))


def test_weights_on_known_colours() -> None:
    rgb = np.array(
        [[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [100, 150, 200]]],
        dtype=np.uint8,
    )
    # 255*w: 76.2287 -> 76, 149.6960 -> 150, 29.0753 -> 29; 100/150/200 -> 140.7...
    expected = [0, 255, 76, 150, 29, 141]
    assert gray.rgb_to_gray(rgb)[0].tolist() == expected


def test_round_half_away_from_zero() -> None:
    # numpy's round would give 0, 2, 2, 4: MATLAB's uint8 cast gives 1, 2, 3, 4.
    values = np.array([0.5, 1.5, 2.5, 3.5, 2.4999, 254.5, 255.7, -0.4])
    assert gray.round_to_uint8(values).tolist() == [1, 2, 3, 4, 2, 255, 255, 0]


def test_sums_closest_to_half_match_exact_arithmetic() -> None:
    values = np.arange(256, dtype=np.float64)
    w_r, w_g, w_b = gray.RGB_WEIGHTS
    # All 2^24 triples by broadcasting (134 MB), to find the sums nearest a .5 tie.
    weighted = (
        w_r * values[:, None, None] + w_g * values[None, :, None] + w_b * values[None, None, :]
    )
    distance = np.abs(weighted - np.floor(weighted) - 0.5)
    closest = np.argpartition(distance, 50, axis=None)[:50]
    triples = np.stack(np.unravel_index(closest, distance.shape), -1).astype(np.uint8)
    computed = gray.rgb_to_gray(triples[None])[0]
    assert computed.tolist() == [_exact_gray(*map(int, t)) for t in triples]


def test_rejects_non_rgb_array() -> None:
    with pytest.raises(ValueError, match="RGB"):
        gray.rgb_to_gray(np.zeros((4, 4), dtype=np.uint8))


def test_load_gray_of_l_mode_jpg_is_identity(tmp_path: Path) -> None:
    pixels = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (16, 1))
    path = tmp_path / "1.jpg"
    Image.fromarray(pixels, mode="L").save(path, format="JPEG", quality=95)
    with Image.open(path) as image:
        assert image.mode == "L"
        decoded = np.asarray(image)
    assert np.array_equal(gray.load_gray(path), decoded)


def test_corrupt_jpg_names_the_file_and_writes_nothing(tmp_path: Path) -> None:
    good = tmp_path / "in" / "5.jpg"
    good.parent.mkdir()
    Image.new("RGB", (40, 30), (10, 200, 30)).save(good, format="JPEG")
    corrupt = tmp_path / "in" / "7.jpg"
    corrupt.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 3])
    out = tmp_path / "out"
    with pytest.raises(gray.GrayError, match=r"7\.jpg"):
        gray.convert_images([good, corrupt], [out / "5.png", out / "7.png"], [], None)
    assert sorted(p.name for p in out.iterdir()) == ["5.png"]


def test_bsd68_check_passes_and_fails_naming_the_id(tmp_path: Path) -> None:
    fake = make_fake_bsds(tmp_path / "fake", n_train=1, n_test=0, n_val=2, n_bsd68=2)
    jpgs = [fake.jpg(i) for i in fake.bsd68]
    pngs = [tmp_path / "ok" / f"{i}.png" for i in fake.bsd68]
    gray.convert_images(jpgs, [], pngs, fake.bsd68_pixels, workers=2)
    for image_id, png in zip(fake.bsd68, pngs, strict=True):
        with Image.open(png) as image:
            assert image.mode == "L"
            assert np.array_equal(np.asarray(image), gray.load_gray(fake.jpg(image_id)))

    lines = fake.bsd68_pixels.read_text().splitlines()
    bad_id = fake.bsd68[1]
    tampered = [("0" * 64 + line[64:]) if f"  {bad_id}  " in line else line for line in lines]
    bad_hashes = tmp_path / "bad.sha256"
    bad_hashes.write_text("\n".join(tampered) + "\n")
    bad_out = [tmp_path / "bad" / f"{i}.png" for i in fake.bsd68]
    with pytest.raises(gray.GrayError, match=f"BSD68 id {bad_id}"):
        gray.convert_images(jpgs, [], bad_out, bad_hashes)
    assert not bad_out[1].exists()


def test_pixel_hash_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "p.sha256"
    path.write_text("abc  12  3x4\n")
    with pytest.raises(gray.GrayError, match=r"p\.sha256:1"):
        gray.read_pixel_hashes(path)
    path.write_text(f"{'a' * 64}  12  3x4\n{'b' * 64}  12  3x4\n")
    with pytest.raises(gray.GrayError, match="listed twice"):
        gray.read_pixel_hashes(path)


def test_size_mismatch_is_reported() -> None:
    image = np.zeros((3, 4), dtype=np.uint8)
    reference = gray.PixelHash("1", gray.pixel_digest(image), 4, 3)
    assert "size 3x4" in gray.check_pixels("1", image, reference)
    assert (
        gray.check_pixels("1", image, gray.PixelHash("1", gray.pixel_digest(image), 3, 4)) is None
    )
