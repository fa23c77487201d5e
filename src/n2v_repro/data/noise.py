"""One fixed Gaussian noise realisation per (seed, sigma, image).

Noise2Void learns from single noisy images, so every image gets exactly one noisy version,
stored as float32 and neither clipped nor rounded, as in the paper's recipe (docs/protocol.md);
clipping is known to cost about 0.15 dB.
The random stream of an image depends only on (seed, sigma, image id): adding, removing or
reordering other images does not change it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from n2v_repro.data.manifest import id_sort_key
from n2v_repro.errors import UserError
from n2v_repro.io.formats import read_gray_png, save_noisy_set

log = logging.getLogger(__name__)


class NoiseError(UserError, ValueError):
    """Bad noise parameters or input images."""


def id_stream(image_id: str) -> int:
    """Hash an id to a stable 64-bit integer (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(image_id.encode("utf-8")).digest()[:8], "little")


def noise_rng(seed: int, sigma: int, image_id: str) -> np.random.Generator:
    return np.random.default_rng([seed, sigma, id_stream(image_id)])


def add_gaussian_noise(clean: np.ndarray, sigma: int, seed: int, image_id: str) -> np.ndarray:
    """Return clean + N(0, sigma^2) as float32, unclipped and unrounded.

    Parameters
    ----------
    clean : (H, W) uint8 image.

    Returns
    -------
    (H, W) float32 noisy image.
    """
    if sigma <= 0:
        raise NoiseError(f"config key 'sigmas': sigma must be positive, got {sigma}")
    noise = noise_rng(seed, sigma, image_id).standard_normal(clean.shape)
    return (clean.astype(np.float64) + sigma * noise).astype(np.float32)


def noisy_set(pngs: Sequence[str | Path], sigma: int, seed: int) -> dict[str, np.ndarray]:
    """Noisy float32 images by id (the PNG's stem), in id order."""
    by_id = {Path(p).stem: Path(p) for p in pngs}
    if len(by_id) != len(pngs):
        raise NoiseError(f"two input PNGs share an id among {len(pngs)} files")
    return {
        image_id: add_gaussian_noise(read_gray_png(by_id[image_id]), sigma, seed, image_id)
        for image_id in sorted(by_id, key=id_sort_key)
    }


def write_noisy_sets(
    datasets: dict[str, tuple[Sequence[str | Path], str | Path]], sigma: int, seed: int
) -> None:
    """For each dataset name -> (clean PNGs, output npz), write one noisy array per id.

    The npz keys are the image ids; each file is written atomically.
    """
    for name, (pngs, output) in datasets.items():
        noisy = noisy_set(pngs, sigma, seed)
        save_noisy_set(output, noisy)
        pixels = sum(a.size for a in noisy.values())
        log.info(
            "%s: %d images, %d pixels, sigma %d -> %s", name, len(noisy), pixels, sigma, output
        )
