"""Per-epoch records of a reference's training, in the pipeline's history.csv columns.

Both adapters time each epoch's training steps apart from its validation, as the pipeline's
own loop does, so the benchmark table reads a reference's history like ours.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np


class EpochClock:
    """Times the training part and the validation part of each epoch."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.rows: list[dict[str, Any]] = []
        self.start = time.perf_counter()
        self._epoch_start = self._valid_start = 0.0
        self._valid_s = 0.0
        self._train_s: float | None = None

    def epoch_started(self) -> None:
        self._epoch_start = time.perf_counter()
        self._train_s, self._valid_s = None, 0.0

    def validation_started(self) -> None:
        self._valid_start = time.perf_counter()
        if self._train_s is None:
            self._train_s = self._valid_start - self._epoch_start

    def validation_ended(self) -> None:
        self._valid_s += time.perf_counter() - self._valid_start

    def epoch_ended(self, steps: int, lr: float, train_loss: float, valid_loss: float) -> None:
        now = time.perf_counter()
        train_s = self._train_s if self._train_s is not None else now - self._epoch_start
        self.rows.append(
            {
                "epoch": len(self.rows) + 1,
                "lr": lr,
                "train_loss": train_loss,
                "valid_loss": valid_loss,
                # The references compute no PSNR of their validation predictions.
                "valid_psnr": math.nan,
                "valid_ssim": math.nan,
                "epoch_time_s": train_s,
                "patches_per_s": steps * self.batch_size / train_s if train_s > 0 else math.nan,
                "valid_time_s": self._valid_s,
                "checkpoint_time_s": math.nan,
                "wall_time_s": now - self.start,
                "steps": steps,
            }
        )

    @property
    def steps(self) -> int:
        return sum(row["steps"] for row in self.rows)

    def history_rows(self) -> list[dict[str, Any]]:
        return [{k: v for k, v in row.items() if k != "steps"} for row in self.rows]


def inference_record(
    weights: str, images: Mapping[str, np.ndarray], seconds: float, warmup: float, device: str
) -> dict[str, Any]:
    """Return the evaluation summary's `inference` keys for a reference's timed predictions."""
    megapixels = sum(image.size for image in images.values()) / 1e6
    return {
        "weights": weights,
        "device": device,
        "precision": "fp32",
        "speed_levers": [],
        "batch_norm": "stock",
        "tta": False,
        "images": len(images),
        "seconds": seconds,
        "warmup_seconds": warmup,
        "images_per_s": len(images) / seconds,
        "megapixels_per_s": megapixels / seconds,
    }


Images = Mapping[str, np.ndarray]


def timed_predictions(
    weights_list: Sequence[str],
    images: Images,
    load: Callable[[str], None],
    predict_all: Callable[[Images], dict[str, np.ndarray]],
    device: str,
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    """Predict `images` with each weights (`load` puts them in place).

    The first weights are timed after a one-image warm-up, as the pipeline's evaluation does.
    """
    predictions: dict[str, dict[str, np.ndarray]] = {}
    inference: dict[str, Any] = {}
    for position, weights in enumerate(weights_list):
        load(weights)
        if position == 0:
            first = next(iter(images))
            start = time.perf_counter()
            predict_all({first: images[first]})
            warmup = time.perf_counter() - start
        start = time.perf_counter()
        predictions[weights] = predict_all(images)
        if position == 0:
            seconds = time.perf_counter() - start
            inference = inference_record(weights, images, seconds, warmup, device)
    return predictions, inference
