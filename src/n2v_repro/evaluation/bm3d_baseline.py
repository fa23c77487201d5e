"""BM3D on BSD68 with the known noise level: the training-free baseline of Krull et al. Table 1.

BM3D (Dabov et al. 2007; the `bm3d` package, Mäkinen, Azzari & Foi) learns nothing and chooses
nothing, so it is scored on every BSD68 image in use (both subsets of the split) and the
tables can compare it with each learned recipe on that recipe's own test images. The noisy
image is the pipeline's float noisy image, unclipped and unrounded, exactly what the networks
see; it is scaled to [0, 1] together with sigma (sigma / 255), the scale the package's
profiles are written for, and the estimate is scaled back to grey levels. Scores, files and
their formats are those of the learned methods' evaluation (`predict`): per_image.csv with
the noisy input's rows and one row per image under the weights name `BM3D_WEIGHTS`,
summary.json with the same keys and test sets, and denoised/ PNGs for viewing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

# _score_rows: the learned methods' own scoring (PSNR/SSIM, data range 255, unclipped), so
# that both are scored by one function.
from n2v_repro.evaluation.predict import (
    NOISY,
    TEST_SETS,
    EvalImage,
    EvaluationResult,
    _score_rows,
    load_test_images,
    summarise,
    write_denoised_pngs,
)
from n2v_repro.io.formats import write_eval_summary, write_per_image

log = logging.getLogger(__name__)

# The name of the baseline: its recipe in summary.json, its `weights` in per_image.csv.
BM3D = "bm3d"
BM3D_WEIGHTS = "bm3d"
# The package's default profile ("np", normal profile) with both stages (hard thresholding,
# then Wiener filtering on its estimate): the standard BM3D that papers report.
PROFILE = "np"
GREY_LEVELS = 255.0

Denoiser = Callable[[np.ndarray, float], np.ndarray]


def bm3d_denoise(noisy: np.ndarray, sigma: float) -> np.ndarray:
    """BM3D estimate of one (H, W) noisy image in grey levels; float32, unclipped."""
    import bm3d  # only here: the analysis and framework environments do not hold it

    scaled = np.asarray(noisy, dtype=np.float64) / GREY_LEVELS
    estimate = bm3d.bm3d(
        scaled, sigma / GREY_LEVELS, profile=PROFILE, stage_arg=bm3d.BM3DStages.ALL_STAGES
    )
    estimate = np.asarray(estimate, dtype=np.float64).reshape(noisy.shape)
    return (estimate * GREY_LEVELS).astype(np.float32)


def bm3d_version() -> str | None:
    try:
        return metadata.version("bm3d")
    except metadata.PackageNotFoundError:
        return None


def evaluate_bm3d(
    images: Sequence[EvalImage], sigma: float, denoiser: Denoiser = bm3d_denoise
) -> EvaluationResult:
    """Score the noisy input and BM3D on every image; each image's BM3D time is kept."""
    rows = _score_rows(images, {img.id: img.noisy for img in images}, NOISY)
    preds: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    for img in images:
        start = time.perf_counter()
        preds[img.id] = denoiser(img.noisy, float(sigma))
        seconds[img.id] = time.perf_counter() - start
        if preds[img.id].shape != img.noisy.shape:
            raise ValueError(f"{img.id}: BM3D returned {preds[img.id].shape} for {img.noisy.shape}")
        log.info("BM3D %s: %.2f s", img.id, seconds[img.id])
    rows += _score_rows(images, preds, BM3D_WEIGHTS)
    total = sum(seconds.values())
    megapixels = sum(img.noisy.size for img in images) / 1e6
    # The learned methods' inference keys, so that the benchmark table reads both alike;
    # BM3D has no warm-up (nothing to compile) and computes in float64 on the CPU.
    inference = {
        "weights": BM3D_WEIGHTS,
        "device": "cpu",
        "precision": "fp64",
        "speed_levers": [],
        "tta": False,
        "images": len(images),
        "seconds": total,
        "warmup_seconds": 0.0,
        "images_per_s": len(images) / total if total > 0 else None,
        "megapixels_per_s": megapixels / total if total > 0 else None,
        "seconds_per_image": total / len(images) if images else None,
        "seconds_per_image_max": max(seconds.values()) if seconds else None,
    }
    return EvaluationResult(rows=rows, denoised=preds, inference=inference)


def run_bm3d(
    *,
    sigma: int,
    clean_pngs: Sequence[str | Path],
    noisy_npz: str | Path,
    split_csv: str | Path,
    per_image_csv: str | Path,
    summary_json: str | Path,
    denoised_dir: str | Path,
    denoiser: Denoiser = bm3d_denoise,
) -> dict[str, Any]:
    """BM3D on every BSD68 image of the split; writes per_image.csv, summary.json, denoised/.

    The summary has the learned evaluations' keys (io.formats.EVAL_SUMMARY_KEYS): no framework,
    seed or training statistics (None), and no validation scheme, so no test set loses a row
    (BM3D's output chose nothing).
    """
    images = load_test_images(clean_pngs, noisy_npz, split_csv)
    if not images:
        raise ValueError(f"{split_csv} lists no BSD68 image")
    result = evaluate_bm3d(images, sigma, denoiser)
    summary = {
        "recipe": BM3D,
        "framework": None,
        "arch": BM3D,
        "sigma": int(sigma),
        "seed": None,
        "validation": {
            "scheme": None,
            "images_in_test_set": {test_set: 0 for test_set in TEST_SETS},
        },
        "tta": False,
        "train_stats": None,
        # "heldout_train" excludes nothing: every test set keeps BM3D's rows.
        "test_sets": summarise(result.rows, "heldout_train"),
        "inference": result.inference,
        "bm3d": {"package_version": bm3d_version(), "profile": PROFILE, "stages": "all"},
    }
    write_per_image(per_image_csv, result.rows)
    write_denoised_pngs(denoised_dir, result.denoised)
    write_eval_summary(summary_json, summary)
    log.info(
        "BM3D sigma %d: %d images, %.1f s (%.2f s per image)",
        sigma,
        len(images),
        result.inference["seconds"],
        result.inference["seconds_per_image"],
    )
    return summary
