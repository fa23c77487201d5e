"""Training throughput: ratios of sums, the first epoch kept apart."""

from __future__ import annotations

import numpy as np

from n2v_repro.training.throughput import patch_rates


def test_rates_are_total_patches_over_total_time_not_mean_of_epoch_rates():
    # 100 patches in 1 s, then 100 in 9 s (a loaded machine): 200 / 10 s, not mean(100, 11.1).
    rates = patch_rates(np.array([100.0, 100.0]), np.array([1.0, 9.0]))
    assert rates["train_patches_per_s"] == 20.0
    assert rates["steady_patches_per_s"] == 100.0 / 9.0


def test_epochs_with_an_unknown_time_are_left_out_and_one_epoch_has_no_steady_rate():
    rates = patch_rates(np.array([50.0, 50.0, 50.0]), np.array([2.0, np.nan, 3.0]))
    assert rates["train_patches_per_s"] == 100.0 / 5.0
    assert rates["steady_patches_per_s"] == 50.0 / 3.0
    assert patch_rates(np.array([50.0]), np.array([2.0]))["steady_patches_per_s"] is None
    assert patch_rates(np.array([]), np.array([]))["train_patches_per_s"] is None
