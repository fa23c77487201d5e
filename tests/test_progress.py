"""The training job's progress lines: throughput, ETA and duration formatting."""

from __future__ import annotations

import pytest

from n2v_repro.training.progress import JobProgress, format_duration


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(42.4, "42 s"), (450, "7 min 30 s"), (7500, "2 h 05 min"), (-3, "0 s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_eta_counts_remaining_steps_and_epoch_ends() -> None:
    clock = FakeClock()
    # 3 epochs x 10 steps x batch 4; resumed after the first epoch
    progress = JobProgress(total_steps=30, done_steps=10, batch_size=4, clock=clock)
    assert progress.patches_per_s() is None
    assert "measuring" in progress.describe(2)

    progress.start_epoch()
    for _ in range(5):
        progress.step_done()
    clock.now = 10.0  # 5 steps x 4 patches in 10 s
    assert progress.patches_per_s() == pytest.approx(2.0)
    # 15 steps left at 0.5 steps/s; no epoch end measured yet
    assert progress.eta_s(2) == pytest.approx(30.0)
    assert "ETA 30 s" in progress.describe(2) and "job 50% done" in progress.describe(2)

    for _ in range(5):
        progress.step_done()
    clock.now = 20.0
    progress.end_epoch_training(20.0)
    progress.end_epoch_extra(4.0)  # validation + checkpoint of that epoch
    # 10 steps left at 0.5 steps/s, plus one more epoch end of 4 s
    assert progress.eta_s(1) == pytest.approx(24.0)


def test_rate_is_total_patches_over_total_time() -> None:
    clock = FakeClock()
    progress = JobProgress(total_steps=20, done_steps=0, batch_size=2, clock=clock)
    for seconds in (10.0, 30.0):  # two epochs of 10 steps, the second three times slower
        progress.start_epoch()
        for _ in range(10):
            progress.step_done()
        progress.end_epoch_training(seconds)
    # 40 patches in 40 s: 1.0, not the mean of the epoch rates (2 and 0.67)
    assert progress.patches_per_s() == pytest.approx(1.0)
    assert progress.eta_s(0) == pytest.approx(0.0)
