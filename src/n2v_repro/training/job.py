"""What one training run is given (`TrainJob`), and how it can end early."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from n2v_repro.config import TrainConfig
from n2v_repro.errors import UserError


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
        model.json (arch and normalisation, for `python -m n2v_repro.cli.denoise`).
    checkpoint : resume state, written after every epoch, deleted after success; None for a
        run that is never resumed (the GPU check).
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
    checkpoint: Path | None
    train: TrainConfig
    patch_size: int
    seed: int
    threads: int | None = None

    @property
    def partial_monitor(self) -> Path:
        """The monitor CSV of the run so far, beside the checkpoint, appended across resumes."""
        folder = self.out_dir if self.checkpoint is None else self.checkpoint.parent
        return folder / "monitor.partial.csv"
