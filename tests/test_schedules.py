"""Learning-rate schedules: the port's step decay, PyTorch's ReduceLROnPlateau, resumability."""

from __future__ import annotations

import math

import pytest

from n2v_repro.config import ScheduleConfig
from n2v_repro.training.schedules import (
    ConstantSchedule,
    PlateauSchedule,
    StepSchedule,
    make_schedule,
    step_lr,
)

# A validation-loss curve that improves, stalls, dips by less than the 1e-4 relative
# threshold, improves again and stalls for long: it exercises every branch of the plateau rule.
LOSSES = [1.0, 0.9, 0.8, 0.8, 0.8, 0.79995, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7]


def run(schedule, losses):
    rates = []
    for loss in losses:
        rates.append(schedule.lr)
        schedule.end_epoch(loss)
    return rates


def test_step_lr_halves_every_step_epochs() -> None:
    assert [step_lr(1e-4, e, 50, 0.5) for e in (0, 49, 50, 99, 100)] == [
        1e-4,
        1e-4,
        5e-5,
        5e-5,
        2.5e-5,
    ]
    with pytest.raises(ValueError):
        step_lr(1e-4, -1, 50, 0.5)


def test_step_schedule_gives_each_epoch_its_step_lr() -> None:
    schedule = StepSchedule(1e-3, step_epochs=3, factor=0.1)
    rates = run(schedule, [0.0] * 7)
    assert rates == [step_lr(1e-3, epoch, 3, 0.1) for epoch in range(7)]
    assert rates[2] == 1e-3 and math.isclose(rates[3], 1e-4) and math.isclose(rates[6], 1e-5)


def test_constant_schedule_never_changes() -> None:
    assert run(ConstantSchedule(3e-4), LOSSES) == [3e-4] * len(LOSSES)


def test_plateau_matches_pytorch_reduce_lr_on_plateau() -> None:
    torch = pytest.importorskip("torch")
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=4e-4)
    reference = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=0.5, patience=2
    )
    expected = []
    for loss in LOSSES:
        expected.append(optimizer.param_groups[0]["lr"])
        reference.step(loss)
    rates = run(PlateauSchedule(4e-4, patience=2, factor=0.5), LOSSES)
    assert rates == expected
    assert min(rates) < 4e-4 / 2  # the curve above cuts the rate at least twice


def test_plateau_cuts_after_more_than_patience_bad_epochs() -> None:
    schedule = PlateauSchedule(1.0, patience=2, factor=0.5)
    rates = run(schedule, [1.0, 1.0, 1.0, 1.0, 1.0])
    # epoch 1 sets the best; epochs 2, 3, 4 are bad, the third bad one (> patience) cuts.
    assert rates == [1.0, 1.0, 1.0, 1.0, 0.5]


@pytest.mark.parametrize(
    "cfg",
    [
        {"kind": "step", "step_epochs": 2, "factor": 0.5, "patience": 1},
        {"kind": "plateau", "step_epochs": 2, "factor": 0.5, "patience": 1},
        {"kind": "constant", "step_epochs": 2, "factor": 0.5, "patience": 1},
        {"kind": "cosine", "step_epochs": 2, "factor": 0.5, "patience": 1},
    ],
)
def test_state_round_trip_continues_identically(cfg) -> None:
    """A schedule rebuilt from a mid-run state takes the same decisions as the original."""
    cfg = ScheduleConfig(**cfg)
    uninterrupted = make_schedule(cfg, 1e-3, len(LOSSES))
    expected = run(uninterrupted, LOSSES)
    first = make_schedule(cfg, 1e-3, len(LOSSES))
    head = run(first, LOSSES[:7])
    resumed = make_schedule(cfg, 1e-3, len(LOSSES))
    resumed.load_state(dict(first.state()))
    assert head + run(resumed, LOSSES[7:]) == expected


def test_make_schedule_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="cosine"):
        make_schedule(ScheduleConfig("exponential", 1, 0.5, 1), 1e-3, 10)


def test_cosine_falls_from_the_initial_rate_to_zero_over_the_epochs() -> None:
    schedule = make_schedule(ScheduleConfig("cosine", 1, 0.5, 1), 4e-4, 4)
    rates = []
    for _ in range(4):
        rates.append(schedule.lr)
        schedule.end_epoch(1.0)  # the validation loss plays no part
    assert rates == pytest.approx([4e-4, 4e-4 * (1 + 2**-0.5) / 2, 2e-4, 4e-4 * (1 - 2**-0.5) / 2])
    assert schedule.lr == pytest.approx(0.0, abs=1e-20)
