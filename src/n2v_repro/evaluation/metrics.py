"""Image quality metrics with the standard 8-bit data range (docs/protocol.md, the reference).

PSNR = 10 log10(255^2 / MSE) against the clean uint8 image, computed in float64 on the
*unclipped* prediction. SSIM is Wang et al. (2004): Gaussian window sigma 1.5, population
covariance. Both use a fixed data range of 255; the original port used
`pred.max() - pred.min()`, which depends on the prediction and gave its low numbers.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

DATA_RANGE_8BIT = 255.0


def _check_pair(clean: np.ndarray, pred: np.ndarray) -> None:
    if clean.shape != pred.shape:
        raise ValueError(f"clean {clean.shape} and prediction {pred.shape} differ in shape")
    if clean.ndim != 2:
        raise ValueError(f"expected 2-D gray images, got shape {clean.shape}")


def psnr(clean: np.ndarray, pred: np.ndarray, data_range: float = DATA_RANGE_8BIT) -> float:
    """Peak signal-to-noise ratio in dB; inf for identical images."""
    _check_pair(clean, pred)
    diff = clean.astype(np.float64) - pred.astype(np.float64)
    mse = float(np.mean(diff * diff))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))


def ssim(clean: np.ndarray, pred: np.ndarray, data_range: float = DATA_RANGE_8BIT) -> float:
    """Structural similarity (Wang et al. 2004 settings), 1.0 for identical images."""
    _check_pair(clean, pred)
    return float(
        structural_similarity(
            clean.astype(np.float64),
            pred.astype(np.float64),
            data_range=data_range,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
    )
