"""Training throughput from per-epoch patches and times, for training summaries and the report."""

from __future__ import annotations

import numpy as np


def patch_rate(patches: np.ndarray, seconds: np.ndarray) -> float | None:
    """Patches over seconds, both summed over the epochs that have both (a ratio of sums).

    Not a mean of per-epoch rates, which overstates the throughput when the load changes.
    """
    known = ~(np.isnan(patches) | np.isnan(seconds))
    total_s = float(seconds[known].sum())
    return float(patches[known].sum()) / total_s if total_s > 0 else None


def patch_rates(patches: np.ndarray, seconds: np.ndarray) -> dict[str, float | None]:
    """Return the rate over all epochs and the steady-state rate (second epoch on).

    The first epoch holds one-off costs (Jittor compiles its kernels); the steady rate is
    None for a one-epoch run.
    """
    patches, seconds = np.asarray(patches, float), np.asarray(seconds, float)
    return {
        "train_patches_per_s": patch_rate(patches, seconds),
        "steady_patches_per_s": patch_rate(patches[1:], seconds[1:]) if seconds.size > 1 else None,
    }
