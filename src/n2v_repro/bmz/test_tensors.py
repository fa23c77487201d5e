"""The test tensors of a bioimage.io package: a noisy training image and the framework's output.

Runs in the training framework's environment (the `bmz_test_tensors_*` rules), so that the
expected output of a Jittor-trained package is Jittor's own prediction: `bioimageio test`
then runs the package's PyTorch weights on the same input and compares, an independent
check of the two frameworks' parity. Nothing of bioimage.io is imported here.

The input is never a BSD68 image (the test set): a recipe that validates on held-out training
images (`heldout_train`) gives one of its held-out validation tiles, the one with the most
texture (largest clean-pixel variance); a recipe that validates on a BSD68 split holds no
training image out, so it gives the centre of its last training image, cut from the
training source itself (train.npy). Both are `data.patch_size` square, a multiple of every
arch's stride, as the networks were trained.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from n2v_repro.errors import UserError
from n2v_repro.io.atomic import save_npz
from n2v_repro.io.formats import (
    load_npz,
    load_valid_tiles,
    load_weights,
    read_train_index,
    read_train_pixels,
    read_train_stats,
)
from n2v_repro.models.spec import ARCH_STRIDE

HELDOUT = "heldout_train"
BSD68_SPLIT = "bsd68_split"
INPUT_KEY = "input"
# The package's test tensors are computed on the CPU in strict float32: the arithmetic that
# `bioimageio test` uses on a machine without a GPU (CI), whatever device trained the model.
TEST_DEVICE = "cpu"
TEST_PRECISION = "fp32"


class BmzTensorError(UserError, ValueError):
    """The patch folder cannot give a test image (the message names the file)."""


def output_key(weights: str) -> str:
    return f"output_{weights}"


def heldout_tile(valid_npz: str | Path) -> tuple[np.ndarray, dict[str, str]]:
    """Return the held-out validation tile with the largest clean-pixel variance, noisy, float32."""
    tiles = load_valid_tiles(valid_npz)
    spread = tiles["clean"].reshape(len(tiles["clean"]), -1).astype(np.float64).var(axis=1)
    index = int(np.argmax(spread))
    origin = {
        "kind": "held-out noisy training image (validation tile)",
        "image_id": str(tiles["ids"][index]),
        "tile": str(index),
        "file": str(valid_npz),
    }
    return np.ascontiguousarray(tiles["noisy"][index], dtype=np.float32), origin


def training_crop(
    train_npy: str | Path, index_csv: str | Path, size: int
) -> tuple[np.ndarray, dict[str, str]]:
    """Return the centre `size` x `size` of the last training image of the training source."""
    ids, offsets, heights, widths = read_train_index(index_csv)
    if not ids:
        raise BmzTensorError(f"{index_csv}: the training source has no image")
    pixels = read_train_pixels(train_npy)
    height, width, offset = int(heights[-1]), int(widths[-1]), int(offsets[-1])
    if height < size or width < size:
        raise BmzTensorError(
            f"{index_csv}: training image {ids[-1]} ({height}x{width}) is smaller than the "
            f"{size}x{size} test image (config key data.patch_size)"
        )
    image = np.asarray(pixels[offset : offset + height * width]).reshape(height, width)
    top, left = (height - size) // 2, (width - size) // 2
    origin = {
        "kind": "noisy training image (centre crop; the recipe validates on BSD68, so no "
        "training image is held out)",
        "image_id": str(ids[-1]),
        "crop": f"rows {top}:{top + size}, columns {left}:{left + size}",
        "file": str(train_npy),
    }
    crop = image[top : top + size, left : left + size]
    return np.ascontiguousarray(crop, dtype=np.float32), origin


def sample_image(
    validation: str,
    *,
    valid_npz: str | Path,
    train_npy: str | Path,
    index_csv: str | Path,
    size: int,
) -> tuple[np.ndarray, dict[str, str]]:
    """Return the (H, W) noisy test image of a recipe with validation scheme `validation`."""
    if validation == HELDOUT:
        return heldout_tile(valid_npz)
    if validation == BSD68_SPLIT:
        return training_crop(train_npy, index_csv, size)
    raise ValueError(
        f"unknown validation scheme {validation!r}; expected {HELDOUT} or {BSD68_SPLIT}"
    )


def write_test_tensors(
    path: str | Path,
    *,
    framework: str,
    arch: str,
    validation: str,
    weight_files: Mapping[str, str | Path],
    stats_json: str | Path,
    valid_npz: str | Path,
    train_npy: str | Path,
    index_csv: str | Path,
    size: int,
    threads: int | None = None,
    backend: Any = None,
) -> dict[str, Any]:
    """Write the test input (1, 1, H, W) and each weights' prediction in `framework` to an npz.

    The prediction is the pipeline's own (evaluation.predict.predict_image): z-score with the
    training statistics, the network, back to grey levels, unclipped. Returns the origin of
    the input (also stored in the npz as `origin_<key>` strings).
    """
    from n2v_repro.evaluation.predict import predict_image

    image, origin = sample_image(
        validation, valid_npz=valid_npz, train_npy=train_npy, index_csv=index_csv, size=size
    )
    stride = ARCH_STRIDE[arch]
    if image.shape[0] % stride or image.shape[1] % stride:
        raise BmzTensorError(
            f"the {image.shape[0]}x{image.shape[1]} test image is not a multiple of {arch}'s "
            f"stride {stride} (config key data.patch_size)"
        )
    mean, std = read_train_stats(stats_json)
    if backend is None:
        from n2v_repro.backends.registry import make_backend

        backend = make_backend(framework, arch, TEST_DEVICE, threads, TEST_PRECISION)
    arrays: dict[str, np.ndarray] = {INPUT_KEY: image[None, None]}
    for name, weights_path in weight_files.items():
        backend.load_weights(load_weights(weights_path))
        prediction = predict_image(backend, image, mean, std)
        arrays[output_key(name)] = np.ascontiguousarray(prediction[None, None], dtype=np.float32)
    origin = {**origin, "framework": framework, "device": TEST_DEVICE}
    arrays |= {f"origin_{key}": np.asarray(value) for key, value in origin.items()}
    save_npz(path, arrays)
    return origin


def read_test_tensors(
    path: str | Path, weights: str
) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """Read the input, the output of `weights` and the origin strings of `write_test_tensors`."""
    arrays = load_npz(path)
    key = output_key(weights)
    if INPUT_KEY not in arrays or key not in arrays:
        raise BmzTensorError(f"{path}: needs the arrays {INPUT_KEY!r} and {key!r}")
    origin = {
        name.removeprefix("origin_"): str(value)
        for name, value in arrays.items()
        if name.startswith("origin_")
    }
    return arrays[INPUT_KEY].astype(np.float32), arrays[key].astype(np.float32), origin
