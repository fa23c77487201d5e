"""The training loop, written once over the backend interface (both frameworks, every method).

`train(job)` runs `epochs` epochs of `steps_per_epoch` Adam steps on seeded batches
(`sampler.PatchSampler.batch(global_step)`), validates after each epoch on the fixed-mask
validation tiles (masked loss; PSNR/SSIM of the denoised noisy tiles against the clean ones,
data range 255), sets the next epoch's learning rate (`schedules.epoch_lr`), keeps the
weights of the lowest validation loss and checkpoints (`checkpoint`: what resumes, and when).
When the outputs (`outputs`) have been written the checkpoint is deleted: it is resume state,
not a result, and a stale complete checkpoint would otherwise short-circuit a deliberate
rerun (e.g. after a code change). With `budget_s` the run also ends before an epoch that
would, at the mean epoch time so far, end past the budget (the GPU check's timed training).

SIGTERM stops the run at the next step boundary without saving the unfinished epoch and
raises `TrainingInterruptedError` (non-zero exit); the last complete epoch's checkpoint is
the resume point. A non-finite training loss raises `TrainingDivergedError` at once, also
leaving the last good checkpoint.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from n2v_repro.backends.registry import FRAMEWORKS, make_backend
from n2v_repro.training.checkpoint import (
    TrainState,
    fingerprint,
    remove_checkpoints,
    save_checkpoint,
    start_or_resume,
)
from n2v_repro.training.job import TrainingDivergedError, TrainJob
from n2v_repro.training.monitor import ResourceMonitor
from n2v_repro.training.outputs import last_monitor_time, write_outputs
from n2v_repro.training.progress import JobProgress
from n2v_repro.training.sampler import (
    PatchSampler,
    PrefetchingSampler,
    load_training_data,
    load_validation,
)
from n2v_repro.training.schedules import epoch_lr
from n2v_repro.training.stop import StopFlag, sigterm_stops_at_step_boundary
from n2v_repro.training.validation import validate, validate_all

logger = logging.getLogger(__name__)

# Training losses are read back from the device (a host-device sync) every this many steps.
LOSS_READ_STEPS = 50


@dataclass
class TrainRun:
    """A finished run: its final state and the backend holding the last weights."""

    state: TrainState
    backend: Any


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


def train_epoch(
    backend: Any,
    batches: PrefetchingSampler,
    job: TrainJob,
    epoch: int,
    lr: float,
    stop: StopFlag,
    progress: JobProgress,
) -> float:
    """Take one epoch's steps (0-based `epoch`); return the sum of their losses."""
    steps, epochs = job.train.steps_per_epoch, job.train.epochs
    losses: list[float] = []
    for step in range(steps):
        batch = batches.batch(epoch * steps + step)
        backend.queue_train_step(batch.inputs, batch.targets, batch.masked)
        progress.step_done()
        stop.check(epoch + 1)
        line_due = progress.line_due()
        if line_due or (step + 1) % LOSS_READ_STEPS == 0 or step + 1 == steps:
            # The only host-device sync of the epoch's steps: a NaN is caught within
            # LOSS_READ_STEPS steps, named by its own step.
            read = backend.read_losses()
            check_finite_losses(read, epoch, step + 1 - len(read), steps, lr, job.checkpoint)
            losses.extend(read.tolist())
        if line_due:
            progress.log_step(epoch, epochs, step, steps, losses[-1])
    # Left to right, as the losses came: the same float sum as adding them step by step.
    return sum(losses)


def _fits_budget(state: TrainState, resumed_from: int, budget_s: float | None) -> bool:
    """Whether another epoch, at this run's mean epoch time, ends within `budget_s`."""
    epochs_here = state.epochs_done - resumed_from
    if budget_s is None or epochs_here == 0:
        return True
    return state.wall_time_s * (1 + 1 / epochs_here) <= budget_s


def _log_plan(job: TrainJob, backend: Any, epoch_tiles: int, tiles: int) -> None:
    cfg = job.train
    logger.info(
        "%s %s %s on %s (%s): %d epochs x %d steps x batch %d = %d patches; %d of %d validation "
        "tiles after each epoch, all at the end",
        job.framework, cfg.method, cfg.arch, backend.device, backend.precision, cfg.epochs,
        cfg.steps_per_epoch, cfg.batch_size, cfg.epochs * cfg.steps_per_epoch * cfg.batch_size,
        epoch_tiles, tiles,
    )  # fmt: skip


def _job_monitor(job: TrainJob, backend: Any) -> ResourceMonitor:
    """Make the run's resource monitor, continuing the monitor CSV of a resumed run."""
    return ResourceMonitor(
        job.partial_monitor,
        device=backend.device,
        # The framework counter is read from the monitor's thread: only on GPU, where it exists.
        framework_memory=backend.peak_memory_mib if backend.device == "cuda" else None,
        time_offset_s=last_monitor_time(job.partial_monitor),
        append=job.partial_monitor.exists(),
    )


def train(job: TrainJob, budget_s: float | None = None) -> TrainRun:
    """Train, or resume, one model; write its outputs to `job.out_dir` (module docstring)."""
    if job.framework not in FRAMEWORKS:
        raise ValueError(f"framework must be one of {FRAMEWORKS}, got {job.framework!r}")
    cfg = job.train
    epochs, steps, batch_size = cfg.epochs, cfg.steps_per_epoch, cfg.batch_size
    data = load_training_data(job.patch_dir, cfg.target)
    sampler = PatchSampler(
        data, job.patch_size, batch_size, cfg.augment, cfg.masking, job.seed, cfg.method
    )
    valid = load_validation(
        job.patch_dir / "valid_tiles.npz", data.mean, data.std, cfg.masking, job.seed,
        limit=cfg.valid_tiles, method=cfg.method,
    )  # fmt: skip
    # The same tiles after every epoch keep the curve comparable; the whole set at the end.
    epoch_valid = valid.spread(cfg.valid_epoch_tiles)
    backend = make_backend(job.framework, cfg.arch, cfg.device, job.threads, cfg.precision)
    backend.configure_optimizer(cfg.optimizer)
    run_hash = fingerprint(job, data)
    state = start_or_resume(job, run_hash, backend)
    resumed_from = state.epochs_done
    _log_plan(job, backend, len(epoch_valid), len(valid))
    progress = JobProgress(epochs * steps, state.epochs_done * steps, batch_size)
    monitor = _job_monitor(job, backend)
    # Batches are made ahead in a thread, identical to sampler.batch(step), so sampling
    # overlaps the framework's compute.
    batches = PrefetchingSampler(sampler, state.epochs_done * steps, epochs * steps)
    with monitor, batches, sigterm_stops_at_step_boundary() as stop:
        for epoch in range(state.epochs_done, epochs):
            if not _fits_budget(state, resumed_from, budget_s):
                logger.info(
                    "stopping after epoch %d: the next would end past %.0f s", epoch, budget_s
                )
                break
            lr = epoch_lr(cfg.schedule, cfg.optimizer.lr, epochs, state.valid_losses)
            backend.set_lr(lr)
            epoch_start = time.perf_counter()
            progress.start_epoch()
            loss_sum = train_epoch(backend, batches, job, epoch, lr, stop, progress)
            backend.synchronize()
            train_time = time.perf_counter() - epoch_start
            progress.end_epoch_training(train_time)
            valid_start = time.perf_counter()
            valid_loss, valid_psnr, valid_ssim = validate(
                backend, epoch_valid, data.mean, data.std, batch_size
            )
            valid_time = time.perf_counter() - valid_start
            stop.check(epoch + 1)
            row = {
                "epoch": epoch + 1, "lr": lr, "train_loss": float(loss_sum / steps),
                "valid_loss": float(valid_loss), "valid_psnr": float(valid_psnr),
                "valid_ssim": float(valid_ssim), "epoch_time_s": train_time,
                "patches_per_s": steps * batch_size / train_time, "valid_time_s": valid_time,
                "checkpoint_time_s": 0.0,
            }  # fmt: skip
            previous_wall_s = state.wall_time_s
            row["wall_time_s"] = previous_wall_s + time.perf_counter() - epoch_start
            state.add_epoch(row, backend.get_weights(), backend.optimizer_state())
            if job.checkpoint is not None:
                checkpoint_start = time.perf_counter()
                save_checkpoint(job.checkpoint, state, job, run_hash)
                # Known only after the write: this checkpoint holds 0 for its own write, which
                # the next checkpoint and history.csv (written from memory) hold in full.
                row["checkpoint_time_s"] = time.perf_counter() - checkpoint_start
            now = time.perf_counter()
            row["wall_time_s"] = previous_wall_s + now - epoch_start
            progress.end_epoch_extra(now - valid_start)
            progress.log_epoch(row, epochs)

    final_validation = validate_all(backend, valid, data.mean, data.std, batch_size)
    write_outputs(job, backend, state, resumed_from, data, final_validation, len(epoch_valid))
    if job.checkpoint is not None:
        remove_checkpoints(job.checkpoint)
    job.partial_monitor.unlink(missing_ok=True)
    logger.info("done: %s", job.out_dir)
    return TrainRun(state, backend)
