"""The training checkpoint: what it holds, when it belongs to a run, and resuming from it.

After every epoch the whole state (weights, Adam state, best weights and loss, history,
epoch) is written atomically. A new run with a matching checkpoint continues with the next
epoch; since batches depend only on (seed, step), the learning rate only on the history, and
the checkpoint holds everything else, a killed and resumed CPU run ends with the same
weights, bit for bit, as an uninterrupted one (same thread count). The checkpoint matches
when framework, arch and a hash of the `train` settings (minus `epochs` and `device`), seed,
patch size and the training data statistics agree; otherwise the run starts over with a
logged warning, because a changed configuration makes Snakemake rerun the job on purpose.
`epochs` is left out of the hash so that an unfinished run can be given more epochs (not
under the cosine schedule, which is laid out over `epochs`); `device` so that it can move to
another machine. A checkpoint from beyond the configured number of epochs is also discarded.

The last two checkpoints are kept (`checkpoint.npz` and `checkpoint.prev.npz`). One that
cannot be read, or whose weights do not fit the model or are not finite float32, is moved
aside (`<name>.bad-<n>`, kept for inspection), named in the log, and the run resumes from the
previous one, or from epoch 1 when neither is usable; either way it ends as an uninterrupted
run would.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from n2v_repro.backends.base import check_weights
from n2v_repro.io.atomic import save_npz
from n2v_repro.io.formats import arrays_under, check_weight_arrays, load_npz, load_weights
from n2v_repro.training.job import TrainJob
from n2v_repro.training.sampler import TrainingData

logger = logging.getLogger(__name__)

# Keys of config["train"] that may change without invalidating a checkpoint (module docstring).
RESUMABLE_KEYS = ("epochs", "device")
CHECKPOINT_FORMAT = 2
# The checkpoint's groups of network weights (the Adam state is the third).
WEIGHT_GROUPS = ("weights/", "best/")


@dataclass
class TrainState:
    """What a checkpoint holds: enough to continue exactly after `epochs_done` epochs."""

    epochs_done: int
    weights: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray]
    best_weights: dict[str, np.ndarray]
    best_loss: float = math.inf
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def wall_time_s(self) -> float:
        return self.history[-1]["wall_time_s"] if self.history else 0.0

    @property
    def valid_losses(self) -> list[float]:
        return [row["valid_loss"] for row in self.history]

    def add_epoch(
        self, row: dict[str, float], weights: dict[str, np.ndarray], optimizer: dict[str, Any]
    ) -> None:
        """Take in a finished epoch: its history row, weights and Adam state."""
        if row["valid_loss"] < self.best_loss:
            self.best_loss, self.best_weights = row["valid_loss"], weights
        self.history.append(row)
        self.epochs_done = int(row["epoch"])
        self.weights, self.optimizer = weights, optimizer


def fingerprint(job: TrainJob, data: TrainingData) -> str:
    """Hash of every setting that decides the training trajectory (module docstring)."""
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
    if path.exists():
        os.replace(path, previous_checkpoint(path))
    save_npz(path, arrays)


def previous_checkpoint(path: Path) -> Path:
    """Where the checkpoint before `path` is kept: checkpoint.npz -> checkpoint.prev.npz."""
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def remove_checkpoints(path: Path) -> None:
    """Delete a run's checkpoints (its outputs are written); moved-aside ones stay."""
    path.unlink(missing_ok=True)
    previous_checkpoint(path).unlink(missing_ok=True)


def load_checkpoint(path: Path) -> tuple[dict[str, Any], TrainState]:
    """(meta, state) of a checkpoint written by `save_checkpoint`."""
    arrays = load_npz(path)
    check_weight_arrays(path, {k: v for k, v in arrays.items() if k.startswith(WEIGHT_GROUPS)})
    meta = json.loads(str(arrays["meta"]))
    state = TrainState(
        epochs_done=int(meta["epochs_done"]),
        weights=arrays_under(arrays, "weights"),
        optimizer=arrays_under(arrays, "optimizer"),
        best_weights=arrays_under(arrays, "best"),
        best_loss=float(meta["best_loss"]),
        history=meta["history"],
    )
    return meta, state


class UnusableCheckpointError(Exception):
    """A checkpoint that cannot be read or does not fit the model; the message says why."""


def _read_state(path: Path, arch: str) -> tuple[dict[str, Any], TrainState]:
    """(meta, state) of the checkpoint at `path`; UnusableCheckpointError naming what is wrong."""
    if not zipfile.is_zipfile(path):
        raise UnusableCheckpointError("not an .npz archive (truncated or overwritten)")
    try:
        meta, state = load_checkpoint(path)
        for group in (state.weights, state.best_weights):
            check_weights(arch, group)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise UnusableCheckpointError(str(error)) from error
    return meta, state


def _move_aside(path: Path) -> Path:
    number = 1
    while (aside := path.with_name(f"{path.name}.bad-{number}")).exists():
        number += 1
    os.replace(path, aside)
    return aside


def resume_state(job: TrainJob, run_hash: str, path: Path) -> TrainState | None:
    """Return the state of the checkpoint at `path` if it belongs to this run, else None.

    None (logging why) when it belongs to another run; UnusableCheckpointError when it cannot
    be read or does not fit the arch.
    """
    meta, state = _read_state(path, job.train.arch)
    expected = {"framework": job.framework, "arch": job.train.arch, "fingerprint": run_hash}
    differs = [key for key, value in expected.items() if meta.get(key) != value]
    if differs:
        logger.warning(
            "checkpoint %s was made with another %s; starting over", path, "/".join(differs)
        )
        return None
    if state.epochs_done > job.train.epochs:
        logger.warning(
            "checkpoint %s is at epoch %d, beyond the configured %d epochs; starting over",
            path,
            state.epochs_done,
            job.train.epochs,
        )
        return None
    return state


def start_or_resume(job: TrainJob, run_hash: str, backend: Any) -> TrainState:
    """Put the backend in the newest usable checkpoint's state, or in the initial one."""
    newest_first = [job.checkpoint, previous_checkpoint(job.checkpoint)] if job.checkpoint else []
    for path in (path for path in newest_first if path.exists()):
        try:
            state = resume_state(job, run_hash, path)
            if state is None:
                break  # another run's: starting over (logged)
            backend.load_weights(state.weights)
            backend.load_optimizer_state(state.optimizer)
        except (UnusableCheckpointError, ValueError) as error:
            aside = _move_aside(path)
            logger.warning("checkpoint %s is unusable (%s); moved to %s", path, error, aside)
            continue
        logger.info("resuming from %s after epoch %d", path, state.epochs_done)
        return state
    init = load_weights(job.init_weights)
    backend.load_weights(init)
    # A fresh start must not append to the monitor file of a discarded run.
    job.partial_monitor.unlink(missing_ok=True)
    logger.info("starting from epoch 1 with the initial weights %s", job.init_weights)
    return TrainState(0, backend.get_weights(), backend.optimizer_state(), init)
