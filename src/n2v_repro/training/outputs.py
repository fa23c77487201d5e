"""A finished run's files: weights, model card, history, monitor and train_summary.json.

History columns are those of docs/architecture.md: `epoch_time_s` is the synchronised
training part of the epoch, `patches_per_s` its throughput, `wall_time_s` the sum over epochs
of training + validation + checkpoint time (time lost to interruptions is not counted).
"""

from __future__ import annotations

import importlib.metadata
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from n2v_repro.framework_site import framework_package
from n2v_repro.io.atomic import atomic_path, write_json
from n2v_repro.io.formats import read_monitor, save_weights, write_history
from n2v_repro.io.machine import machine_name
from n2v_repro.models.card import MODEL_JSON, ModelCard, write_model_card
from n2v_repro.training.checkpoint import TrainState
from n2v_repro.training.job import TrainJob
from n2v_repro.training.sampler import TrainingData
from n2v_repro.training.throughput import patch_rates


def throughput(history: list[dict[str, float]], batch_size: int, steps: int) -> dict[str, Any]:
    """Total patches, and `throughput.patch_rates` over the epochs of `history`."""
    times = np.array([row["epoch_time_s"] for row in history], float)
    patches = np.full(times.shape, float(steps * batch_size))
    return {"patches": int(patches.sum()), **patch_rates(patches, times)}


def last_monitor_time(path: Path) -> float:
    """Largest time_s in an existing monitor CSV (0 when absent), to continue its clock."""
    if not path.exists() or path.stat().st_size == 0:
        return 0.0
    return _column_max(read_monitor(path)["time_s"]) or 0.0


def _monitor_summary(path: Path) -> dict[str, float | None]:
    """Peaks over the whole monitor CSV, all resumed parts included; the mean GPU use."""
    columns = read_monitor(path)
    gpu_util = columns["gpu_util_percent"][~np.isnan(columns["gpu_util_percent"])]
    return {
        "peak_rss_mib": _column_max(columns["rss_mib"]),
        "peak_gpu_mem_mib": _column_max(columns["gpu_mem_mib"]),
        "peak_framework_mem_mib": _column_max(columns["framework_mem_mib"]),
        "mean_gpu_util_percent": float(gpu_util.mean()) if gpu_util.size else None,
    }


def _column_max(values: np.ndarray) -> float | None:
    """Largest value of a monitor column; None when it holds no data (all empty cells)."""
    present = values[~np.isnan(values)]
    return float(present.max()) if present.size else None


def _framework_version(framework: str) -> str | None:
    try:
        return importlib.metadata.version(framework)
    except importlib.metadata.PackageNotFoundError:
        return None


def write_outputs(
    job: TrainJob,
    backend: Any,
    state: TrainState,
    resumed_from: int,
    data: TrainingData,
    final_validation: dict[str, float],
    epoch_tiles: int,
) -> None:
    out = job.out_dir
    # Beside the weights, so that they can be used without the pipeline's other files.
    card = ModelCard(
        arch=job.train.arch,
        mean=data.mean,
        std=data.std,
        patch_size=job.patch_size,
        framework=job.framework,
        seed=job.seed,
    )
    write_model_card(out / MODEL_JSON, card)
    save_weights(out / "last.npz", state.weights)
    save_weights(out / "best.npz", state.best_weights)
    write_history(out / "history.csv", state.history)
    with atomic_path(out / "monitor.csv", suffix=".csv") as tmp:
        shutil.copyfile(job.partial_monitor, tmp)
    epoch_times = [row["epoch_time_s"] for row in state.history]
    write_json(
        out / "train_summary.json",
        {
            "framework": job.framework,
            "framework_version": _framework_version(framework_package(job.framework)),
            "method": job.train.method,
            "arch": job.train.arch,
            "seed": job.seed,
            "train_set": job.train.train_set,
            "validation": job.train.validation.scheme,
            "init": job.train.init,
            "device": backend.device,
            "machine": machine_name(),
            "precision": backend.precision,
            "speed_levers": list(backend.speed_levers),
            "batch_norm": backend.batch_norm,
            "threads": job.threads,
            "epochs": state.epochs_done,
            "steps_per_epoch": job.train.steps_per_epoch,
            "batch_size": job.train.batch_size,
            "total_time_s": state.wall_time_s,
            "train_time_s": float(sum(epoch_times)),
            "valid_time_s": float(sum(row["valid_time_s"] for row in state.history)),
            "checkpoint_time_s": float(sum(row["checkpoint_time_s"] for row in state.history)),
            "mean_epoch_time_s": float(np.mean(epoch_times)),
            **throughput(state.history, job.train.batch_size, job.train.steps_per_epoch),
            "valid_tiles_per_epoch": epoch_tiles,
            "best_valid_loss": state.best_loss,
            "final_valid_psnr": state.history[-1]["valid_psnr"],
            "final_validation": final_validation,
            "resumed_from_epoch": resumed_from,
            "framework_peak_memory_mib": backend.peak_memory_mib(),
            **_monitor_summary(job.partial_monitor),
        },
    )
