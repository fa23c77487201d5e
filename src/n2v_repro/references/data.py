"""The pipeline's arrays as the references take them (runs in a reference's environment).

The training source of a recipe is whole images (`patchify`'s flat pixels and index); the
references receive them stacked, as they come, and sample their own patches from them. The
validation tiles and the noisy BSD68 images are the same arrays the pipeline's networks see.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from n2v_repro.errors import UserError
from n2v_repro.io.formats import (
    load_noisy_set,
    load_valid_tiles,
    read_split,
    read_train_index,
    read_train_pixels,
)


class ReferenceDataError(UserError, ValueError):
    """The recipe's data cannot be given to a reference as it is."""


def training_images(train_npy: str | Path, index_csv: str | Path, stride: int) -> np.ndarray:
    """Stack the training images (N, H, W) float32; one size, a multiple of `stride`."""
    pixels = read_train_pixels(train_npy)
    ids, offsets, heights, widths = read_train_index(index_csv)
    shapes = set(zip(heights.tolist(), widths.tolist(), strict=True))
    if len(shapes) != 1:
        raise ReferenceDataError(
            f"{index_csv}: the references train on images of one size (their samplers stack "
            f"them), found {len(shapes)} sizes; use a recipe with train_set: train400"
        )
    height, width = shapes.pop()
    if height % stride or width % stride:
        raise ReferenceDataError(
            f"{index_csv}: images of {height} x {width} are not a multiple of the U-Net's "
            f"stride {stride}, which juglab n2v requires of its training images"
        )
    images = np.empty((len(ids), height, width), dtype=np.float32)
    for position, offset in enumerate(offsets.tolist()):
        images[position] = pixels[offset : offset + height * width].reshape(height, width)
    return images


def validation_tiles(valid_npz: str | Path) -> np.ndarray:
    """Return the recipe's noisy validation tiles (N, P, P) float32."""
    return load_valid_tiles(valid_npz)["noisy"]


def noisy_test_images(noisy_npz: str | Path, split_csv: str | Path) -> Mapping[str, np.ndarray]:
    """Return the split's noisy BSD68 images in its order, float32 as the pipeline scores them."""
    noisy = load_noisy_set(noisy_npz)
    ids = list(read_split(split_csv))
    missing = [i for i in ids if i not in noisy]
    if missing:
        raise ReferenceDataError(f"{noisy_npz} has no noisy image for {missing}")
    return {i: noisy[i].astype(np.float32) for i in ids}
