"""Learning-rate schedules: the rate of an epoch from the validation losses before it.

- ``step``: the original port's StepLR, the rate multiplied by ``factor`` every
  ``step_epochs`` epochs (halved every 50).
- ``plateau``: the paper's ReduceLROnPlateau on the validation loss, with PyTorch's semantics
  (mode min, relative threshold 1e-4, no cooldown, no minimum rate): the rate is cut when the
  loss has not improved for more than ``patience`` epochs. Keras, which juglab/n2v uses, cuts
  one epoch earlier (``>= patience``); with patience 10 over 200 epochs the difference is small.
- ``cosine``: half a cosine from the initial rate down to zero over the run's ``epochs``
  (Loshchilov & Hutter 2017, without restarts), for a fixed training budget: the rate of
  epoch e (0-based) is ``initial_lr * (1 + cos(pi * e / epochs)) / 2``. It depends on
  ``epochs``, so a cosine run cannot be resumed with more epochs (training.checkpoint).
- ``constant``: never changes.

Every rate is a pure function of the validation losses so far (the plateau rule replays
them), so a resumed run, whose checkpoint holds the history, takes the same decisions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from n2v_repro.config import ScheduleConfig

# PyTorch's ReduceLROnPlateau defaults: a loss only counts as better when it beats the best
# by more than this fraction, and cuts smaller than PLATEAU_MIN_CHANGE are skipped.
PLATEAU_THRESHOLD = 1e-4
PLATEAU_MIN_CHANGE = 1e-8


def step_lr(initial_lr: float, epoch: int, step_epochs: int, factor: float) -> float:
    """Rate of 0-based `epoch` under StepLR: initial_lr * factor ** (epoch // step_epochs)."""
    if epoch < 0 or step_epochs < 1:
        raise ValueError(f"need epoch >= 0 and step_epochs >= 1, got {epoch}, {step_epochs}")
    return initial_lr * factor ** (epoch // step_epochs)


def cosine_lr(initial_lr: float, epoch: int, epochs: int) -> float:
    """Rate of 0-based `epoch` of `epochs` under the cosine schedule."""
    if not 0 <= epoch <= epochs or epochs < 1:
        raise ValueError(f"need 0 <= epoch <= epochs and epochs >= 1, got {epoch}, {epochs}")
    return initial_lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


def plateau_lr(
    initial_lr: float, valid_losses: Sequence[float], patience: int, factor: float
) -> float:
    """Rate after the epochs whose validation losses are `valid_losses`, under the plateau rule."""
    lr, best, bad_epochs = initial_lr, math.inf, 0
    for loss in valid_losses:
        if loss < best * (1.0 - PLATEAU_THRESHOLD):
            best, bad_epochs = loss, 0
        else:
            bad_epochs += 1
        if bad_epochs > patience:
            if lr - lr * factor > PLATEAU_MIN_CHANGE:
                lr *= factor
            bad_epochs = 0
    return lr


def epoch_lr(
    schedule: ScheduleConfig, initial_lr: float, epochs: int, valid_losses: Sequence[float]
) -> float:
    """Rate of the next epoch of a run of `epochs`, after epochs with these validation losses."""
    epoch = len(valid_losses)
    if schedule.kind == "constant":
        return initial_lr
    if schedule.kind == "step":
        return step_lr(initial_lr, epoch, schedule.step_epochs, schedule.factor)
    if schedule.kind == "plateau":
        return plateau_lr(initial_lr, valid_losses, schedule.patience, schedule.factor)
    if schedule.kind == "cosine":
        return cosine_lr(initial_lr, min(epoch, epochs), epochs)
    raise ValueError(
        f"unknown schedule kind {schedule.kind!r}; expected step, plateau, cosine or constant"
    )
