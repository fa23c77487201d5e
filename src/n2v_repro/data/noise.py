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


def noise_rng(seed: int, sigma: int, image_id: str, realisation: int = 0) -> np.random.Generator:
    """Return the generator of one noise realisation.

    Realisation 0 is the one every method trains on and BSD68 is scored on; 1 is
    Noise2Noise's independent second copy of a training image.
    """
    entropy = [seed, sigma, id_stream(image_id)]
    return np.random.default_rng(entropy + [realisation] if realisation else entropy)


def add_gaussian_noise(
    clean: np.ndarray, sigma: int, seed: int, image_id: str, realisation: int = 0
) -> np.ndarray:
    """Return clean + N(0, sigma^2) as float32, unclipped and unrounded.

    Parameters
    ----------
    clean : (H, W) uint8 image.
    realisation : which independent realisation (`noise_rng`).

    Returns
    -------
    (H, W) float32 noisy image.
    """
    if sigma <= 0:
        raise NoiseError(f"config key 'sigmas': sigma must be positive, got {sigma}")
    if isinstance(realisation, bool) or realisation not in (0, 1):
        raise NoiseError(f"noise realisation must be 0 or 1, got {realisation!r}")
    noise = noise_rng(seed, sigma, image_id, realisation).standard_normal(clean.shape)
    return (clean.astype(np.float64) + sigma * noise).astype(np.float32)


def noisy_set(
    pngs: Sequence[str | Path], sigma: int, seed: int, realisation: int = 0
) -> dict[str, np.ndarray]:
    """Noisy float32 images by id (the PNG's stem), in id order."""
    by_id = {Path(p).stem: Path(p) for p in pngs}
    if len(by_id) != len(pngs):
        raise NoiseError(f"two input PNGs share an id among {len(pngs)} files")
    return {
        image_id: add_gaussian_noise(
            read_gray_png(by_id[image_id]), sigma, seed, image_id, realisation
        )
        for image_id in sorted(by_id, key=id_sort_key)
    }


def write_noisy_sets(
    datasets: dict[str, tuple[Sequence[str | Path], str | Path]],
    sigma: int,
    seed: int,
    realisation: int = 0,
) -> None:
    """For each dataset name -> (clean PNGs, output npz), write one noisy array per id.

    The npz keys are the image ids; each file is written atomically.
    """
    for name, (pngs, output) in datasets.items():
        noisy = noisy_set(pngs, sigma, seed, realisation)
        save_noisy_set(output, noisy)
        pixels = sum(a.size for a in noisy.values())
        log.info(
            "%s: %d images, %d pixels, sigma %d, realisation %d -> %s",
            name, len(noisy), pixels, sigma, realisation, output,
        )  # fmt: skip
