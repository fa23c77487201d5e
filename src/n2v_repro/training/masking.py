"""Noise2Void blind-spot masking (pixel manipulation) in numpy, shared by both frameworks.

Krull, Buchholz, Jug, "Noise2Void - Learning Denoising from Single Noisy Images", CVPR 2019,
and its reference implementation juglab/n2v (`N2V_DataWrapper`, `pm_uniform_withCP`).

Two ways to choose the masked pixels of a patch:

- ``uniform_withCP`` (the paper): the patch is covered by a grid of square boxes of side
  ``round(sqrt(100 / percentage))`` anchored at (0, 0); one uniform random pixel is drawn in
  every box and the pixels that fall outside the patch are dropped. At 0.198 % the box is
  22 px, a 64x64 patch gets a 3x3 grid, 4 to 9 masked pixels, mean (2 + 20/22)^2 = 8.46.
- ``center`` (the original Noise2Void_jittor port): one pixel, the centre (H // 2, W // 2).

Each masked pixel then takes the value of a uniformly drawn pixel of the (2r+1)x(2r+1) window
around it, clipped to the patch, the centre included (so the value is sometimes unchanged);
N2V2 (Hoeck et al. 2022; CAREamics' `median_manipulate`) takes instead the median of that
window with the centre excluded (``replacement="median"``). All values are read from the
unmodified patch. A radius of at least max(H, W) - 1 makes the
clipped window the whole patch: ``center`` with such a radius is exactly the port's rule (the
centre replaced by a random pixel of the patch).
"""

from __future__ import annotations

import math

import numpy as np

MASKING_KINDS = ("uniform_withCP", "center")
REPLACEMENTS = ("uniform", "median")


def box_size(percentage: float) -> int:
    """Side of the stratification boxes: round(sqrt(100 / percentage)), at least 1 px."""
    if not (math.isfinite(percentage) and 0 < percentage <= 100):
        raise ValueError(f"masking percentage must be in (0, 100], got {percentage!r}")
    return max(1, round(math.sqrt(100.0 / percentage)))


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"patch shape must be two positive sizes (H, W), got {shape!r}")
    return int(shape[0]), int(shape[1])


def _uniform_withcp_batch(
    rng: np.random.Generator, batch: int, shape: tuple[int, int], percentage: float
) -> np.ndarray:
    """(K, 3) int64 rows (patch index, y, x) of the stratified points of `batch` patches."""
    height, width = _check_shape(shape)
    box = box_size(percentage)
    boxes_y, boxes_x = math.ceil(height / box), math.ceil(width / box)
    offsets = rng.integers(0, box, size=(batch, boxes_y, boxes_x, 2))
    patch_index, box_y, box_x = np.meshgrid(
        np.arange(batch), np.arange(boxes_y) * box, np.arange(boxes_x) * box, indexing="ij"
    )
    ys = box_y + offsets[..., 0]
    xs = box_x + offsets[..., 1]
    # Boxes of the last row/column overhang the patch; their points beyond it are dropped,
    # as in juglab/n2v, instead of being redrawn (this is why the count varies).
    inside = (ys < height) & (xs < width)
    return np.stack([patch_index[inside], ys[inside], xs[inside]], axis=1).astype(np.int64)


def center_coords(shape: tuple[int, int]) -> np.ndarray:
    """(1, 2) int64 array holding the patch centre (H // 2, W // 2): the original port's mask."""
    height, width = _check_shape(shape)
    return np.array([[height // 2, width // 2]], dtype=np.int64)


def mask_patches(
    patches: np.ndarray,
    rng: np.random.Generator,
    kind: str = "uniform_withCP",
    percentage: float = 0.198,
    radius: int = 2,
    replacement: str = "uniform",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply N2V blind-spot masking to a batch of patches.

    Parameters
    ----------
    patches : (B, H, W) real array; not modified.
    rng : numpy Generator for the masked positions and the replacement draws.
    kind : ``"uniform_withCP"`` (stratified, the paper) or ``"center"`` (one pixel, the port).
    percentage : percentage of masked pixels (``uniform_withCP`` only).
    radius : replacement window radius r; the window is (2r+1)x(2r+1), clipped to the patch,
        centre included, and one of its pixels is drawn uniformly.
    replacement : ``"uniform"`` (N2V: the drawn window pixel) or ``"median"`` (N2V2: the
        median of the clipped window without its centre; no draw).

    Returns
    -------
    inputs : (B, H, W) float32, the patches with every masked pixel replaced by the value of
        its drawn window pixel, read from the unmodified patch.
    targets : (B, H, W) float32, the unmodified patches.
    mask : (B, H, W) float32, 1.0 at masked pixels, 0.0 elsewhere.
    """
    if not isinstance(patches, np.ndarray) or patches.ndim != 3:
        raise ValueError(
            f"patches must be a (B, H, W) numpy array, got {getattr(patches, 'shape', patches)!r}"
        )
    if not np.issubdtype(patches.dtype, np.floating) and not np.issubdtype(
        patches.dtype, np.integer
    ):
        raise ValueError(f"patches must hold real numbers, got dtype {patches.dtype}")
    if isinstance(radius, bool) or not isinstance(radius, int | np.integer) or radius < 1:
        raise ValueError(f"masking radius must be an integer >= 1, got {radius!r}")
    batch, height, width = patches.shape
    if batch == 0 or height == 0 or width == 0:
        raise ValueError(f"patches must not be empty, got shape {patches.shape}")

    if kind == "uniform_withCP":
        coords = _uniform_withcp_batch(rng, batch, (height, width), percentage)
    elif kind == "center":
        centre = center_coords((height, width))
        coords = np.concatenate(
            [np.arange(batch, dtype=np.int64)[:, None], np.repeat(centre, batch, axis=0)], axis=1
        )
    else:
        raise ValueError(f"unknown masking kind {kind!r}; expected one of {MASKING_KINDS}")

    if replacement not in REPLACEMENTS:
        raise ValueError(f"unknown replacement {replacement!r}; expected one of {REPLACEMENTS}")

    targets = np.array(patches, dtype=np.float32, order="C", copy=True)
    inputs = targets.copy()
    mask = np.zeros_like(targets)
    index, ys, xs = coords[:, 0], coords[:, 1], coords[:, 2]
    if replacement == "median":
        inputs[index, ys, xs] = _window_medians(targets, index, ys, xs, radius)
    else:
        # Independent uniform y and x in the clipped window = uniform over the clipped
        # rectangle, the same distribution as juglab/n2v's draw inside its cropped sub-patch.
        src_y = rng.integers(np.maximum(ys - radius, 0), np.minimum(ys + radius, height - 1) + 1)
        src_x = rng.integers(np.maximum(xs - radius, 0), np.minimum(xs + radius, width - 1) + 1)
        inputs[index, ys, xs] = targets[index, src_y, src_x]
    mask[index, ys, xs] = 1.0
    return inputs, targets, mask


def _window_medians(
    patches: np.ndarray, index: np.ndarray, ys: np.ndarray, xs: np.ndarray, radius: int
) -> np.ndarray:
    """(K,) median of each point's (2r+1)^2 window, clipped to the patch, centre excluded."""
    _, height, width = patches.shape
    offsets = np.arange(-radius, radius + 1)
    rows = ys[:, None, None] + offsets[None, :, None]  # (K, W, 1)
    cols = xs[:, None, None] + offsets[None, None, :]  # (K, 1, W)
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    inside &= ~((offsets[:, None] == 0) & (offsets[None, :] == 0))
    values = patches[index[:, None, None], rows.clip(0, height - 1), cols.clip(0, width - 1)]
    # Points outside the patch (and the centre) become NaN, which nanmedian leaves out; a
    # patch of at least 2 pixels leaves every window one neighbour.
    values = np.where(inside, values, np.nan).reshape(len(index), -1)
    return np.nanmedian(values, axis=1).astype(np.float32)


def masked_mse(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """N2V loss: sum(mask * (pred - target)^2) / sum(mask) over the whole batch.

    Parameters
    ----------
    pred, target, mask : arrays of one shape (e.g. (B, 1, H, W)); mask holds 0/1 weights.

    Returns
    -------
    The mean squared error over the masked pixels, computed in float64.
    """
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    mask = np.asarray(mask, dtype=np.float64)
    if not pred.shape == target.shape == mask.shape:
        raise ValueError(
            f"pred, target and mask must have one shape, got {pred.shape}, {target.shape}, "
            f"{mask.shape}"
        )
    weight = float(mask.sum())
    if weight <= 0:
        raise ValueError("mask selects no pixel: the masked loss is undefined")
    return float((mask * (pred - target) ** 2).sum() / weight)
