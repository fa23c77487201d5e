"""Validation of the weights being trained, on the fixed-mask validation tiles."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from n2v_repro.data.transforms import denormalise, normalise
from n2v_repro.evaluation.metrics import psnr, ssim
from n2v_repro.training.sampler import ValidationSet


def validate(
    backend: Any, valid: ValidationSet, mean: float, std: float, batch_size: int
) -> tuple[float, float, float]:
    """(masked loss over all tiles, mean PSNR, mean SSIM of the denoised noisy tiles)."""
    squared_error_sum, masked_count = 0.0, 0.0
    denoised = np.empty_like(valid.noisy)
    noisy_inputs = normalise(valid.noisy, mean, std)[:, None]
    for start in range(0, len(valid.noisy), batch_size):
        part = slice(start, start + batch_size)
        # The backend's loss is a mean over its batch's masked pixels; weighting by the pixel
        # count gives the mean over the whole set, independent of the batch size.
        count = float(valid.mask[part].sum())
        loss = float(backend.masked_loss(valid.inputs[part], valid.targets[part], valid.mask[part]))
        squared_error_sum += loss * count
        masked_count += count
        denoised[part] = denormalise(backend.predict(noisy_inputs[part])[:, 0], mean, std)
    psnrs = [psnr(clean, pred) for clean, pred in zip(valid.clean, denoised, strict=True)]
    ssims = [ssim(clean, pred) for clean, pred in zip(valid.clean, denoised, strict=True)]
    return squared_error_sum / masked_count, float(np.mean(psnrs)), float(np.mean(ssims))


def validate_all(
    backend: Any, valid: ValidationSet, mean: float, std: float, batch_size: int
) -> dict[str, float]:
    """Validate the final weights on every validation tile (train_summary.json)."""
    start = time.perf_counter()
    loss, psnr_db, ssim_value = validate(backend, valid, mean, std, batch_size)
    return {
        "weights": "last",
        "tiles": len(valid),
        "loss": loss,
        "psnr": psnr_db,
        "ssim": ssim_value,
        "time_s": time.perf_counter() - start,
    }
