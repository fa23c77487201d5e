"""Whole-image denoising of BSD68 and per-image PSNR/SSIM (docs/protocol.md, the reference).

Each noisy image is normalised with the training set's mean and std, reflect-padded to a
multiple of the network's stride, predicted in one piece, cropped back and denormalised. The
prediction is *not* clipped or rounded before the metrics (clipping would flatter or hurt the
score depending on the image); only the PNGs written for viewing are clipped to uint8.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from n2v_repro.data.transforms import denormalise, dihedral, inverse_dihedral, normalise
from n2v_repro.evaluation.metrics import psnr, ssim
from n2v_repro.io.formats import (
    load_noisy_set,
    load_weights,
    read_gray_png,
    read_split,
    read_train_stats,
    write_eval_summary,
    write_per_image,
)

log = logging.getLogger(__name__)

NOISY = "noisy"
# Test sets of the summary: the original port scored the split's test subset (68 - n_valid
# images); the paper scores all of BSD68. `n` in the summary says how many images were used.
TEST_SETS = {"bsd68_test": ("test",), "bsd68": ("valid", "test")}
WARMUP_PASSES = 2
# Validation schemes (config key validation.scheme) and, for each, the test sets on which
# the weights chosen by the validation loss ("best") may not be scored: their images chose
# them. A bsd68_split recipe picked its best weights on the BSD68 valid half, which is part
# of all 68 images, so its bsd68 rows show the last weights only.
VALIDATION_SCHEMES = ("bsd68_split", "heldout_train")
CHOSEN_ON_TEST_IMAGES = {"bsd68_split": {("bsd68", "best")}, "heldout_train": set()}


class Predictor(Protocol):
    """The part of the backend interface (docs/backend_interface.md) evaluation needs."""

    stride: int
    device: str
    precision: str

    def load_weights(self, weights: dict[str, np.ndarray]) -> None: ...

    def predict(self, inputs: np.ndarray) -> np.ndarray: ...

    def synchronize(self) -> None: ...


@dataclass(frozen=True)
class EvalImage:
    id: str
    subset: str  # "valid" or "test"
    clean: np.ndarray  # uint8 (H, W)
    noisy: np.ndarray  # float32 (H, W), unclipped


@dataclass
class EvaluationResult:
    rows: list[dict[str, Any]]  # keys: io.formats.PER_IMAGE_COLUMNS
    denoised: dict[str, np.ndarray]  # id -> float32 prediction of the first weights
    inference: dict[str, Any] = field(default_factory=dict)


# --- geometry -------------------------------------------------------------------------------


def reflect_pad(image: np.ndarray, stride: int) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Pad (H, W) by reflection, split evenly on both sides, to multiples of `stride`.

    Returns the padded image and the slices that crop it back.
    """
    height, width = image.shape
    pad_h, pad_w = -height % stride, -width % stride
    top, left = pad_h // 2, pad_w // 2
    padded = np.pad(image, ((top, pad_h - top), (left, pad_w - left)), mode="reflect")
    return padded, (slice(top, top + height), slice(left, left + width))


def predict_image(backend: Predictor, noisy: np.ndarray, mean: float, std: float) -> np.ndarray:
    """Denoise one (H, W) image in grey levels; float32, unclipped."""
    padded, crop = reflect_pad(normalise(noisy, mean, std), backend.stride)
    output = backend.predict(np.ascontiguousarray(padded[None, None]))
    if output.shape != (1, 1, *padded.shape):
        raise ValueError(f"backend returned {output.shape} for input {(1, 1, *padded.shape)}")
    return denormalise(output[0, 0][crop], mean, std)


def denoise(
    backend: Predictor, noisy: np.ndarray, mean: float, std: float, tta: bool = False
) -> np.ndarray:
    """Prediction, or with `tta` the mean of the 8 transformed predictions mapped back."""
    if not tta:
        return predict_image(backend, noisy, mean, std)
    total = np.zeros(noisy.shape, dtype=np.float64)
    for index in range(8):
        pred = predict_image(backend, np.ascontiguousarray(dihedral(noisy, index)), mean, std)
        total += inverse_dihedral(pred, index)
    return (total / 8.0).astype(np.float32)


def to_uint8(pred: np.ndarray) -> np.ndarray:
    """For viewing only: clip to [0, 255] and round."""
    return np.clip(np.rint(pred), 0, 255).astype(np.uint8)


def _warm_up(backend: Predictor, images: Sequence[EvalImage], tta: bool) -> float:
    """Predict, untimed, once per distinct padded shape; return the seconds spent.

    Jittor compiles kernels per shape and PyTorch's CPU kernels take a few calls to reach
    their speed.
    """
    start = time.perf_counter()
    shapes = {img.noisy.shape for img in images}
    if tta:
        shapes |= {(w, h) for h, w in shapes}
    for height, width in sorted(shapes):
        padded, _ = reflect_pad(np.zeros((height, width), np.float32), backend.stride)
        for _ in range(WARMUP_PASSES):
            backend.predict(padded[None, None])
    backend.synchronize()
    return time.perf_counter() - start


def _score_rows(images: Sequence[EvalImage], preds: Mapping[str, np.ndarray], weights: str):
    return [
        {
            "id": img.id,
            "subset": img.subset,
            "weights": weights,
            "psnr": psnr(img.clean, preds[img.id]),
            "ssim": ssim(img.clean, preds[img.id]),
        }
        for img in images
    ]


def evaluate_model(
    backend: Predictor,
    weight_sets: Mapping[str, dict[str, np.ndarray]],
    images: Sequence[EvalImage],
    mean: float,
    std: float,
    tta: bool = False,
) -> EvaluationResult:
    """Score the noisy input and every weight set on every image.

    The first weight set's predictions are kept (for the PNGs) and timed for the inference
    throughput, after a warm-up so that one-off compilation is not counted.
    """
    if not weight_sets:
        raise ValueError("no weights to evaluate")
    noisy_preds = {img.id: img.noisy for img in images}
    rows = _score_rows(images, noisy_preds, NOISY)
    kept: dict[str, np.ndarray] = {}
    inference: dict[str, Any] = {}
    for position, (name, weights) in enumerate(weight_sets.items()):
        backend.load_weights(weights)
        timed = position == 0
        warmup_s = _warm_up(backend, images, tta) if timed else 0.0
        start = time.perf_counter()
        preds = {img.id: denoise(backend, img.noisy, mean, std, tta) for img in images}
        backend.synchronize()
        elapsed = time.perf_counter() - start
        log.info("weights %s: %d images in %.2f s", name, len(images), elapsed)
        if timed:
            kept = preds
            megapixels = sum(img.noisy.size for img in images) / 1e6
            inference = {
                "weights": name,
                "device": backend.device,
                "precision": backend.precision,
                "speed_levers": list(backend.speed_levers),
                "batch_norm": backend.batch_norm,
                "tta": tta,
                "images": len(images),
                "seconds": elapsed,
                "warmup_seconds": warmup_s,
                "images_per_s": len(images) / elapsed,
                "megapixels_per_s": megapixels / elapsed,
            }
        rows += _score_rows(images, preds, name)
    return EvaluationResult(rows=rows, denoised=kept, inference=inference)


# --- summaries ------------------------------------------------------------------------------


def _stats(values: Sequence[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    # Population std over images: a spread, not an estimate of the mean's error.
    return {"mean": float(array.mean()), "std": float(array.std())}


def summarise(
    rows: Sequence[Mapping[str, Any]], validation: str = "heldout_train"
) -> dict[str, dict[str, dict[str, float]]]:
    """{test set: {weights: {n, psnr_mean, psnr_std, ssim_mean, ssim_std}}}.

    Weights chosen on images of a test set (`CHOSEN_ON_TEST_IMAGES[validation]`) are left out
    of that test set.
    """
    if validation not in CHOSEN_ON_TEST_IMAGES:
        raise ValueError(f"unknown validation scheme {validation!r}; expected {VALIDATION_SCHEMES}")
    excluded = CHOSEN_ON_TEST_IMAGES[validation]
    weights_order = list(dict.fromkeys(row["weights"] for row in rows))
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for test_set, subsets in TEST_SETS.items():
        summary[test_set] = {}
        for weights in weights_order:
            if (test_set, weights) in excluded:
                continue
            chosen = [r for r in rows if r["weights"] == weights and r["subset"] in subsets]
            if not chosen:
                continue
            psnr_stats = _stats([r["psnr"] for r in chosen])
            ssim_stats = _stats([r["ssim"] for r in chosen])
            summary[test_set][weights] = {
                "n": len(chosen),
                "psnr_mean": psnr_stats["mean"],
                "psnr_std": psnr_stats["std"],
                "ssim_mean": ssim_stats["mean"],
                "ssim_std": ssim_stats["std"],
            }
    return summary


# --- files ----------------------------------------------------------------------------------


def load_test_images(
    clean_pngs: Sequence[str | Path], noisy_npz: str | Path, split_csv: str | Path
) -> list[EvalImage]:
    """Load the images of the split, in its order, with their clean and noisy pixels."""
    split = read_split(split_csv)
    png_by_id = {Path(p).stem: Path(p) for p in clean_pngs}
    missing = sorted(set(split) - set(png_by_id))
    if missing:
        raise ValueError(f"no clean PNG for split ids {missing}")
    noisy = load_noisy_set(noisy_npz)
    images = []
    for image_id, subset in split.items():
        clean = read_gray_png(png_by_id[image_id])
        if image_id not in noisy:
            raise ValueError(f"{noisy_npz} has no noisy image {image_id}")
        noisy_image = noisy[image_id].astype(np.float32)
        if clean.shape != noisy_image.shape:
            raise ValueError(f"{image_id}: clean {clean.shape} vs noisy {noisy_image.shape}")
        images.append(EvalImage(image_id, subset, clean, noisy_image))
    return images


def write_denoised_pngs(directory: str | Path, denoised: Mapping[str, np.ndarray]) -> None:
    """Write every PNG into a temporary folder, then rename it into place as a whole."""
    final = Path(directory)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the output is an ordinary folder
    try:
        for image_id, pred in denoised.items():
            # Not write_gray_png: the folder is renamed into place as a whole, and the files
            # keep the ordinary permissions that a temporary-file rename would not give.
            Image.fromarray(to_uint8(pred)).save(tmp / f"{image_id}.png")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_evaluation(
    *,
    framework: str,
    arch: str,
    sigma: int,
    recipe: str,
    seed: int,
    validation: str,
    clean_pngs: Sequence[str | Path],
    noisy_npz: str | Path,
    split_csv: str | Path,
    stats_json: str | Path,
    weight_files: Mapping[str, str | Path],
    per_image_csv: str | Path,
    summary_json: str | Path,
    denoised_dir: str | Path,
    device: str = "auto",
    threads: int | None = None,
    tta: bool = False,
    precision: str = "fp32",
    backend: Predictor | None = None,
) -> dict[str, Any]:
    """Evaluate one trained model on BSD68 and write per_image.csv, summary.json, denoised/.

    `recipe`, `seed` and `validation` (the recipe's validation scheme) identify the run in the
    summary; the scheme also decides which test sets may show the best weights (`summarise`).
    per_image.csv keeps every image and weights, so nothing is lost.
    """
    if validation not in VALIDATION_SCHEMES:
        raise ValueError(f"unknown validation scheme {validation!r}; expected {VALIDATION_SCHEMES}")
    if backend is None:
        # Imports the framework: only when needed.
        from n2v_repro.backends.registry import make_backend

        backend = make_backend(framework, arch, device, threads, precision)
    images = load_test_images(clean_pngs, noisy_npz, split_csv)
    mean, std = read_train_stats(stats_json)
    weight_sets = {name: load_weights(path) for name, path in weight_files.items()}
    result = evaluate_model(backend, weight_sets, images, mean, std, tta)
    return write_scores(
        result=result,
        images=images,
        run={"recipe": recipe, "framework": framework, "arch": arch, "sigma": sigma, "seed": seed},
        validation=validation,
        tta=tta,
        train_stats={"mean": mean, "std": std},
        per_image_csv=per_image_csv,
        summary_json=summary_json,
        denoised_dir=denoised_dir,
    )


def write_scores(
    *,
    result: EvaluationResult,
    images: Sequence[EvalImage],
    run: Mapping[str, Any],
    validation: str,
    tta: bool,
    train_stats: Mapping[str, float] | None,
    per_image_csv: str | Path,
    summary_json: str | Path,
    denoised_dir: str | Path,
) -> dict[str, Any]:
    """Write per_image.csv, summary.json and denoised/ of one run's scores.

    `run` names it (recipe, framework, arch, sigma, seed); the validation scheme decides which
    test sets may show its best weights (`summarise`).
    """
    valid_in_test = {
        test_set: sum(img.subset == "valid" for img in images if img.subset in subsets)
        if validation == "bsd68_split"
        else 0
        for test_set, subsets in TEST_SETS.items()
    }
    summary = {
        "recipe": run["recipe"],
        "framework": run["framework"],
        "arch": run["arch"],
        "sigma": int(run["sigma"]),
        "seed": int(run["seed"]),
        "validation": {"scheme": validation, "images_in_test_set": valid_in_test},
        "tta": tta,
        "train_stats": dict(train_stats) if train_stats is not None else None,
        "test_sets": summarise(result.rows, validation),
        "inference": result.inference,
    }
    write_per_image(per_image_csv, result.rows)
    write_denoised_pngs(denoised_dir, result.denoised)
    write_eval_summary(summary_json, summary)
    return summary
