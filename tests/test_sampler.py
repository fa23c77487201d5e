"""Seeded training batches, the fixed validation set and their file formats."""

from __future__ import annotations

import dataclasses
import gc
import threading
from pathlib import Path

import numpy as np
import pytest

from n2v_repro.config import MaskingConfig
from n2v_repro.data.patches import write_train_source
from n2v_repro.data.transforms import denormalise, normalise
from n2v_repro.io.formats import write_train_stats
from n2v_repro.training.sampler import (
    Batch,
    PatchSampler,
    PrefetchingSampler,
    TrainingData,
    ValidationSet,
    load_training_data,
    load_validation,
)

MASKING = MaskingConfig(kind="uniform_withCP", percentage=0.198, radius=2)


def write_training_data(
    folder: Path,
    images: list[np.ndarray],
    mean: float = 100.0,
    std: float = 50.0,
) -> Path:
    """train.npy, train_index.csv and train_stats.json, by the writers of the `patchify` rule."""
    folder.mkdir(parents=True, exist_ok=True)
    named = {f"img{number:03d}": image for number, image in enumerate(images)}
    write_train_source(named, folder / "train.npy", folder / "train_index.csv")
    write_train_stats(folder / "train_stats.json", {"mean": mean, "std": std})
    return folder


def random_images(shapes: list[tuple[int, int]], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(100, 50, size=shape).astype(np.float32) for shape in shapes]


def make_sampler(
    folder: Path,
    images: list[np.ndarray],
    patch_size: int = 16,
    batch_size: int = 8,
    augment: bool = True,
    seed: int = 123,
) -> PatchSampler:
    data = load_training_data(write_training_data(folder, images))
    return PatchSampler(data, patch_size, batch_size, augment, MASKING, seed)


def dihedral_group(image: np.ndarray) -> list[np.ndarray]:
    """The 8 flips/rotations of a square image, computed independently of the sampler."""
    return [np.rot90(base, k) for base in (image, image.T) for k in range(4)]


# --- training data files ------------------------------------------------------------------


def test_load_training_data_round_trip(tmp_path: Path) -> None:
    images = random_images([(20, 30), (25, 18), (16, 16)])
    data = load_training_data(write_training_data(tmp_path, images, mean=3.5, std=2.0))
    assert isinstance(data, TrainingData)
    assert data.ids == ("img000", "img001", "img002")
    assert data.n_images == 3 and (data.mean, data.std) == (3.5, 2.0)
    assert isinstance(data.pixels, np.memmap)
    for number, image in enumerate(images):
        np.testing.assert_array_equal(data.image(number), image)


@pytest.mark.parametrize("name", ["train.npy", "train_index.csv", "train_stats.json"])
def test_missing_file_is_named(tmp_path: Path, name: str) -> None:
    write_training_data(tmp_path, random_images([(16, 16)]))
    (tmp_path / name).unlink()
    with pytest.raises(FileNotFoundError, match=name):
        load_training_data(tmp_path)


@pytest.mark.parametrize(
    ("index_text", "message"),
    [
        ("id,offset,h,w\na,0,16,16\n", "header"),
        ("id,offset,height,width\na,0,sixteen,16\n", "integers"),
        ("id,offset,height,width\na,0,0,16\n", "positive"),
        ("id,offset,height,width\n", "no image"),
        ("id,offset,height,width\na,0,8,16\na,128,8,16\n", "unique"),
        ("id,offset,height,width\na,0,16,16\nb,256,16,17\n", "'b'.*holds only 512"),
        ("id,offset,height,width\na,0,16,16\nb,200,16,16\n", "overlap"),
    ],
)
def test_malformed_index_raises(tmp_path: Path, index_text: str, message: str) -> None:
    write_training_data(tmp_path, random_images([(16, 16), (16, 16)]))
    (tmp_path / "train_index.csv").write_text(index_text)
    with pytest.raises(ValueError, match=message):
        load_training_data(tmp_path)


@pytest.mark.parametrize("array", [np.zeros(256, np.float64), np.zeros((16, 16), np.float32)])
def test_bad_pixel_array_raises(tmp_path: Path, array: np.ndarray) -> None:
    write_training_data(tmp_path, random_images([(16, 16)]))
    np.save(tmp_path / "train.npy", array)
    with pytest.raises(ValueError, match="1-D float32"):
        load_training_data(tmp_path)


# --- training batches ---------------------------------------------------------------------


def test_batch_shapes_dtypes_and_normalisation(tmp_path: Path) -> None:
    images = random_images([(40, 50), (64, 48)])
    sampler = make_sampler(tmp_path, images, patch_size=32, batch_size=6, augment=False)
    batch = sampler.batch(0)
    assert isinstance(batch, Batch)
    for array in (batch.inputs, batch.targets, batch.mask):
        assert array.shape == (6, 1, 32, 32) and array.dtype == np.float32
        assert array.flags.c_contiguous
    assert set(np.unique(batch.mask)) == {0.0, 1.0} and batch.masked.dtype == bool
    np.testing.assert_array_equal(batch.masked, batch.mask == 1.0)
    assert np.all(batch.mask.sum(axis=(1, 2, 3)) >= 1)
    unmasked = batch.mask == 0
    np.testing.assert_array_equal(batch.inputs[unmasked], batch.targets[unmasked])
    # Without augmentation every target is a normalised crop of one of the images.
    raw = denormalise(batch.targets[:, 0], 100.0, 50.0)
    for patch in raw:
        found = any(
            np.allclose(image[y : y + 32, x : x + 32], patch, atol=1e-3)
            for image in images
            for y in range(image.shape[0] - 31)
            for x in range(image.shape[1] - 31)
        )
        assert found


def test_same_seed_and_step_give_identical_batches(tmp_path: Path) -> None:
    images = random_images([(40, 50), (64, 48), (33, 70)])
    first = make_sampler(tmp_path / "a", images)
    second = make_sampler(tmp_path / "b", images)
    later = [second.batch(step) for step in range(5)]  # another call order, another instance
    for step in (4, 0, 3):
        a, b = first.batch(step), later[step]
        for name in ("inputs", "targets", "mask"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_different_steps_and_seeds_differ(tmp_path: Path) -> None:
    images = random_images([(40, 50), (64, 48)])
    sampler = make_sampler(tmp_path / "a", images)
    other_seed = make_sampler(tmp_path / "b", images, seed=124)
    assert not np.array_equal(sampler.batch(0).targets, sampler.batch(1).targets)
    assert not np.array_equal(sampler.batch(0).mask, sampler.batch(1).mask)
    assert not np.array_equal(sampler.batch(0).targets, other_seed.batch(0).targets)


def test_augmentation_covers_all_eight_transforms(tmp_path: Path) -> None:
    image = np.arange(16 * 16, dtype=np.float32).reshape(16, 16)
    sampler = make_sampler(tmp_path, [image], patch_size=16, batch_size=200)
    group = dihedral_group(image)
    assert len({g.tobytes() for g in group}) == 8
    seen = []
    for patch in sampler.raw_patches(0):
        matches = [number for number, g in enumerate(group) if np.array_equal(g, patch)]
        assert len(matches) == 1
        seen.append(matches[0])
    counts = np.bincount(seen, minlength=8)
    assert counts.size == 8 and np.all(counts > 10)


def test_no_augmentation_keeps_orientation(tmp_path: Path) -> None:
    image = np.arange(16 * 16, dtype=np.float32).reshape(16, 16)
    sampler = make_sampler(tmp_path, [image], patch_size=16, batch_size=20, augment=False)
    assert all(np.array_equal(patch, image) for patch in sampler.raw_patches(3))


def test_crops_and_images_drawn_uniformly(tmp_path: Path) -> None:
    # Image k holds 1000 * k + linear position, so a patch's corner value says where it came from.
    images = [np.arange(6 * 8, dtype=np.float32).reshape(6, 8) + 1000 * k for k in range(2)]
    sampler = make_sampler(tmp_path, images, patch_size=4, batch_size=50, augment=False)
    corners = np.concatenate([sampler.raw_patches(step)[:, 0, 0] for step in range(40)])
    image_of = (corners // 1000).astype(int)
    position = (corners % 1000).astype(int)
    assert abs(image_of.mean() - 0.5) < 0.05
    # 3 x 5 valid crop corners per image, each about equally likely.
    valid = {y * 8 + x for y in range(3) for x in range(5)}
    assert set(position) == valid
    counts = np.bincount(position, minlength=48)[sorted(valid)]
    assert np.all(np.abs(counts - len(corners) / 15) < 0.25 * len(corners) / 15)


def test_paper_masking_counts_in_batches(tmp_path: Path) -> None:
    sampler = make_sampler(tmp_path, random_images([(64, 80)]), patch_size=64, batch_size=64)
    counts = np.concatenate([sampler.batch(step).mask.sum(axis=(1, 2, 3)) for step in range(8)])
    assert counts.min() >= 4 and counts.max() <= 9
    assert abs(counts.mean() - (2 + 20 / 22) ** 2) < 0.25


def test_image_smaller_than_patch_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"img001 \(15x40\)"):
        make_sampler(tmp_path, random_images([(20, 20), (15, 40)]), patch_size=16)


@pytest.mark.parametrize(
    ("patch_size", "batch_size", "masking", "seed", "message"),
    [
        (0, 4, MASKING, 1, "patch_size"),
        (16, 0, MASKING, 1, "batch_size"),
        (16, 4, dataclasses.replace(MASKING, kind="median"), 1, "unknown masking kind"),
        (16, 4, dataclasses.replace(MASKING, radius=0), 1, "radius"),
        (16, 4, MASKING, -1, "seed"),
    ],
)
def test_bad_sampler_arguments_raise(
    tmp_path: Path, patch_size: int, batch_size: int, masking: dict, seed: int, message: str
) -> None:
    data = load_training_data(write_training_data(tmp_path, random_images([(20, 20)])))
    with pytest.raises(ValueError, match=message):
        PatchSampler(data, patch_size, batch_size, True, masking, seed)


def test_negative_step_raises(tmp_path: Path) -> None:
    sampler = make_sampler(tmp_path, random_images([(20, 20)]))
    with pytest.raises(ValueError, match="step"):
        sampler.batch(-1)


# --- normalisation ------------------------------------------------------------------------


def test_normalise_round_trip() -> None:
    values = np.array([[0.0, 110.73, 255.0, -40.0]], dtype=np.float32)
    normalised = normalise(values, 110.73, 63.66)
    assert normalised.dtype == np.float32 and normalised.shape == values.shape
    np.testing.assert_allclose(normalised, (values - 110.73) / 63.66, rtol=1e-6)
    np.testing.assert_allclose(denormalise(normalised, 110.73, 63.66), values, atol=1e-4)


@pytest.mark.parametrize("std", [0.0, -1.0, float("nan")])
def test_normalise_rejects_bad_std(std: float) -> None:
    with pytest.raises(ValueError, match="std"):
        normalise(np.zeros(3), 0.0, std)
    with pytest.raises(ValueError, match="std"):
        denormalise(np.zeros(3), 0.0, std)


# --- validation set -----------------------------------------------------------------------


def write_valid_tiles(path: Path, count: int = 10, size: int = 32, **overrides) -> Path:
    rng = np.random.default_rng(5)
    arrays = {
        "noisy": rng.normal(100, 30, size=(count, size, size)).astype(np.float32),
        "clean": rng.integers(0, 256, size=(count, size, size), dtype=np.uint8),
        "ids": np.array([f"v{number // 3}" for number in range(count)]),
    }
    arrays.update(overrides)
    np.savez(path, **{key: value for key, value in arrays.items() if value is not None})
    return path


def test_load_validation_contents(tmp_path: Path) -> None:
    path = write_valid_tiles(tmp_path / "valid_tiles.npz")
    valid = load_validation(path, 100.0, 30.0, MASKING, seed=123)
    assert isinstance(valid, ValidationSet)
    with np.load(path) as archive:
        np.testing.assert_array_equal(valid.noisy, archive["noisy"])
        np.testing.assert_array_equal(valid.clean, archive["clean"])
        np.testing.assert_array_equal(valid.ids, archive["ids"])
        expected_targets = (archive["noisy"] - np.float32(100)) / np.float32(30)
    for array in (valid.inputs, valid.targets, valid.mask):
        assert array.shape == (10, 1, 32, 32) and array.dtype == np.float32
        assert array.flags.c_contiguous
    assert valid.noisy.dtype == np.float32 and valid.clean.dtype == np.uint8
    np.testing.assert_allclose(valid.targets[:, 0], expected_targets, rtol=1e-6)
    np.testing.assert_array_equal(valid.inputs[valid.mask == 0], valid.targets[valid.mask == 0])
    assert np.all(valid.mask.sum(axis=(1, 2, 3)) >= 1)


def test_validation_mask_is_fixed(tmp_path: Path) -> None:
    path = write_valid_tiles(tmp_path / "valid_tiles.npz")
    first = load_validation(path, 100.0, 30.0, MASKING, seed=123)
    second = load_validation(path, 100.0, 30.0, MASKING, seed=123)
    np.testing.assert_array_equal(first.mask, second.mask)
    np.testing.assert_array_equal(first.inputs, second.inputs)
    # Not one mask repeated over all tiles, and another seed gives another mask.
    assert not all(np.array_equal(first.mask[0], tile) for tile in first.mask[1:])
    other = load_validation(path, 100.0, 30.0, MASKING, seed=124)
    assert not np.array_equal(first.mask, other.mask)


def test_validation_limit_keeps_first_tiles_and_their_masks(tmp_path: Path) -> None:
    path = write_valid_tiles(tmp_path / "valid_tiles.npz")
    full = load_validation(path, 100.0, 30.0, MASKING, seed=123)
    limited = load_validation(path, 100.0, 30.0, MASKING, seed=123, limit=4)
    assert limited.inputs.shape == (4, 1, 32, 32) and limited.ids.shape == (4,)
    for name in ("inputs", "targets", "mask", "noisy", "clean", "ids"):
        np.testing.assert_array_equal(getattr(limited, name), getattr(full, name)[:4])
    assert load_validation(path, 100.0, 30.0, MASKING, seed=123, limit=50).mask.shape[0] == 10


def test_epoch_subset_spreads_over_every_image_with_the_same_masks(tmp_path: Path) -> None:
    path = write_valid_tiles(tmp_path / "valid_tiles.npz", count=12)  # 4 images x 3 tiles
    full = load_validation(path, 100.0, 30.0, MASKING, seed=123)
    subset = full.spread(4)
    assert len(subset) == 4
    # one tile of each image, not the first four tiles (which cover two images)
    assert sorted(set(subset.ids.tolist())) == ["v0", "v1", "v2", "v3"]
    rows = [int(np.flatnonzero((full.noisy == tile).all(axis=(1, 2)))[0]) for tile in subset.noisy]
    assert rows == [0, 4, 7, 11]
    for name in ("inputs", "targets", "mask", "noisy", "clean", "ids"):
        np.testing.assert_array_equal(getattr(subset, name), getattr(full, name)[rows])
    assert full.spread(None) is full and full.spread(12) is full and full.spread(50) is full
    with pytest.raises(ValueError, match="count"):
        full.spread(0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"clean": None}, "missing arrays \\['clean'\\]"),
        ({"noisy": np.zeros((10, 32, 16), np.float32)}, "noisy must be"),
        ({"noisy": np.zeros((10, 32, 32), np.float64)}, "float32"),
        ({"clean": np.zeros((10, 32, 32), np.float32)}, "uint8"),
        ({"ids": np.array(["a", "b"])}, "shapes disagree"),
        ({"ids": np.array([{"a": 1}] * 10, dtype=object)}, "string array"),
    ],
)
def test_bad_validation_file_raises(tmp_path: Path, overrides: dict, message: str) -> None:
    path = write_valid_tiles(tmp_path / "valid_tiles.npz", **overrides)
    with pytest.raises(ValueError, match=message):
        load_validation(path, 100.0, 30.0, MASKING, seed=123)


def test_validation_argument_errors(tmp_path: Path) -> None:
    path = write_valid_tiles(tmp_path / "valid_tiles.npz")
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        load_validation(tmp_path / "nothing.npz", 100.0, 30.0, MASKING, seed=123)
    with pytest.raises(ValueError, match="std"):
        load_validation(path, 100.0, 0.0, MASKING, seed=123)
    with pytest.raises(ValueError, match="limit"):
        load_validation(path, 100.0, 30.0, MASKING, seed=123, limit=0)


# --- prefetching ----------------------------------------------------------------------------


def assert_same_batch(got: Batch, expected: Batch) -> None:
    for name in ("inputs", "targets", "mask", "masked"):
        a, b = getattr(got, name), getattr(expected, name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert a.tobytes() == b.tobytes(), name  # bit for bit


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "PrefetchingSampler"]


@pytest.mark.parametrize(("start", "depth"), [(0, 1), (17, 3)])
def test_prefetching_gives_the_serial_batches(tmp_path: Path, start: int, depth: int) -> None:
    serial = make_sampler(tmp_path, random_images([(40, 50), (33, 45)]))
    with PrefetchingSampler(serial, start_step=start, depth=depth) as prefetching:
        for step in range(start, start + 12):
            assert_same_batch(prefetching.batch(step), serial.batch(step))
        thread = prefetching.thread
        assert thread is not None and thread.is_alive()
    assert not thread.is_alive() and prefetching.thread is None


def test_prefetching_restarts_at_an_unexpected_step(tmp_path: Path) -> None:
    serial = make_sampler(tmp_path, random_images([(40, 40)]))
    with PrefetchingSampler(serial, start_step=5) as prefetching:
        for step in (5, 6, 2, 3, 40, 41):
            assert_same_batch(prefetching.batch(step), serial.batch(step))
    assert not prefetch_threads()


def test_prefetching_stops_at_stop_step(tmp_path: Path) -> None:
    serial = make_sampler(tmp_path, random_images([(40, 40)]))
    with PrefetchingSampler(serial, start_step=0, depth=8, stop_step=4) as prefetching:
        for step in range(6):  # steps 4 and 5 are made in this thread
            assert_same_batch(prefetching.batch(step), serial.batch(step))
        assert prefetching.thread is not None
        prefetching.thread.join(timeout=5)
        assert not prefetching.thread.is_alive()


def test_an_error_making_a_batch_is_raised_at_its_step(tmp_path: Path) -> None:
    serial = make_sampler(tmp_path, random_images([(40, 40)]))
    made = serial.batch

    def failing(step: int) -> Batch:
        if step == 3:
            raise OSError("disk gone at step 3")
        return made(step)

    serial.batch = failing  # type: ignore[method-assign]
    with PrefetchingSampler(serial, depth=2) as prefetching:
        for step in range(3):
            assert_same_batch(prefetching.batch(step), made(step))
        with pytest.raises(OSError, match="disk gone at step 3"):
            prefetching.batch(3)
        assert prefetching.thread is None  # the producer ended with the error
        assert_same_batch(prefetching.batch(4), made(4))  # a later step starts a new one
    assert not prefetch_threads()


def test_thread_ends_when_training_raises(tmp_path: Path) -> None:
    serial = make_sampler(tmp_path, random_images([(40, 40)]))
    with pytest.raises(KeyboardInterrupt), PrefetchingSampler(serial, depth=2) as prefetching:
        prefetching.batch(0)
        thread = prefetching.thread
        raise KeyboardInterrupt  # the producer is soon blocked on a full queue
    assert thread is not None and not thread.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        prefetching.batch(1)


def test_forgotten_prefetcher_stops_its_thread(tmp_path: Path) -> None:
    serial = make_sampler(tmp_path, random_images([(40, 40)]))
    prefetching = PrefetchingSampler(serial, depth=2)
    thread = prefetching.thread
    del prefetching
    gc.collect()
    assert thread is not None
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_prefetching_argument_errors(tmp_path: Path) -> None:
    serial = make_sampler(tmp_path, random_images([(40, 40)]))
    with pytest.raises(ValueError, match="depth"):
        PrefetchingSampler(serial, depth=0)
    with pytest.raises(ValueError, match="step"):
        PrefetchingSampler(serial, start_step=-1)
    with PrefetchingSampler(serial) as prefetching, pytest.raises(ValueError, match="step"):
        prefetching.batch(-2)


@pytest.mark.parametrize("method", ["n2c", "n2n"])
def test_n2c_and_n2n_batches_pair_each_noisy_crop_with_its_target(
    tmp_path: Path, method: str
) -> None:
    """Same crop and transform of input and target, nothing masked, loss over every pixel."""
    images = random_images([(40, 50), (30, 60)])
    folder = write_training_data(tmp_path, images)
    targets = {f"img{n:03d}": image * 0.5 + 7 for n, image in enumerate(images)}
    write_train_source(targets, folder / "train_target.npy", folder / "target_index.csv")
    data = load_training_data(folder, "clean" if method == "n2c" else "noisy2")
    sampler = PatchSampler(data, 16, 8, True, MASKING, 123, method)
    batch = sampler.batch(3)
    raw = sampler.raw_patches(3)
    np.testing.assert_allclose(denormalise(batch.inputs[:, 0], 100.0, 50.0), raw, atol=1e-3)
    np.testing.assert_allclose(
        denormalise(batch.targets[:, 0], 100.0, 50.0), raw * 0.5 + 7, atol=1e-3
    )
    assert batch.mask.min() == 1.0 and batch.masked.all()
    with pytest.raises(ValueError, match="training targets"):
        PatchSampler(load_training_data(folder), 16, 8, True, MASKING, 123, method)


def test_n2v2_replaces_masked_pixels_by_their_window_median(tmp_path: Path) -> None:
    images = random_images([(40, 50)])
    sampler = PatchSampler(
        load_training_data(write_training_data(tmp_path, images)), 16, 4, False, MASKING, 1, "n2v2"
    )
    batch = sampler.batch(0)
    patch, target = batch.inputs[:, 0], batch.targets[:, 0]
    for b, y, x in np.argwhere(batch.mask[:, 0] == 1):
        window = target[b, max(y - 2, 0) : y + 3, max(x - 2, 0) : x + 3].copy()
        centre = (y - max(y - 2, 0), x - max(x - 2, 0))
        neighbours = np.delete(window.ravel(), centre[0] * window.shape[1] + centre[1])
        assert patch[b, y, x] == pytest.approx(np.median(neighbours), abs=1e-6)
