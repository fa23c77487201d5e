"""Training source and validation tiles from the noisy images (the `patchify` rule).

Training reads random patches from the noisy training images (whole BSD400 images, or
DnCNN's Train400 crops of them), so they are stored flat in one memory-mappable float32 array
with an index, rather than as pre-cut patches. Validation uses fixed non-overlapping tiles of
the validation images of the recipe's scheme: held-out noisy training images (the paper), or
the validation half of BSD68 (the port).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from n2v_repro.config import ValidationConfig
from n2v_repro.data.manifest import id_sort_key
from n2v_repro.data.split import ids_in
from n2v_repro.data.train400 import Crop, check_crops, crops_of, read_crops
from n2v_repro.errors import UserError
from n2v_repro.io.formats import (
    load_noisy_set,
    read_gray_png,
    read_split,
    save_valid_tiles,
    write_train_index,
    write_train_pixels,
    write_train_stats,
)

log = logging.getLogger(__name__)


class PatchError(UserError, ValueError):
    """Inputs of the patch stage are missing or inconsistent."""


def tile_grid(height: int, width: int, size: int) -> list[tuple[int, int]]:
    """Top-left corners (row, col) of the non-overlapping size x size tiles, row-major.

    Partial tiles at the bottom and right edges are dropped.
    """
    return [
        (row, col)
        for row in range(0, height - size + 1, size)
        for col in range(0, width - size + 1, size)
    ]


def tile_image(image: np.ndarray, size: int) -> np.ndarray:
    """Cut an (H, W) image into its (N, size, size) tiles in `tile_grid` order."""
    corners = tile_grid(*image.shape, size)
    if not corners:
        return np.empty((0, size, size), dtype=image.dtype)
    return np.stack([image[r : r + size, c : c + size] for r, c in corners])


def valid_tiles(
    noisy: Mapping[str, np.ndarray], clean: Mapping[str, np.ndarray], ids: list[str], size: int
) -> dict[str, np.ndarray]:
    """Aligned noisy/clean tiles of `ids`, image by image in the given order.

    Returns
    -------
    {'noisy': (N, P, P) float32, 'clean': (N, P, P) uint8, 'ids': (N,) str}
    """
    noisy_tiles, clean_tiles, tile_ids = [], [], []
    for image_id in ids:
        if noisy[image_id].shape != clean[image_id].shape:
            raise PatchError(
                f"image {image_id}: noisy shape {noisy[image_id].shape} differs from clean "
                f"shape {clean[image_id].shape}"
            )
        noisy_tiles.append(tile_image(noisy[image_id].astype(np.float32), size))
        clean_tiles.append(tile_image(clean[image_id].astype(np.uint8), size))
        tile_ids += [image_id] * len(noisy_tiles[-1])
    if not tile_ids:
        raise PatchError(f"no {size}x{size} validation tile fits in any of the images {ids}")
    return {
        "noisy": np.concatenate(noisy_tiles),
        "clean": np.concatenate(clean_tiles),
        "ids": np.asarray(tile_ids),
    }


def write_train_source(
    noisy: Mapping[str, np.ndarray], train_path: str | Path, index_path: str | Path
) -> list[tuple[str, int, int, int]]:
    """Concatenate the flattened images (id order) into one float32 .npy, plus its index.

    The index rows are (id, offset, height, width); `offset` counts float32 elements from
    the start of the flat array, so image i is `flat[offset : offset + height * width]`
    reshaped to (height, width).
    """
    ids = sorted(noisy, key=id_sort_key)
    rows, offset = [], 0
    for image_id in ids:
        height, width = noisy[image_id].shape
        rows.append((image_id, offset, height, width))
        offset += height * width
    write_train_pixels(train_path, [noisy[image_id] for image_id in ids])
    write_train_index(index_path, rows)
    return rows


def pixel_stats(images: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Mean and (population) standard deviation over every pixel, accumulated in float64."""
    count = sum(a.size for a in images.values())
    if count == 0:
        raise PatchError("no training pixels: the training set is empty")
    mean = sum(float(a.sum(dtype=np.float64)) for a in images.values()) / count
    # Two passes: the sum of squared deviations does not cancel the way E[x^2]-E[x]^2 can.
    squares = sum(float(np.square(a.astype(np.float64) - mean).sum()) for a in images.values())
    return {"mean": mean, "std": (squares / count) ** 0.5}


def _training_images(
    noisy: Mapping[str, np.ndarray],
    train_set: str,
    crops_file: str | Path | None,
    clean_pngs: Mapping[str, Path],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[Crop] | None]:
    """Return the noisy training images in training-set order, clean crops and the crops.

    The crops (train400; None for bsd400) cut another noisy set the same way (`_cut_like`).

    bsd400: the whole images in id order. train400: DnCNN's 180 x 180 crops, in the crop
    table's order, cut from the noisy whole images (the noise is independent per pixel, so a
    crop of the noisy image is a noisy crop) after the clean crops were checked against the
    table's pixel hashes.
    """
    if train_set == "bsd400":
        return _cut_like(noisy, None), {}, None
    if train_set != "train400":
        raise PatchError(f"unknown train_set {train_set!r}; expected bsd400 or train400")
    if crops_file is None:
        raise PatchError("train_set train400 needs the crop table (config key data.train400_crops)")
    crops = crops_of(read_crops(crops_file), noisy)
    missing = [c.image_id for c in crops if c.image_id not in clean_pngs]
    if missing:
        raise PatchError(f"no clean training PNG for the Train400 images {missing[:10]}")
    whole = {c.image_id: read_gray_png(clean_pngs[c.image_id]) for c in crops}
    check_crops(crops, whole)
    clean = {c.image_id: np.ascontiguousarray(c.cut(whole[c.image_id])) for c in crops}
    return _cut_like(noisy, crops), clean, crops


def _cut_like(
    noisy: Mapping[str, np.ndarray], crops: Sequence[Crop] | None
) -> dict[str, np.ndarray]:
    """Return the training images of a noisy set: whole in id order, or `crops` cut from it."""
    if crops is None:
        return {i: noisy[i] for i in sorted(noisy, key=id_sort_key)}
    return {c.image_id: np.ascontiguousarray(c.cut(noisy[c.image_id])) for c in crops}


def _clean_images(
    ids: Sequence[str],
    clean_crops: Mapping[str, np.ndarray],
    clean_pngs: Mapping[str, Path],
    what: str,
    shown: int | None = None,
) -> dict[str, np.ndarray]:
    """Return the clean version of each training image: its Train400 crop, else its PNG.

    Raises PatchError naming the images without one (the first `shown` of them).
    """
    missing = [i for i in ids if i not in clean_crops and i not in clean_pngs]
    if missing:
        raise PatchError(f"no clean PNG for the {what} {missing[:shown]}")
    return {i: clean_crops[i] if i in clean_crops else read_gray_png(clean_pngs[i]) for i in ids}


def _write_targets(
    path: str | Path, targets: Mapping[str, np.ndarray], train_ids: Sequence[str]
) -> None:
    """Write the training targets flat, in the training source's order (sorted by id).

    One index then serves both arrays (`write_train_source`).
    """
    order = sorted(train_ids, key=id_sort_key)
    write_train_pixels(path, [targets[i].astype(np.float32) for i in order])


def patchify(
    *,
    train_npz: str | Path,
    patch_size: int,
    outputs: Mapping[str, str | Path],
    validation: ValidationConfig,
    train_set: str = "bsd400",
    crops_file: str | Path | None = None,
    clean_train_pngs: Sequence[str | Path] = (),
    bsd68_npz: str | Path | None = None,
    split_csv: str | Path | None = None,
    clean_bsd68_pngs: Sequence[str | Path] = (),
    target: str = "noisy",
    train2_npz: str | Path | None = None,
) -> None:
    """Write the four patch files (keys of `outputs`: train, index, stats, valid).

    A method that does not learn from its input alone also gets its training targets (key
    target).

    Parameters
    ----------
    train_npz : noisy training (BSD400) images by id (from `add_noise`).
    patch_size : tile side P in pixels (config data.patch_size).
    validation : the recipe's validation settings. `heldout_train` holds the last
        `heldout_images` training images (training-set order) out of training and tiles them,
        noisy and clean, for validation; nothing of BSD68 is read. `bsd68_split` tiles the
        'valid' ids of `split_csv` from `bsd68_npz` and `clean_bsd68_pngs`.
    train_set : bsd400 (whole images) or train400 (DnCNN's crops, `crops_file`).
    clean_train_pngs : clean training PNGs `<folder>/<id>.png`: the held-out tiles' references
        and the Train400 pixel check; unused for bsd400 with bsd68_split.
    target : the method's training target (`TrainConfig.target`). noisy (N2V, N2V2): the
        input itself, nothing more is written. clean (N2C): the clean training images, flat
        like the noisy ones (outputs["target"]). noisy2 (N2N): the second noise realisation
        of `train2_npz`, flat, and its held-out tiles as valid_tiles' noisy2.
    """
    missing = {"train", "index", "stats", "valid"} - set(outputs)
    if target != "noisy":
        missing |= {"target"} - set(outputs)
    if missing:
        raise PatchError(f"outputs lack the keys {sorted(missing)}")
    if target not in ("noisy", "clean", "noisy2"):
        raise PatchError(f"unknown training target {target!r}; expected noisy, clean or noisy2")
    if target != "noisy" and validation.scheme != "heldout_train":
        raise PatchError(f"training target {target} validates on held-out training images only")
    if target == "noisy2" and train2_npz is None:
        raise PatchError("training target noisy2 needs the second noisy training set")
    clean_train = {Path(p).stem: Path(p) for p in clean_train_pngs}
    images, clean_crops, crops = _training_images(
        load_noisy_set(train_npz), train_set, crops_file, clean_train
    )
    order = list(images)
    if validation.scheme == "heldout_train":
        held_out = validation.heldout_images
        if not 1 <= held_out < len(order):
            raise PatchError(
                f"config key 'validation.heldout_images': {held_out} must leave at least one of "
                f"the {len(order)} training images for training"
            )
        valid_ids, train_ids = order[-held_out:], order[:-held_out]
        clean = _clean_images(valid_ids, clean_crops, clean_train, "held-out training images")
        tiles = valid_tiles(images, clean, valid_ids, patch_size)
        source = "held-out noisy training images"
    elif validation.scheme == "bsd68_split":
        if bsd68_npz is None or split_csv is None:
            raise PatchError(
                "validation scheme bsd68_split needs the noisy BSD68 set and the split"
            )
        train_ids = order
        valid_ids = ids_in(read_split(split_csv), "valid")
        noisy68 = load_noisy_set(bsd68_npz)
        clean_paths = {Path(p).stem: p for p in clean_bsd68_pngs}
        for image_id in valid_ids:
            if image_id not in noisy68:
                raise PatchError(
                    f"{bsd68_npz}: validation id {image_id} (from {split_csv}) is missing"
                )
            if image_id not in clean_paths:
                raise PatchError(f"no clean PNG for validation id {image_id} (from {split_csv})")
        clean = {i: read_gray_png(clean_paths[i]) for i in valid_ids}
        tiles = valid_tiles(noisy68, clean, valid_ids, patch_size)
        source = "BSD68 validation images"
    else:
        raise PatchError(f"unknown validation scheme {validation.scheme!r}")

    if target == "noisy2":
        # Cut like the first set: the crops were checked once, above.
        second = _cut_like(load_noisy_set(train2_npz), crops)
        tiles["noisy2"] = valid_tiles(second, clean, valid_ids, patch_size)["noisy"]
        _write_targets(outputs["target"], second, train_ids)
    elif target == "clean":
        clean_images = _clean_images(train_ids, clean_crops, clean_train, "training images", 10)
        _write_targets(outputs["target"], clean_images, train_ids)
    train = {i: images[i] for i in train_ids}
    rows = write_train_source(train, outputs["train"], outputs["index"])
    stats = pixel_stats(train)
    n_pixels = sum(height * width for _, _, height, width in rows)
    write_train_stats(
        outputs["stats"],
        {
            **stats,
            "n_images": len(rows),
            "n_pixels": n_pixels,
            "train_set": train_set,
            "validation_scheme": validation.scheme,
            "validation_ids": list(valid_ids),
        },
    )
    save_valid_tiles(outputs["valid"], tiles)
    log.info(
        "train (%s): %d images, mean %.4f std %.4f; valid: %d tiles of %dx%d from %d %s",
        train_set,
        len(rows),
        stats["mean"],
        stats["std"],
        len(tiles["ids"]),
        patch_size,
        patch_size,
        len(valid_ids),
        source,
    )
