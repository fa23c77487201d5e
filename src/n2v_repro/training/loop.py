"""The Noise2Void training loop, written once over the backend interface (both frameworks).

`train(job)` runs `epochs` epochs of `steps_per_epoch` Adam steps on seeded batches
(`sampler.PatchSampler.batch(global_step)`), validates after each epoch on the fixed-mask
validation tiles (masked loss; PSNR/SSIM of the denoised noisy tiles against the clean ones,
data range 255), updates the learning-rate schedule, keeps the weights of the lowest
validation loss, and checkpoints.

Resuming. After every epoch the whole state (weights, Adam state, schedule state, best weights
and loss, history, epoch) is written atomically to `job.checkpoint`. A new run with a matching
checkpoint continues with the next epoch; since batches depend only on (seed, step) and the
checkpoint holds everything else, a killed and resumed CPU run ends with the same weights, bit
for bit, as an uninterrupted one (same thread count). The checkpoint matches when framework,
arch and a hash of the `train` settings (minus `epochs` and `device`), seed, patch size and the
training data statistics agree; otherwise the run starts over with a logged warning, because a
changed configuration makes Snakemake rerun the job on purpose. `epochs` is left out of the
hash so that an unfinished run can be given more epochs; `device` so that it can move to
another machine. A checkpoint from beyond the configured number of epochs is also discarded.
When the outputs have been written the checkpoint is deleted: it is resume state, not a
result, and a stale complete checkpoint would otherwise short-circuit a deliberate rerun
(e.g. after a code change).

SIGTERM stops the run at the next step boundary without saving the unfinished epoch and
raises `TrainingInterruptedError` (non-zero exit); the last complete epoch's checkpoint is
the resume point. A non-finite training loss raises `TrainingDivergedError` at once, also
leaving the last good checkpoint.

History columns are those of docs/architecture.md: `epoch_time_s` is the synchronised
training part of the epoch, `patches_per_s` its throughput, `wall_time_s` the sum over epochs
of training + validation time (time lost to interruptions is not counted).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.metadata
import json
import logging
import math
import shutil
import signal
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from n2v_repro.backends.registry import FRAMEWORKS, make_backend
from n2v_repro.config import TrainConfig
from n2v_repro.data.transforms import denormalise, normalise
from n2v_repro.errors import UserError
from n2v_repro.evaluation.metrics import psnr, ssim
from n2v_repro.io.atomic import atomic_path, save_npz, write_json
from n2v_repro.io.formats import (
    arrays_under,
    load_npz,
    load_weights,
    read_monitor,
    save_weights,
    write_history,
)
from n2v_repro.machine import machine_name
from n2v_repro.models.card import MODEL_JSON, ModelCard, write_model_card
from n2v_repro.throughput import patch_rates
from n2v_repro.training.monitor import ResourceMonitor
from n2v_repro.training.progress import JobProgress, format_duration
from n2v_repro.training.sampler import (
    PatchSampler,
    PrefetchingSampler,
    TrainingData,
    ValidationSet,
    load_training_data,
    load_validation,
)
from n2v_repro.training.schedules import LRSchedule, make_schedule

logger = logging.getLogger(__name__)

# Keys of config["train"] that may change without invalidating a checkpoint (module docstring).
RESUMABLE_KEYS = ("epochs", "device")
# Within an epoch, a progress line at most this often.
PROGRESS_INTERVAL_S = 30.0
# Training losses are read back from the device (a host-device sync) every this many steps.
LOSS_READ_STEPS = 50
CHECKPOINT_FORMAT = 1


class TrainingDivergedError(UserError, RuntimeError):
    """The training loss became NaN or infinite."""


class TrainingInterruptedError(UserError, RuntimeError):
    """SIGTERM arrived; the last complete epoch's checkpoint is the resume point."""


@dataclass(frozen=True)
class TrainJob:
    """Everything one training run needs.

    framework : "torch" or "jittor".
    patch_dir : folder with train.npy, train_index.csv, train_stats.json, valid_tiles.npz.
    init_weights : framework-neutral initial weights (.npz).
    out_dir : receives last.npz, best.npz, history.csv, monitor.csv, train_summary.json and
        model.json (arch and normalisation, for `python -m n2v_repro.denoise`).
    checkpoint : resume state, written after every epoch, deleted after success.
    train : the `train` settings.
    patch_size : config["data"]["patch_size"].
    seed : the training seed (one of config["seeds"]); batches and the validation mask derive
        from it.
    threads : CPU threads for the framework; None leaves the framework's default.
    """

    framework: str
    patch_dir: Path
    init_weights: Path
    out_dir: Path
    checkpoint: Path
    train: TrainConfig
    patch_size: int
    seed: int
    threads: int | None = None

    @property
    def partial_monitor(self) -> Path:
        """The monitor CSV of the run so far, beside the checkpoint, appended across resumes."""
        return self.checkpoint.with_name("monitor.partial.csv")


@dataclass
class TrainState:
    """What a checkpoint holds: enough to continue exactly after `epochs_done` epochs."""

    epochs_done: int
    weights: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray]
    schedule: dict[str, float]
    best_weights: dict[str, np.ndarray]
    best_loss: float = math.inf
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def wall_time_s(self) -> float:
        return self.history[-1]["wall_time_s"] if self.history else 0.0


# --- checkpoint -----------------------------------------------------------------------------


def fingerprint(job: TrainJob, data: TrainingData) -> str:
    """Hash of every setting that decides the training trajectory (module docstring)."""
    # A cosine schedule is laid out over `epochs`: more epochs would change the rates taken.
    resumable = RESUMABLE_KEYS if job.train.schedule.kind != "cosine" else ("device",)
    settings = {
        "framework": job.framework,
        "train": {k: v for k, v in dataclasses.asdict(job.train).items() if k not in resumable},
        "seed": job.seed,
        "patch_size": job.patch_size,
        "data_mean": data.mean,
        "data_std": data.std,
        "format": CHECKPOINT_FORMAT,
    }
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def save_checkpoint(path: Path, state: TrainState, job: TrainJob, run_hash: str) -> None:
    meta = {
        "framework": job.framework,
        "arch": job.train.arch,
        "fingerprint": run_hash,
        "epochs_done": state.epochs_done,
        "schedule": state.schedule,
        "best_loss": state.best_loss,
        "history": state.history,
    }
    arrays = {"meta": np.array(json.dumps(meta))}
    for prefix, group in (
        ("weights", state.weights),
        ("optimizer", state.optimizer),
        ("best", state.best_weights),
    ):
        arrays.update({f"{prefix}/{name}": value for name, value in group.items()})
    save_npz(path, arrays)


def load_checkpoint(path: Path) -> tuple[dict[str, Any], TrainState]:
    """(meta, state) of a checkpoint written by `save_checkpoint`."""
    arrays = load_npz(path)
    meta = json.loads(str(arrays["meta"]))
    state = TrainState(
        epochs_done=int(meta["epochs_done"]),
        weights=arrays_under(arrays, "weights"),
        optimizer=arrays_under(arrays, "optimizer"),
        schedule=meta["schedule"],
        best_weights=arrays_under(arrays, "best"),
        best_loss=float(meta["best_loss"]),
        history=meta["history"],
    )
    return meta, state


def _resume_state(job: TrainJob, run_hash: str) -> TrainState | None:
    """Return the checkpoint's state if it belongs to this run, else None (logging why)."""
    if not job.checkpoint.exists():
        return None
    try:
        meta, state = load_checkpoint(job.checkpoint)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise RuntimeError(
            f"checkpoint {job.checkpoint} is unreadable ({error}); delete it to start over"
        ) from error
    expected = {"framework": job.framework, "arch": job.train.arch, "fingerprint": run_hash}
    differs = [key for key, value in expected.items() if meta.get(key) != value]
    if differs:
        logger.warning(
            "checkpoint %s was made with another %s; starting over",
            job.checkpoint,
            "/".join(differs),
        )
        return None
    if state.epochs_done > job.train.epochs:
        logger.warning(
            "checkpoint %s is at epoch %d, beyond the configured %d epochs; starting over",
            job.checkpoint,
            state.epochs_done,
            job.train.epochs,
        )
        return None
    return state


# --- signals --------------------------------------------------------------------------------


class _StopFlag:
    def __init__(self) -> None:
        self.signal: int | None = None

    def check(self, epoch: int) -> None:
        if self.signal is not None:
            raise TrainingInterruptedError(
                f"stopped by signal {signal.Signals(self.signal).name} during epoch {epoch}; "
                f"rerun to resume from the last complete epoch's checkpoint"
            )


@contextlib.contextmanager
def _sigterm_stops_at_step_boundary() -> Iterator[_StopFlag]:
    """Turn SIGTERM into a flag the loop checks between steps, so nothing is left half-done."""
    flag = _StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signal handlers can only be installed from the main thread
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        del frame
        logger.warning("received %s: stopping at the next step", signal.Signals(signum).name)
        flag.signal = signum

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- validation -----------------------------------------------------------------------------


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
    backend: Any, valid: ValidationSet, data: TrainingData, batch_size: int
) -> dict[str, float]:
    """Validate the final weights on every validation tile (train_summary.json)."""
    start = time.perf_counter()
    loss, psnr_db, ssim_value = validate(backend, valid, data.mean, data.std, batch_size)
    return {
        "weights": "last",
        "tiles": len(valid),
        "loss": loss,
        "psnr": psnr_db,
        "ssim": ssim_value,
        "time_s": time.perf_counter() - start,
    }


def throughput(history: list[dict[str, float]], batch_size: int, steps: int) -> dict[str, Any]:
    """Total patches, and `throughput.patch_rates` over the epochs of `history`."""
    times = np.array([row["epoch_time_s"] for row in history], float)
    patches = np.full(times.shape, float(steps * batch_size))
    return {"patches": int(patches.sum()), **patch_rates(patches, times)}


# --- outputs --------------------------------------------------------------------------------


def _last_monitor_time(path: Path) -> float:
    """Largest time_s in an existing monitor CSV (0 when absent), to continue its clock."""
    if not path.exists() or path.stat().st_size == 0:
        return 0.0
    return _column_max(read_monitor(path)["time_s"]) or 0.0


def _monitor_peaks(path: Path) -> dict[str, float | None]:
    """Peaks over the whole monitor CSV, all resumed parts included."""
    columns = read_monitor(path)
    return {
        "peak_rss_mib": _column_max(columns["rss_mib"]),
        "peak_gpu_mem_mib": _column_max(columns["gpu_mem_mib"]),
        "peak_framework_mem_mib": _column_max(columns["framework_mem_mib"]),
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
            "framework_version": _framework_version(job.framework),
            "arch": job.train.arch,
            "seed": job.seed,
            "train_set": job.train.train_set,
            "validation": job.train.validation.scheme,
            "init": job.train.init,
            "device": backend.device,
            "machine": machine_name(),
            "precision": backend.precision,
            "speed_levers": list(backend.speed_levers),
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
            **_monitor_peaks(job.partial_monitor),
        },
    )


# --- the loop -------------------------------------------------------------------------------


def _start_or_resume(
    job: TrainJob, run_hash: str, backend: Any, schedule: LRSchedule
) -> TrainState:
    """Put the backend and schedule in the checkpoint's state, or in the initial one."""
    state = _resume_state(job, run_hash)
    if state is not None:
        backend.load_weights(state.weights)
        backend.load_optimizer_state(state.optimizer)
        schedule.load_state(state.schedule)
        logger.info("resuming from %s after epoch %d", job.checkpoint, state.epochs_done)
        return state
    init = load_weights(job.init_weights)
    backend.load_weights(init)
    # A fresh start must not append to the monitor file of a discarded run.
    job.partial_monitor.unlink(missing_ok=True)
    return TrainState(0, backend.get_weights(), backend.optimizer_state(), schedule.state(), init)


def check_finite_losses(
    losses: np.ndarray,
    epoch: int,
    first_step: int,
    steps: int,
    lr: float,
    checkpoint: Path | None = None,
) -> None:
    """Raise TrainingDivergedError naming the first non-finite loss of a read.

    `first_step` is the step within `epoch` (0-based) of `losses[0]`; `checkpoint`, when the
    run keeps one, is named as the resume point.
    """
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        step_in_epoch = first_step + int(bad[0])
        message = (
            f"training loss {losses[bad[0]]} at epoch {epoch + 1}, step {step_in_epoch + 1} "
            f"(global step {epoch * steps + step_in_epoch}); lr {lr:g}"
        )
        if checkpoint is not None:
            message += (
                f". Nothing of this epoch is saved; the checkpoint {checkpoint} holds the last "
                "good epoch"
            )
        raise TrainingDivergedError(message)


def _log_estimate(progress: JobProgress, validations_left: int) -> None:
    """Log, once, how long the whole job will take at the rate measured so far."""
    eta = progress.eta_s(validations_left)
    rate = progress.patches_per_s()
    if eta is None or rate is None:
        return
    steps_left = progress.total_steps - progress.done_steps
    logger.info(
        "estimated time to the end of this job: %s (%d steps x %d patches left at %.1f "
        "patches/s, measured over the first %s; validation time from the first epoch on)",
        format_duration(eta),
        steps_left,
        progress.batch_size,
        rate,
        format_duration(PROGRESS_INTERVAL_S),
    )


def train(job: TrainJob) -> TrainState:
    """Train, or resume, one model; write its outputs to `job.out_dir`; return the final state."""
    if job.framework not in FRAMEWORKS:
        raise ValueError(f"framework must be one of {FRAMEWORKS}, got {job.framework!r}")
    cfg = job.train
    epochs, steps, batch_size = cfg.epochs, cfg.steps_per_epoch, cfg.batch_size
    data = load_training_data(job.patch_dir)
    sampler = PatchSampler(data, job.patch_size, batch_size, cfg.augment, cfg.masking, job.seed)
    valid = load_validation(
        job.patch_dir / "valid_tiles.npz",
        data.mean,
        data.std,
        cfg.masking,
        job.seed,
        limit=cfg.valid_tiles,
    )
    # The same tiles after every epoch keep the curve comparable; the whole set at the end.
    epoch_valid = valid.spread(cfg.valid_epoch_tiles)
    backend = make_backend(
        job.framework, cfg.arch, device=cfg.device, threads=job.threads, precision=cfg.precision
    )
    opt = cfg.optimizer
    backend.configure_optimizer(opt.lr, opt.betas, opt.eps, opt.semantics)
    schedule = make_schedule(cfg.schedule, opt.lr, cfg.epochs)

    run_hash = fingerprint(job, data)
    state = _start_or_resume(job, run_hash, backend, schedule)
    resumed_from = state.epochs_done
    logger.info(
        "%s %s on %s (%s): %d epochs x %d steps x batch %d = %d patches; %d of %d validation "
        "tiles after each epoch, all at the end",
        job.framework,
        cfg.arch,
        backend.device,
        backend.precision,
        epochs,
        steps,
        batch_size,
        epochs * steps * batch_size,
        len(epoch_valid),
        len(valid),
    )
    progress = JobProgress(epochs * steps, state.epochs_done * steps, batch_size)
    estimated = False

    monitor = ResourceMonitor(
        job.partial_monitor,
        device=backend.device,
        # The framework counter is read from the monitor's thread: only on GPU, where it exists.
        framework_memory=backend.peak_memory_mib if backend.device == "cuda" else None,
        time_offset_s=_last_monitor_time(job.partial_monitor),
        append=job.partial_monitor.exists(),
    )
    # Batches are made ahead in a thread, identical to sampler.batch(step), so sampling
    # overlaps the framework's compute.
    batches = PrefetchingSampler(
        sampler, start_step=state.epochs_done * steps, stop_step=epochs * steps
    )
    with monitor, batches, _sigterm_stops_at_step_boundary() as stop:
        for epoch in range(state.epochs_done, epochs):
            lr = schedule.lr
            backend.set_lr(lr)
            epoch_start = time.perf_counter()
            progress.start_epoch()
            progress_time = epoch_start
            losses: list[float] = []
            for step_in_epoch in range(steps):
                global_step = epoch * steps + step_in_epoch
                batch = batches.batch(global_step)
                backend.queue_train_step(batch.inputs, batch.targets, batch.masked)
                progress.step_done()
                stop.check(epoch + 1)
                now = time.perf_counter()
                due = now - progress_time >= PROGRESS_INTERVAL_S
                if due or (step_in_epoch + 1) % LOSS_READ_STEPS == 0 or step_in_epoch + 1 == steps:
                    # The only host-device sync of the epoch's steps: a NaN is caught within
                    # LOSS_READ_STEPS steps, named by its own step.
                    read = backend.read_losses()
                    first = step_in_epoch + 1 - len(read)
                    check_finite_losses(read, epoch, first, steps, lr, job.checkpoint)
                    losses.extend(read.tolist())
                if due:
                    progress_time = now
                    logger.info(
                        "epoch %d/%d step %d/%d loss %.5f: %s",
                        epoch + 1,
                        epochs,
                        step_in_epoch + 1,
                        steps,
                        losses[-1],
                        progress.describe(epochs - epoch),
                    )
                    if not estimated:
                        estimated = True
                        _log_estimate(progress, epochs - epoch)
            # Left to right, as the losses came: the same float sum as adding them step by step.
            loss_sum = sum(losses)
            backend.synchronize()
            train_time = time.perf_counter() - epoch_start
            progress.end_epoch_training(train_time)

            valid_start = time.perf_counter()
            valid_loss, valid_psnr, valid_ssim = validate(
                backend, epoch_valid, data.mean, data.std, batch_size
            )
            valid_time = time.perf_counter() - valid_start
            stop.check(epoch + 1)
            schedule.end_epoch(valid_loss)
            weights = backend.get_weights()
            if valid_loss < state.best_loss:
                state.best_loss, state.best_weights = valid_loss, weights
            previous_wall_s = state.wall_time_s
            row = {
                "epoch": epoch + 1,
                "lr": lr,
                "train_loss": float(loss_sum / steps),
                "valid_loss": float(valid_loss),
                "valid_psnr": float(valid_psnr),
                "valid_ssim": float(valid_ssim),
                "epoch_time_s": train_time,
                "patches_per_s": steps * batch_size / train_time,
                "valid_time_s": valid_time,
                "checkpoint_time_s": 0.0,
                "wall_time_s": previous_wall_s + time.perf_counter() - epoch_start,
            }
            state.history.append(row)
            state.epochs_done = epoch + 1
            state.weights = weights
            state.optimizer = backend.optimizer_state()
            state.schedule = schedule.state()
            checkpoint_start = time.perf_counter()
            save_checkpoint(job.checkpoint, state, job, run_hash)
            now = time.perf_counter()
            # Known only after the write: this checkpoint holds 0 for its own write, which the
            # next checkpoint and history.csv (written from memory) hold in full.
            row["checkpoint_time_s"] = now - checkpoint_start
            row["wall_time_s"] = previous_wall_s + now - epoch_start
            progress.end_epoch_extra(now - valid_start)
            logger.info(
                "epoch %d/%d lr %.3g train_loss %.5f valid_loss %.5f psnr %.2f ssim %.4f; "
                "%.1f s training (%.1f patches/s), %.2f s validation, %.2f s checkpoint; %s",
                epoch + 1,
                epochs,
                lr,
                row["train_loss"],
                valid_loss,
                valid_psnr,
                valid_ssim,
                train_time,
                row["patches_per_s"],
                valid_time,
                row["checkpoint_time_s"],
                progress.describe(epochs - epoch - 1),
            )

    final_validation = validate_all(backend, valid, data, batch_size)
    write_outputs(job, backend, state, resumed_from, data, final_validation, len(epoch_valid))
    job.checkpoint.unlink(missing_ok=True)
    job.partial_monitor.unlink(missing_ok=True)
    logger.info("done: %s", job.out_dir)
    return state
