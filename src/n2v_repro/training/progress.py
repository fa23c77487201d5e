"""Progress of one training job: throughput, time per epoch outside training, and the ETA.

The estimate uses only what this process measured: the training rate over its own steps
(steps of an earlier, interrupted process are not timed here) and the mean validation +
checkpoint time of the epochs it finished. Before the first epoch ends the per-epoch extra
time is unknown and counted as zero, which the first line says.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


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
    _epoch_start: float | None = None
    _epoch_steps: int = 0

    def start_epoch(self) -> None:
        self._epoch_start, self._epoch_steps = self.clock(), 0

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
