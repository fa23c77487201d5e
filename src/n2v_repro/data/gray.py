"""Colour jpg -> 8-bit gray PNG with MATLAB `rgb2gray` weights, and BSD68 pixel checks.

The standard BSD68 pngs are MATLAB `rgb2gray` of the BSDS500 jpgs. MATLAB computes the
weighted sum in double precision and rounds half away from zero when casting to uint8; with
the full-precision weights below and Pillow's RGB decode this reproduces all 68 images bit
for bit (config/data/bsd68_pixels.sha256; tests/test_data_workflow.py checks every one). numpy's
`round` (half to even) would not, on .5 sums.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from n2v_repro.data.manifest import data_lines
from n2v_repro.errors import UserError
from n2v_repro.io.formats import write_gray_png

log = logging.getLogger(__name__)

# MATLAB rgb2gray: the first row of inv([1 .956 .621; 1 -.272 -.647; 1 -1.106 1.703]).
RGB_WEIGHTS = (0.298936021293775, 0.587043074451121, 0.114020904255103)


class GrayError(UserError, RuntimeError):
    """A jpg cannot be decoded or a converted image does not match its reference pixels."""


@dataclass(frozen=True)
class PixelHash:
    """Reference of one gray image: sha256 of its raw row-major uint8 pixels and its shape."""

    image_id: str
    sha256: str
    height: int
    width: int


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """MATLAB rgb2gray of an 8-bit image.

    Parameters
    ----------
    rgb : (H, W, 3) uint8 array.

    Returns
    -------
    (H, W) uint8 array: round-half-away-from-zero of the weighted sum, in float64.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB array, got shape {rgb.shape}")
    weighted = rgb.astype(np.float64) @ np.asarray(RGB_WEIGHTS, dtype=np.float64)
    return round_to_uint8(weighted)


def round_to_uint8(values: np.ndarray) -> np.ndarray:
    """MATLAB's cast to uint8: round half away from zero, saturate to [0, 255].

    No 8-bit RGB triple gives a float64 weighted sum of exactly k + 0.5 with these weights,
    so for rgb2gray this agrees with numpy's half-to-even `round`; it is kept MATLAB's way so
    the conversion stays right for any input.
    """
    rounded = np.sign(values) * np.floor(np.abs(values) + 0.5)
    return np.clip(rounded, 0, 255).astype(np.uint8)


def load_gray(jpg_path: str | Path) -> np.ndarray:
    """Decode a jpg (colour or grayscale) and return its (H, W) uint8 gray image."""
    try:
        with Image.open(jpg_path) as image:
            image.load()
            if image.mode == "L":
                # rgb2gray of a gray image is the image itself (the weights sum to 1).
                return np.asarray(image, dtype=np.uint8).copy()
            rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as error:
        raise GrayError(f"{jpg_path}: cannot decode as an image ({error})") from error
    return rgb_to_gray(rgb)


def pixel_digest(gray: np.ndarray) -> str:
    """sha256 hex digest of the raw row-major uint8 pixels of an (H, W) image."""
    if gray.dtype != np.uint8 or gray.ndim != 2:
        raise ValueError(f"expected an (H, W) uint8 image, got {gray.dtype} {gray.shape}")
    return hashlib.sha256(np.ascontiguousarray(gray).tobytes()).hexdigest()


def read_pixel_hashes(path: str | Path) -> dict[str, PixelHash]:
    """Parse a pixel-hash file (`<sha256>  <id>  <H>x<W>` per line, # comments) by id."""
    hashes: dict[str, PixelHash] = {}
    for number, line in data_lines(path):
        parts = line.split()
        size = parts[2].split("x") if len(parts) == 3 else []
        if (
            len(parts) != 3
            or len(parts[0]) != 64
            or len(size) != 2
            or not all(s.isdigit() for s in size)
        ):
            raise GrayError(f"{path}:{number}: expected '<sha256>  <id>  <H>x<W>', got {line!r}")
        if parts[1] in hashes:
            raise GrayError(f"{path}:{number}: id {parts[1]} listed twice")
        hashes[parts[1]] = PixelHash(parts[1], parts[0].lower(), int(size[0]), int(size[1]))
    return hashes


def check_pixels(image_id: str, gray: np.ndarray, reference: PixelHash) -> str | None:
    """None when `gray` matches `reference`, else a sentence saying how it differs."""
    height, width = gray.shape
    if (height, width) != (reference.height, reference.width):
        return (
            f"size {height}x{width} differs from the reference {reference.height}x{reference.width}"
        )
    digest = pixel_digest(gray)
    if digest != reference.sha256:
        return f"pixel sha256 {digest} differs from the reference {reference.sha256}"
    return None


def _pair_by_id(jpgs: Sequence[str | Path], pngs: Sequence[str | Path]) -> list[tuple[Path, Path]]:
    jpg_by_id = {Path(p).stem: Path(p) for p in jpgs}
    pairs = []
    for png in pngs:
        image_id = Path(png).stem
        if image_id not in jpg_by_id:
            raise GrayError(f"{png}: no input jpg with id {image_id} among the {len(jpgs)} given")
        pairs.append((jpg_by_id[image_id], Path(png)))
    return pairs


def convert_images(
    jpgs: Sequence[str | Path],
    train_pngs: Sequence[str | Path],
    bsd68_pngs: Sequence[str | Path],
    pixel_hashes_file: str | Path | None,
    workers: int = 1,
) -> None:
    """Write the gray PNG of every output, each from the input jpg of the same id.

    Every BSD68 image is checked against `pixel_hashes_file` (unless None) before it is
    written, so a wrong image never appears. All images are processed before failing; the
    error then names every bad file or id.

    Parameters
    ----------
    jpgs : input jpgs, `<anything>/<id>.jpg`.
    train_pngs, bsd68_pngs : output PNGs, `<folder>/<id>.png`; only `bsd68_pngs` are checked.
    pixel_hashes_file : reference pixel hashes (see `read_pixel_hashes`), or None.
    workers : conversion threads (Pillow's decoder releases the GIL).
    """
    references = read_pixel_hashes(pixel_hashes_file) if pixel_hashes_file is not None else None
    jobs = [(jpg, png, False) for jpg, png in _pair_by_id(jpgs, train_pngs)]
    jobs += [(jpg, png, True) for jpg, png in _pair_by_id(jpgs, bsd68_pngs)]

    def convert(job: tuple[Path, Path, bool]) -> str | None:
        jpg, png, is_bsd68 = job
        try:
            gray = load_gray(jpg)
        except GrayError as error:
            return str(error)
        if is_bsd68 and references is not None:
            reference = references.get(png.stem)
            if reference is None:
                return f"BSD68 id {png.stem}: not listed in {pixel_hashes_file}"
            problem = check_pixels(png.stem, gray, reference)
            if problem is not None:
                return f"BSD68 id {png.stem} (from {jpg}): {problem} in {pixel_hashes_file}"
        write_gray_png(png, gray)
        return None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        problems = [p for p in pool.map(convert, jobs) if p is not None]
    checked = len(bsd68_pngs) if references is not None else 0
    log.info(
        "converted %d images (%d BSD68 checked against %s), %d failed",
        len(jobs) - len(problems),
        checked,
        pixel_hashes_file,
        len(problems),
    )
    if problems:
        raise GrayError(f"{len(problems)} image(s) failed:\n  " + "\n  ".join(problems))
