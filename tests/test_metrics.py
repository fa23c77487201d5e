"""PSNR/SSIM with the standard 8-bit data range, against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio

from n2v_repro.evaluation.metrics import psnr, ssim


def _clean(shape: tuple[int, int] = (48, 64), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


# An error of +-1 on every pixel, and +-25 (sigma 25 noise: the paper's 20.17 dB noisy input,
# outside 0..255 on dark and bright pixels, where clipping would hide part of the error).
@pytest.mark.parametrize(("error", "expected_db"), [(1.0, 48.1308), (25.0, 20.1720)])
def test_psnr_by_hand_of_an_unclipped_prediction(error: float, expected_db: float) -> None:
    clean = _clean()
    pred = clean + np.where(np.arange(clean.size) % 2, error, -error).reshape(clean.shape)
    assert psnr(clean, pred) == pytest.approx(10 * math.log10(255.0**2 / error**2), abs=1e-9)
    assert psnr(clean, pred) == pytest.approx(expected_db, abs=1e-4)


def test_identical_images_give_inf_psnr_and_ssim_one() -> None:
    clean = _clean()
    assert psnr(clean, clean.astype(np.float32)) == math.inf
    assert ssim(clean, clean.astype(np.float32)) == pytest.approx(1.0)


def test_psnr_agrees_with_skimage_at_data_range_255() -> None:
    clean = _clean(seed=1)
    pred = clean + np.random.default_rng(2).normal(0, 10, clean.shape)
    expected = peak_signal_noise_ratio(clean.astype(np.float64), pred, data_range=255)
    assert psnr(clean, pred) == pytest.approx(expected, rel=1e-12)


def test_ssim_drops_as_the_noise_grows() -> None:
    clean = _clean(seed=3)
    rng = np.random.default_rng(4)
    light = clean + rng.normal(0, 5, clean.shape)
    heavy = clean + rng.normal(0, 50, clean.shape)
    assert 1.0 > ssim(clean, light) > ssim(clean, heavy) > 0.0


def test_ssim_matches_a_direct_gaussian_window_computation() -> None:
    # Wang et al. with a sigma-1.5 Gaussian window, population moments, C1=(0.01*255)^2,
    # C2=(0.03*255)^2, averaged over the valid (un-padded) region, as skimage crops it.
    from scipy.ndimage import gaussian_filter

    clean = _clean((40, 40), seed=5).astype(np.float64)
    pred = clean + np.random.default_rng(6).normal(0, 20, clean.shape)
    blur = {"sigma": 1.5, "truncate": 3.5}
    mu_x, mu_y = gaussian_filter(clean, **blur), gaussian_filter(pred, **blur)
    var_x = gaussian_filter(clean * clean, **blur) - mu_x**2
    var_y = gaussian_filter(pred * pred, **blur) - mu_y**2
    cov = gaussian_filter(clean * pred, **blur) - mu_x * mu_y
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    pad = 5  # (win_size 11 - 1) // 2
    assert ssim(clean, pred) == pytest.approx(ssim_map[pad:-pad, pad:-pad].mean(), rel=1e-6)


def test_port_data_range_gives_a_different_number() -> None:
    """The original port used data_range = pred.max() - pred.min(), not 255 (protocol 2)."""
    clean = _clean(seed=7)
    pred = np.clip(clean * 0.6 + 40 + np.random.default_rng(8).normal(0, 5, clean.shape), 0, 255)
    port_range = float(pred.max() - pred.min())
    assert port_range < 255
    standard = psnr(clean, pred)
    port = psnr(clean, pred, data_range=port_range)
    assert port == pytest.approx(standard + 20 * math.log10(port_range / 255.0))
    assert port < standard - 1.0
    assert ssim(clean, pred, data_range=port_range) != pytest.approx(ssim(clean, pred))


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(np.zeros((4, 4), np.uint8), np.zeros((4, 5)))
