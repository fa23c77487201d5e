"""Image transforms shared by training and evaluation.

Z-score normalisation, and the eight flips/90-degree rotations (training augmentation,
test-time augmentation).
"""

from __future__ import annotations

import math

import numpy as np


def check_stats(mean: float, std: float) -> tuple[float, float]:
    mean, std = float(mean), float(std)
    if not math.isfinite(mean):
        raise ValueError(f"normalisation mean must be finite, got {mean!r}")
    if not (math.isfinite(std) and std > 0):
        raise ValueError(f"normalisation std must be finite and > 0, got {std!r}")
    return mean, std


def normalise(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    """Z-score normalisation (x - mean) / std, as float32 of the same shape as `x`."""
    mean, std = check_stats(mean, std)
    return (np.asarray(x, dtype=np.float32) - np.float32(mean)) / np.float32(std)


def denormalise(y: np.ndarray, mean: float, std: float) -> np.ndarray:
    """Inverse of `normalise`: y * std + mean, as float32 of the same shape; not clipped."""
    mean, std = check_stats(mean, std)
    return np.asarray(y, dtype=np.float32) * np.float32(std) + np.float32(mean)


def dihedral(image: np.ndarray, transform: int) -> np.ndarray:
    """Transform 0-7 of the square's symmetry group: rotate by 90 deg * (t % 4), flip if t >= 4.

    Training augmentation draws one per patch; evaluation's test-time augmentation averages
    over all eight (with `inverse_dihedral`).
    """
    rotated = np.rot90(image, k=transform % 4)
    return rotated[:, ::-1] if transform >= 4 else rotated


def inverse_dihedral(image: np.ndarray, transform: int) -> np.ndarray:
    """Undo `dihedral(., transform)`."""
    unflipped = image[:, ::-1] if transform >= 4 else image
    return np.rot90(unflipped, k=-(transform % 4))
