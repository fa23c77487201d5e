"""Progress of one training job: throughput, time per epoch outside training, and the ETA.

The estimate uses only what this process measured: the training rate over its own steps
(steps of an earlier, interrupted process are not timed here) and the mean validation +
checkpoint time of the epochs it finished. Before the first epoch ends the per-epoch extra
time is unknown and counted as zero, which the first line says.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

# Within an epoch, a progress line at most this often.
PROGRESS_INTERVAL_S = 30.0


def format_duration(seconds: float) -> str:
    """Return e.g. '2 h 05 min', '7 min 30 s' or '42 s'."""
    seconds = max(0.0, float(seconds))
    if seconds >= 3600:
        hours, rest = divmod(round(seconds / 60), 60)
        return f"{hours} h {rest:02d} min"
    if seconds >= 60:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest:02d} s"
    return f"{seconds:.0f} s"


@dataclass
class JobProgress:
    """Steps and time of a training job, for the progress lines and the ETA.

    total_steps : epochs x steps per epoch of the whole job.
    done_steps : steps already done when this process started (a resumed run).
    batch_size : patches per step.
    """

    total_steps: int
    done_steps: int
    batch_size: int
    clock: Callable[[], float] = time.perf_counter
    train_s: float = 0.0
    steps_timed: int = 0
    extra_s: list[float] = field(default_factory=list)
    interval_s: float = PROGRESS_INTERVAL_S
    _epoch_start: float | None = None
    _epoch_steps: int = 0
    _last_line: float = 0.0
    _estimated: bool = False

    def start_epoch(self) -> None:
        self._epoch_start, self._epoch_steps = self.clock(), 0
        self._last_line = self._epoch_start

    def step_done(self) -> None:
        self._epoch_steps += 1
        self.done_steps += 1

    def end_epoch_training(self, train_time_s: float) -> None:
        """Close the epoch's training part (its synchronised time)."""
        self.train_s += train_time_s
        self.steps_timed += self._epoch_steps
        self._epoch_start, self._epoch_steps = None, 0

    def end_epoch_extra(self, extra_s: float) -> None:
        """Time of the epoch outside training (validation, checkpoint)."""
        self.extra_s.append(extra_s)

    def patches_per_s(self) -> float | None:
        """Training throughput of this process so far, the running epoch included."""
        seconds, steps = self.train_s, self.steps_timed
        if self._epoch_start is not None:
            seconds += self.clock() - self._epoch_start
            steps += self._epoch_steps
        if steps == 0 or seconds <= 0:
            return None
        return steps * self.batch_size / seconds

    def eta_s(self, validations_left: int) -> float | None:
        """Seconds until the job's last epoch is validated and saved.

        `validations_left`: epoch ends (validation + checkpoint) still to come.
        """
        rate = self.patches_per_s()
        if rate is None:
            return None
        steps_left = self.total_steps - self.done_steps
        extra = sum(self.extra_s) / len(self.extra_s) if self.extra_s else 0.0
        return steps_left * self.batch_size / rate + extra * validations_left

    def describe(self, validations_left: int) -> str:
        """'312.4 patches/s, job 41% done, ETA 12 min 05 s' (or 'measuring' at the start)."""
        rate, eta = self.patches_per_s(), self.eta_s(validations_left)
        done = 100.0 * self.done_steps / self.total_steps if self.total_steps else 100.0
        if rate is None or eta is None:
            return f"job {done:.0f}% done, measuring the rate"
        return f"{rate:.1f} patches/s, job {done:.0f}% done, ETA {format_duration(eta)}"

    def line_due(self) -> bool:
        """Whether `interval_s` has passed since the epoch began or since the last line."""
        return self.clock() - self._last_line >= self.interval_s

    def log_step(self, epoch: int, epochs: int, step: int, steps: int, loss: float) -> None:
        """Log a progress line for 0-based `epoch` and `step`; the job's estimate, once."""
        self._last_line = self.clock()
        logger.info(
            "epoch %d/%d step %d/%d loss %.5f: %s",
            epoch + 1,
            epochs,
            step + 1,
            steps,
            loss,
            self.describe(epochs - epoch),
        )
        if not self._estimated:
            self._estimated = True
            self._log_estimate(epochs - epoch)

    def _log_estimate(self, validations_left: int) -> None:
        eta, rate = self.eta_s(validations_left), self.patches_per_s()
        if eta is None or rate is None:
            return
        logger.info(
            "estimated time to the end of this job: %s (%d steps x %d patches left at %.1f "
            "patches/s, measured over the first %s; validation time from the first epoch on)",
            format_duration(eta),
            self.total_steps - self.done_steps,
            self.batch_size,
            rate,
            format_duration(self.interval_s),
        )

    def log_epoch(self, row: Mapping[str, float], epochs: int) -> None:
        """Log the line of an epoch's history row, and the job's progress after it."""
        logger.info(
            "epoch %d/%d lr %.3g train_loss %.5f valid_loss %.5f psnr %.2f ssim %.4f; "
            "%.1f s training (%.1f patches/s), %.2f s validation, %.2f s checkpoint; %s",
            row["epoch"],
            epochs,
            row["lr"],
            row["train_loss"],
            row["valid_loss"],
            row["valid_psnr"],
            row["valid_ssim"],
            row["epoch_time_s"],
            row["patches_per_s"],
            row["valid_time_s"],
            row["checkpoint_time_s"],
            self.describe(epochs - int(row["epoch"])),
        )
