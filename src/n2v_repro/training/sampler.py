"""Seeded training batches and the fixed validation set, framework-independent (numpy).

A batch is a pure function of (seed, step): both frameworks see identical batches in
identical order, and a resumed run continues exactly without saving any RNG state.
The method (`train.method`) decides what a batch holds: N2V and N2V2 mask their noisy
input (uniform or median replacement) and score the masked pixels; N2N and N2C feed the
noisy patch unmasked and score every pixel against the same crop of the second noise
realisation or of the clean image.
"""

from __future__ import annotations

import queue
import threading
import weakref
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from n2v_repro.config import METHOD_TARGETS, MaskingConfig
from n2v_repro.data.transforms import check_stats, dihedral, normalise
from n2v_repro.io.formats import (
    load_valid_tiles,
    read_train_index,
    read_train_pixels,
    read_train_stats,
)
from n2v_repro.training.masking import MASKING_KINDS, box_size, mask_patches

TRAIN_PIXELS = "train.npy"
TRAIN_INDEX = "train_index.csv"
TRAIN_STATS = "train_stats.json"
# N2C's and N2N's training targets, indexed like TRAIN_PIXELS (paths.PATCH_TARGET).
TRAIN_TARGET = "train_target.npy"

# Every random draw comes from a generator seeded with [seed, stream, step]; the middle entry
# keeps the streams independent. Masks have their own stream so that switching augmentation
# on or off does not change them; the validation tiles are masked once, with step 0.
_CROP_STREAM = 0  # image choice, crop position, augmentation of training step `step`
_MASK_STREAM = 1  # masking of training step `step`
_VALID_STREAM = 2


def _masking_arguments(masking: MaskingConfig, method: str = "n2v") -> dict[str, Any]:
    """Turn the `train.masking` settings into the keyword arguments of `mask_patches`."""
    if method not in METHOD_TARGETS:
        raise ValueError(f"unknown method {method!r}; expected one of {tuple(METHOD_TARGETS)}")
    if masking.kind not in MASKING_KINDS:
        raise ValueError(f"unknown masking kind {masking.kind!r}; expected one of {MASKING_KINDS}")
    if masking.radius < 1:
        raise ValueError(f"masking radius must be an integer >= 1, got {masking.radius!r}")
    box_size(masking.percentage)  # raises on an out-of-range percentage
    return {**asdict(masking), "replacement": "median" if method == "n2v2" else "uniform"}


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return int(seed)


@dataclass(frozen=True)
class TrainingData:
    """The noisy training images of one sigma, as written by the `patchify` rule.

    Attributes
    ----------
    pixels : (total,) float32, every image flattened row-major and concatenated (memory-mapped).
    ids : image ids, in index order.
    offsets, heights, widths : (n_images,) int64, where each image starts in `pixels`, its size.
    mean, std : statistics of all noisy training pixels (z-score normalisation).
    targets : N2C's / N2N's training targets, laid out like `pixels`; None for N2V.
    """

    pixels: np.ndarray
    ids: tuple[str, ...]
    offsets: np.ndarray
    heights: np.ndarray
    widths: np.ndarray
    mean: float
    std: float
    targets: np.ndarray | None = None

    @property
    def n_images(self) -> int:
        return len(self.ids)

    def image(self, index: int) -> np.ndarray:
        """(H, W) float32 view (no copy) of image number `index`."""
        start = int(self.offsets[index])
        height, width = int(self.heights[index]), int(self.widths[index])
        return self.pixels[start : start + height * width].reshape(height, width)


def load_training_data(patch_dir: Path, target: str = "noisy") -> TrainingData:
    """Read `train.npy` (memory-mapped), `train_index.csv` and `train_stats.json`.

    A `target` other than noisy (`TrainConfig.target`) also reads `train_target.npy`
    (memory-mapped).

    Raises FileNotFoundError naming a missing file and ValueError for a malformed one: wrong
    dtype or rank, an index entry reaching beyond the pixel array or overlapping another
    image, std <= 0.
    """
    patch_dir = Path(patch_dir)
    names = (TRAIN_PIXELS, TRAIN_INDEX, TRAIN_STATS, *([TRAIN_TARGET] if target != "noisy" else []))
    paths = {name: patch_dir / name for name in names}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"training data incomplete, missing: {', '.join(missing)}")

    pixels = read_train_pixels(paths[TRAIN_PIXELS])
    ids, offsets, heights, widths = read_train_index(paths[TRAIN_INDEX])
    ends = offsets + heights * widths
    beyond = np.flatnonzero(ends > pixels.size)
    if beyond.size:
        first = int(beyond[0])
        raise ValueError(
            f"{paths[TRAIN_INDEX]}: image {ids[first]!r} spans pixels {offsets[first]}.."
            f"{ends[first]} but {paths[TRAIN_PIXELS]} holds only {pixels.size}"
        )
    order = np.argsort(offsets, kind="stable")
    if np.any(offsets[order][1:] < ends[order][:-1]):
        raise ValueError(f"{paths[TRAIN_INDEX]}: image extents overlap")
    mean, std = read_train_stats(paths[TRAIN_STATS])
    targets = None
    if target != "noisy":
        targets = read_train_pixels(paths[TRAIN_TARGET])
        if targets.shape != pixels.shape:
            raise ValueError(
                f"{paths[TRAIN_TARGET]} holds {targets.size} pixels, {paths[TRAIN_PIXELS]} "
                f"{pixels.size}: they must be the same images"
            )
    return TrainingData(pixels, ids, offsets, heights, widths, mean, std, targets)


@dataclass(frozen=True)
class Batch:
    """One training batch; inputs, targets, mask are (B, 1, P, P) float32, C-contiguous.

    inputs: normalised patches with the masked pixels replaced; targets: normalised patches;
    mask: 1.0 at masked pixels, else 0.0. masked: (B, 1, P, P) bool, True at masked pixels,
    derived from `mask` when the batch is made (so a prefetching thread pays for it, not the
    training step).
    """

    inputs: np.ndarray
    targets: np.ndarray
    mask: np.ndarray
    masked: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "masked", np.asarray(self.mask) != 0)


class PatchSampler:
    """Training batches that depend only on (seed, step).

    Each patch: an image chosen uniformly among the training images (as the original port's
    fixed number of crops per image; for BSD400, whose 400 images all have 321 x 481 pixels,
    this is every pixel position with equal probability), a uniform random P x P crop inside
    it, then, if `augment`, one of the 8 flips/90-degree rotations chosen uniformly, then
    z-score normalisation with the training mean/std, then N2V masking
    (`n2v_repro.training.masking`).

    Parameters
    ----------
    data : the training images.
    patch_size : side P of the square patches; every image must be at least P x P.
    batch_size : patches per batch B.
    augment : apply one of the 8 flips/90-degree rotations, chosen uniformly, to each patch.
    masking : the `train.masking` settings (N2V, N2V2).
    seed : master seed (>= 0).
    method : `train.method`; n2n and n2c need `data.targets`.
    """

    def __init__(
        self,
        data: TrainingData,
        patch_size: int,
        batch_size: int,
        augment: bool,
        masking: MaskingConfig,
        seed: int,
        method: str = "n2v",
    ) -> None:
        for name, value in (("patch_size", patch_size), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        too_small = [
            f"{image_id} ({height}x{width})"
            for image_id, height, width in zip(data.ids, data.heights, data.widths, strict=True)
            if height < patch_size or width < patch_size
        ]
        if too_small:
            raise ValueError(
                f"{len(too_small)} training image(s) smaller than the {patch_size}x{patch_size} "
                f"patch: {', '.join(too_small[:5])}"
            )
        self.data = data
        self.patch_size = patch_size
        self.batch_size = batch_size
        self.augment = bool(augment)
        self.masking = _masking_arguments(masking, method)
        self.seed = _check_seed(seed)
        self.target = METHOD_TARGETS[method]
        if self.target != "noisy" and data.targets is None:
            raise ValueError(f"method {method} needs training targets ({TRAIN_TARGET})")

    def raw_patches(self, step: int, pixels: np.ndarray | None = None) -> np.ndarray:
        """(B, P, P) float32 un-normalised, unmasked (augmented) patches of training step `step`.

        `pixels` (default the noisy images) is an array laid out like them, e.g. the targets:
        the same crops and transforms are cut from it.
        """
        if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
            raise ValueError(f"step must be an integer >= 0, got {step!r}")
        rng = np.random.default_rng([self.seed, _CROP_STREAM, int(step)])
        size, count = self.patch_size, self.batch_size
        images = rng.integers(0, self.data.n_images, size=count)
        tops = rng.integers(0, self.data.heights[images] - size + 1)
        lefts = rng.integers(0, self.data.widths[images] - size + 1)
        transforms = rng.integers(0, 8, size=count) if self.augment else np.zeros(count, int)
        # A plain ndarray view of the memory map skips np.memmap's per-slice bookkeeping.
        pixels = np.asarray(self.data.pixels if pixels is None else pixels)
        starts = self.data.offsets[images]
        patches = np.empty((count, size, size), dtype=np.float32)
        for slot in range(count):
            height, width = self.data.heights[images[slot]], self.data.widths[images[slot]]
            image = pixels[starts[slot] : starts[slot] + height * width].reshape(height, width)
            crop = image[tops[slot] : tops[slot] + size, lefts[slot] : lefts[slot] + size]
            patches[slot] = dihedral(crop, int(transforms[slot]))
        return patches

    def batch(self, step: int) -> Batch:
        """Batch of training step `step` (>= 0): arrays (B, 1, P, P) float32, normalised."""
        patches = normalise(self.raw_patches(step), self.data.mean, self.data.std)
        if self.target != "noisy":
            assert self.data.targets is not None
            raw_targets = self.raw_patches(step, self.data.targets)
            targets = normalise(raw_targets, self.data.mean, self.data.std)
            return Batch(patches[:, None], targets[:, None], np.ones_like(targets)[:, None])
        rng = np.random.default_rng([self.seed, _MASK_STREAM, int(step)])
        inputs, targets, mask = mask_patches(patches, rng, **self.masking)
        return Batch(inputs[:, None], targets[:, None], mask[:, None])


class PrefetchingSampler:
    """The batches of a `PatchSampler`, made ahead by one background thread.

    `batch(step)` returns exactly ``sampler.batch(step)`` (the same arrays, bit for bit: a
    batch is a pure function of (seed, step)), but the next `depth` steps are already being
    made while the caller trains. Steps are expected in ascending order from `start_step`
    (a resumed run passes its first step); asking for any other step restarts the thread there.
    An error raised while making a batch is raised again by the `batch` call for that step.
    `stop_step` (exclusive), when given, is where the thread stops; later steps are made in
    the caller's thread.

    Use as a context manager, or call `close()`: it stops and joins the thread, also when the
    training loop raised. A sampler dropped without closing stops its thread when collected.
    """

    def __init__(
        self,
        sampler: PatchSampler,
        start_step: int = 0,
        depth: int = 3,
        stop_step: int | None = None,
    ) -> None:
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"prefetch depth must be an integer >= 1, got {depth!r}")
        self.sampler = sampler
        self.depth = depth
        self.stop_step = None if stop_step is None else _check_step(stop_step)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._queue: queue.Queue[tuple[int, Batch | BaseException]] = queue.Queue(depth)
        self._next_step = _check_step(start_step)
        self._closed = False
        self._start(self._next_step)

    def _start(self, step: int) -> None:
        self._stop = threading.Event()
        self._queue = queue.Queue(self.depth)
        self._next_step = step
        # The thread holds the sampler, not self: a forgotten PrefetchingSampler can be
        # collected, and its finaliser then stops the thread.
        self._thread = threading.Thread(
            target=_produce,
            args=(self.sampler, step, self.stop_step, self._stop, self._queue),
            name="PrefetchingSampler",
            daemon=True,
        )
        weakref.finalize(self, self._stop.set)
        self._thread.start()

    def batch(self, step: int) -> Batch:
        """Return the batch of training step `step`, as `PatchSampler.batch(step)` makes it."""
        step = _check_step(step)
        if self._closed:
            raise RuntimeError("PrefetchingSampler is closed")
        if self.stop_step is not None and step >= self.stop_step:
            return self.sampler.batch(step)
        if step != self._next_step or self._thread is None:
            self._halt()
            self._start(step)
        made_step, item = self._get()
        if made_step != step:  # one producer per queue makes this impossible; guards a rewrite
            raise RuntimeError(f"prefetched step {made_step}, expected {step}")
        if isinstance(item, BaseException):
            self._halt()  # that thread has ended; the next call starts a new one
            raise item
        self._next_step = step + 1
        return item

    def _get(self) -> tuple[int, Batch | BaseException]:
        assert self._thread is not None
        while True:
            try:
                return self._queue.get(timeout=1.0)
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise RuntimeError("the prefetching thread ended unexpectedly") from None

    def _halt(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None

    def close(self) -> None:
        """Stop and join the thread; safe to call repeatedly."""
        self._halt()
        self._closed = True

    @property
    def thread(self) -> threading.Thread | None:
        """The running producer thread, None when there is none."""
        return self._thread

    def __enter__(self) -> PrefetchingSampler:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _produce(
    sampler: PatchSampler,
    step: int,
    stop_step: int | None,
    stop: threading.Event,
    out: queue.Queue[tuple[int, Batch | BaseException]],
) -> None:
    """Put (step, batch) for step, step + 1, ... into `out` until `stop` or `stop_step`."""
    while not stop.is_set() and (stop_step is None or step < stop_step):
        item: Batch | BaseException
        try:
            item = sampler.batch(step)
        except BaseException as error:  # handed to the consumer, raised at its step
            item = error
        # A bounded wait, so that a stop is noticed while the queue is full.
        while not stop.is_set():
            try:
                out.put((step, item), timeout=0.05)
                break
            except queue.Full:
                continue
        if isinstance(item, BaseException):
            return
        step += 1


def _check_step(step: int) -> int:
    if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
        raise ValueError(f"step must be an integer >= 0, got {step!r}")
    return int(step)


@dataclass(frozen=True)
class ValidationSet:
    """Validation tiles, masked once.

    inputs, targets, mask : (N, 1, P, P) float32, normalised with the training statistics;
        the mask is drawn once from the seed, so it is the same on every call.
    noisy : (N, P, P) float32 raw noisy tiles; clean : (N, P, P) uint8 clean tiles;
    ids : (N,) source image id of each tile.
    """

    inputs: np.ndarray
    targets: np.ndarray
    mask: np.ndarray
    noisy: np.ndarray
    clean: np.ndarray
    ids: np.ndarray

    def __len__(self) -> int:
        return len(self.noisy)

    def spread(self, count: int | None) -> ValidationSet:
        """`count` tiles evenly spaced through the set (so every image has its share), or all."""
        if count is None or count >= len(self):
            return self
        if count < 1:
            raise ValueError(f"count must be None or >= 1, got {count}")
        keep = np.unique(np.linspace(0, len(self) - 1, count).round().astype(np.int64))
        return ValidationSet(
            *(np.ascontiguousarray(getattr(self, f.name)[keep]) for f in fields(self))
        )


def load_validation(
    valid_tiles_path: Path,
    mean: float,
    std: float,
    masking: MaskingConfig,
    seed: int,
    limit: int | None = None,
    method: str = "n2v",
) -> ValidationSet:
    """Load `valid_tiles.npz` (keys noisy, clean, ids) and mask it with a fixed generator.

    All tiles are masked (generator ``[seed, 2, 0]``) before `limit` keeps the first `limit`
    of them, so a tile's mask does not depend on `limit`. A `limit` larger than the number of
    tiles keeps them all. For N2C and N2N nothing is masked: the loss compares every pixel
    with the clean tile (n2c) or the tile's second noise realisation (n2n, key noisy2).
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be None or an integer >= 1, got {limit!r}")
    arguments = _masking_arguments(masking, method)
    seed = _check_seed(seed)
    mean, std = check_stats(mean, std)
    tiles = load_valid_tiles(valid_tiles_path)
    noisy, clean, ids = tiles["noisy"], tiles["clean"], tiles["ids"]
    target = METHOD_TARGETS[method]
    if target == "noisy":
        rng = np.random.default_rng([seed, _VALID_STREAM, 0])
        inputs, targets, mask = mask_patches(normalise(noisy, mean, std), rng, **arguments)
    else:
        if target not in tiles:
            raise ValueError(f"{valid_tiles_path}: method {method} needs the {target} tiles")
        inputs = normalise(noisy, mean, std)
        targets = normalise(tiles[target].astype(np.float32), mean, std)
        mask = np.ones_like(targets)
    keep = slice(0, limit)
    return ValidationSet(
        inputs=np.ascontiguousarray(inputs[keep, None]),
        targets=np.ascontiguousarray(targets[keep, None]),
        mask=np.ascontiguousarray(mask[keep, None]),
        noisy=np.ascontiguousarray(noisy[keep]),
        clean=np.ascontiguousarray(clean[keep]),
        ids=ids[keep].copy(),
    )
