"""Learning-rate schedules: the port's step decay, PyTorch's ReduceLROnPlateau, the cosine."""

from __future__ import annotations

import math

import pytest

from n2v_repro.config import ScheduleConfig
from n2v_repro.training.schedules import epoch_lr, plateau_lr, step_lr

# A validation-loss curve that improves, stalls, dips by less than the 1e-4 relative
# threshold, improves again and stalls for long: it exercises every branch of the plateau rule.
LOSSES = [1.0, 0.9, 0.8, 0.8, 0.8, 0.79995, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7]


def rates(kind: str, losses: list[float], initial_lr: float = 1e-3, **keys: float) -> list[float]:
    """The rate of each epoch of a run of len(losses) epochs with these validation losses."""
    cfg = ScheduleConfig(
        kind, int(keys.get("step_epochs", 2)), keys.get("factor", 0.5), int(keys.get("patience", 1))
    )
    return [epoch_lr(cfg, initial_lr, len(losses), losses[:e]) for e in range(len(losses))]


def test_step_lr_halves_every_step_epochs() -> None:
    got = [step_lr(1e-4, e, 50, 0.5) for e in (0, 49, 50, 99, 100)]
    assert got == [1e-4, 1e-4, 5e-5, 5e-5, 2.5e-5]
    with pytest.raises(ValueError):
        step_lr(1e-4, -1, 50, 0.5)


def test_step_schedule_cuts_every_step_epochs() -> None:
    got = rates("step", [0.0] * 7, step_epochs=3, factor=0.1)
    assert got[2] == 1e-3 and math.isclose(got[3], 1e-4) and math.isclose(got[6], 1e-5)


def test_constant_schedule_never_changes() -> None:
    assert rates("constant", LOSSES, 3e-4) == [3e-4] * len(LOSSES)


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
    got = rates("plateau", LOSSES, 4e-4, patience=2, factor=0.5)
    assert got == expected
    assert min(got) < 4e-4 / 2  # the curve above cuts the rate at least twice


def test_plateau_cuts_after_more_than_patience_bad_epochs() -> None:
    # epoch 1 sets the best; epochs 2, 3, 4 are bad, the third bad one (> patience) cuts.
    assert [plateau_lr(1.0, [1.0] * n, 2, 0.5) for n in range(5)] == [1.0, 1.0, 1.0, 1.0, 0.5]


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="cosine"):
        epoch_lr(ScheduleConfig("exponential", 1, 0.5, 1), 1e-3, 10, [])


def test_cosine_falls_from_the_initial_rate_to_zero_over_the_epochs() -> None:
    got = rates("cosine", [1.0] * 4, 4e-4)  # the validation loss plays no part
    assert got == pytest.approx([4e-4, 4e-4 * (1 + 2**-0.5) / 2, 2e-4, 4e-4 * (1 - 2**-0.5) / 2])
    cfg = ScheduleConfig("cosine", 1, 0.5, 1)
    assert epoch_lr(cfg, 4e-4, 4, [1.0] * 4) == pytest.approx(0.0, abs=1e-20)
