"""N2V blind-spot masking: positions, replacement rule and the masked loss."""

from __future__ import annotations

import numpy as np
import pytest

from n2v_repro.training.masking import box_size, center_coords, mask_patches, masked_mse

# 64x64 patch, 22-px boxes: 4 boxes always inside, 5 boxes whose point lands inside with
# probability 20/22 per overhanging axis, so E[count] = (2 + 20/22)^2.
EXPECTED_MEAN_COUNT = (2 + 20 / 22) ** 2


def unique_patches(batch: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Patches whose values are all distinct, so a value identifies its source pixel."""
    rng = np.random.default_rng(seed)
    values = rng.permutation(batch * height * width).astype(np.float32)
    return values.reshape(batch, height, width)


def source_offsets(patches: np.ndarray, inputs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(K, 4) rows (y, x, source_y, source_x) for every masked pixel of unique-valued patches."""
    rows = []
    for b, y, x in zip(*np.nonzero(mask), strict=True):
        source = np.argwhere(patches[b] == inputs[b, y, x])
        assert source.shape == (1, 2), "replacement value must come from the patch itself"
        rows.append((y, x, *source[0]))
    return np.array(rows)


def test_box_size_matches_paper() -> None:
    assert box_size(0.198) == 22
    assert box_size(100) == 1
    assert box_size(1.0) == 10


def test_uniform_withcp_one_point_per_box_uniform_inside() -> None:
    rng = np.random.default_rng(2)
    offsets = []
    for _ in range(10):
        _, _, mask = mask_patches(np.zeros((2000, 64, 64), np.float32), rng)
        patch, y, x = np.nonzero(mask)
        # At most one point in each of a patch's 3 x 3 boxes of 22 px.
        box = patch * 9 + (y // 22) * 3 + x // 22
        assert np.bincount(box).max() == 1
        full = (y < 44) & (x < 44)
        assert np.all(np.bincount(patch[full], minlength=2000) == 4), (
            "the four boxes inside the patch always keep their point"
        )
        offsets.append(np.stack([y[full], x[full]], axis=1) % 22)
    offsets = np.concatenate(offsets)
    for axis in range(2):
        histogram = np.bincount(offsets[:, axis], minlength=22)
        expected = len(offsets) / 22
        assert histogram.size == 22
        assert np.all(np.abs(histogram - expected) < 0.1 * expected)


def test_center_coords() -> None:
    assert center_coords((64, 64)).tolist() == [[32, 32]]
    assert center_coords((5, 4)).tolist() == [[2, 2]]
    with pytest.raises(ValueError, match="shape"):
        center_coords((0, 4))


def test_mask_patches_shapes_targets_and_unmasked_pixels() -> None:
    patches = np.random.default_rng(4).normal(size=(16, 64, 64)).astype(np.float64)
    original = patches.copy()
    inputs, targets, mask = mask_patches(patches, np.random.default_rng(5))
    for array in (inputs, targets, mask):
        assert array.shape == patches.shape and array.dtype == np.float32
        assert array.flags.c_contiguous
    np.testing.assert_array_equal(patches, original)  # the caller's array is untouched
    np.testing.assert_array_equal(targets, original.astype(np.float32))
    assert set(np.unique(mask)) <= {0.0, 1.0}
    np.testing.assert_array_equal(inputs[mask == 0], targets[mask == 0])


def test_batched_mask_counts_match_statistics() -> None:
    rng = np.random.default_rng(6)
    patches = np.zeros((2000, 64, 64), dtype=np.float32)
    counts = np.concatenate([mask_patches(patches, rng)[2].sum(axis=(1, 2)) for _ in range(5)])
    assert counts.min() >= 4 and counts.max() == 9
    assert abs(counts.mean() - EXPECTED_MEAN_COUNT) < 0.05


def test_replacement_within_window_and_centre_sometimes() -> None:
    patches = unique_patches(3000, 64, 64, seed=7)
    inputs, _, mask = mask_patches(patches, np.random.default_rng(8), radius=2)
    rows = source_offsets(patches, inputs, mask)
    dy, dx = rows[:, 2] - rows[:, 0], rows[:, 3] - rows[:, 1]
    assert np.all((np.abs(dy) <= 2) & (np.abs(dx) <= 2))
    interior = (rows[:, 0] >= 2) & (rows[:, 0] < 62) & (rows[:, 1] >= 2) & (rows[:, 1] < 62)
    offsets = (dy[interior] + 2) * 5 + (dx[interior] + 2)
    histogram = np.bincount(offsets, minlength=25)
    expected = interior.sum() / 25
    # All 25 window positions, the centre (index 12: value unchanged) included, equally often.
    assert np.all(np.abs(histogram - expected) < 0.15 * expected)
    assert histogram[12] > 0


def test_window_is_clipped_at_the_corner() -> None:
    patches = unique_patches(4000, 5, 5, seed=9)
    inputs, _, mask = mask_patches(
        patches, np.random.default_rng(10), kind="uniform_withCP", percentage=100, radius=2
    )
    assert np.all(mask == 1)
    corner_sources = np.array(
        [np.argwhere(patches[b] == inputs[b, 0, 0])[0] for b in range(len(patches))]
    )
    assert corner_sources.max() <= 2  # window [0, 2] x [0, 2] after clipping
    histogram = np.bincount(corner_sources[:, 0] * 3 + corner_sources[:, 1], minlength=9)
    assert histogram.size == 9 and np.all(np.abs(histogram - 4000 / 9) < 0.2 * 4000 / 9)


def test_values_read_from_unmodified_patch() -> None:
    # Every pixel masked: a sequential in-place implementation would sometimes copy a value
    # that had already been moved, i.e. from up to 2 * radius away.
    patches = unique_patches(500, 8, 8, seed=11)
    inputs, _, mask = mask_patches(patches, np.random.default_rng(12), percentage=100, radius=1)
    assert np.all(mask == 1)
    rows = source_offsets(patches, inputs, mask)
    assert np.abs(rows[:, 2] - rows[:, 0]).max() == 1
    assert np.abs(rows[:, 3] - rows[:, 1]).max() == 1


def test_center_kind_masks_only_the_centre() -> None:
    patches = unique_patches(2000, 8, 8, seed=13)
    inputs, _, mask = mask_patches(patches, np.random.default_rng(14), kind="center", radius=2)
    expected_mask = np.zeros((8, 8), dtype=np.float32)
    expected_mask[4, 4] = 1
    assert np.all(mask == expected_mask)
    rows = source_offsets(patches, inputs, mask)
    assert np.all(np.abs(rows[:, 2:] - 4) <= 2)


def test_center_kind_with_large_radius_draws_from_whole_patch() -> None:
    # The original port's rule: the centre replaced by any pixel of the patch.
    patches = unique_patches(3000, 4, 4, seed=15)
    inputs, _, mask = mask_patches(patches, np.random.default_rng(16), kind="center", radius=3)
    rows = source_offsets(patches, inputs, mask)
    histogram = np.bincount(rows[:, 2] * 4 + rows[:, 3], minlength=16)
    assert histogram.size == 16 and np.all(histogram > 0.7 * 3000 / 16)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "median"}, "unknown masking kind"),
        ({"radius": 0}, "radius"),
        ({"radius": 1.5}, "radius"),
        ({"percentage": 0}, "percentage"),
        ({"percentage": -1.0}, "percentage"),
        ({"percentage": 100.5}, "percentage"),
        ({"percentage": float("nan")}, "percentage"),
    ],
)
def test_bad_arguments_raise(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mask_patches(np.zeros((2, 8, 8), np.float32), np.random.default_rng(0), **kwargs)


@pytest.mark.parametrize("shape", [(8, 8), (1, 1, 8, 8), (0, 8, 8)])
def test_bad_patch_shape_raises(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="patches"):
        mask_patches(np.zeros(shape, np.float32), np.random.default_rng(0))


def test_masked_mse_pools_the_whole_batch() -> None:
    # Patches with more masked pixels weigh more: not the mean of per-patch losses.
    pred = np.zeros((2, 1, 2, 2))
    target = np.zeros((2, 1, 2, 2))
    target[0, 0, 0, 0] = 3.0
    mask = np.zeros((2, 1, 2, 2))
    mask[0, 0, 0, 0] = 1
    mask[1, 0] = 1
    assert masked_mse(pred, target, mask) == pytest.approx(9 / 5)


def test_masked_mse_rejects_empty_mask_and_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="no pixel"):
        masked_mse(np.ones((2, 2)), np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="one shape"):
        masked_mse(np.ones((2, 2)), np.zeros((2, 3)), np.ones((2, 2)))


def test_median_replacement_excludes_the_centre_and_clips_at_the_border() -> None:
    """N2V2: median of the clipped (2r+1)^2 window without the masked pixel itself."""
    patches = np.arange(5 * 6, dtype=np.float32).reshape(1, 5, 6) ** 2
    inputs, targets, mask = mask_patches(
        patches, np.random.default_rng(3), percentage=100, radius=1, replacement="median"
    )
    assert mask.all()  # 100 %: every pixel masked
    for y in range(5):
        for x in range(6):
            window = targets[0, max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2].ravel().tolist()
            window.remove(targets[0, y, x])
            assert inputs[0, y, x] == np.median(window), (y, x)
    with pytest.raises(ValueError, match="replacement"):
        mask_patches(patches, np.random.default_rng(0), replacement="mean")
