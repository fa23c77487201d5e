"""Learning-rate schedules, one decision per finished epoch.

- ``step``: the original port's StepLR, the rate multiplied by ``factor`` every
  ``step_epochs`` epochs (halved every 50).
- ``plateau``: the paper's ReduceLROnPlateau on the validation loss, with PyTorch's semantics
  (mode min, relative threshold 1e-4, no cooldown, no minimum rate): the rate is cut when the
  loss has not improved for more than ``patience`` epochs. Keras, which juglab/n2v uses, cuts
  one epoch earlier (``>= patience``); with patience 10 over 200 epochs the difference is small.
- ``cosine``: half a cosine from the initial rate down to zero over the run's ``epochs``
  (Loshchilov & Hutter 2017, without restarts), for a fixed training budget: the rate of
  epoch e (0-based) is ``initial_lr * (1 + cos(pi * e / epochs)) / 2``. It depends on
  ``epochs``, so a cosine run cannot be resumed with more epochs (training.loop.fingerprint).
- ``constant``: never changes.

Each schedule keeps its state in a flat dict of floats so that the training checkpoint can
store it and a resumed run takes exactly the same decisions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Protocol

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


class LRSchedule(Protocol):
    lr: float

    def end_epoch(self, valid_loss: float) -> None:
        """Take the decision after an epoch; `lr` is then the rate of the next epoch."""

    def state(self) -> dict[str, float]: ...

    def load_state(self, state: Mapping[str, float]) -> None: ...


class ConstantSchedule:
    def __init__(self, initial_lr: float) -> None:
        self.lr = initial_lr

    def end_epoch(self, valid_loss: float) -> None:
        del valid_loss

    def state(self) -> dict[str, float]:
        return {"lr": self.lr}

    def load_state(self, state: Mapping[str, float]) -> None:
        self.lr = float(state["lr"])


class StepSchedule:
    def __init__(self, initial_lr: float, step_epochs: int, factor: float) -> None:
        self.initial_lr, self.step_epochs, self.factor = initial_lr, step_epochs, factor
        self.epochs_done = 0
        self.lr = initial_lr

    def end_epoch(self, valid_loss: float) -> None:
        del valid_loss
        self.epochs_done += 1
        self.lr = step_lr(self.initial_lr, self.epochs_done, self.step_epochs, self.factor)

    def state(self) -> dict[str, float]:
        return {"lr": self.lr, "epochs_done": float(self.epochs_done)}

    def load_state(self, state: Mapping[str, float]) -> None:
        self.epochs_done = int(state["epochs_done"])
        self.lr = float(state["lr"])


def cosine_lr(initial_lr: float, epoch: int, epochs: int) -> float:
    """Rate of 0-based `epoch` of `epochs` under the cosine schedule."""
    if not 0 <= epoch <= epochs or epochs < 1:
        raise ValueError(f"need 0 <= epoch <= epochs and epochs >= 1, got {epoch}, {epochs}")
    return initial_lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


class CosineSchedule:
    def __init__(self, initial_lr: float, epochs: int) -> None:
        self.initial_lr, self.epochs = initial_lr, epochs
        self.epochs_done = 0
        self.lr = cosine_lr(initial_lr, 0, epochs)

    def end_epoch(self, valid_loss: float) -> None:
        del valid_loss
        self.epochs_done = min(self.epochs_done + 1, self.epochs)
        self.lr = cosine_lr(self.initial_lr, self.epochs_done, self.epochs)

    def state(self) -> dict[str, float]:
        return {"lr": self.lr, "epochs_done": float(self.epochs_done)}

    def load_state(self, state: Mapping[str, float]) -> None:
        self.epochs_done = int(state["epochs_done"])
        self.lr = float(state["lr"])


class PlateauSchedule:
    def __init__(self, initial_lr: float, patience: int, factor: float) -> None:
        self.patience, self.factor = patience, factor
        self.lr = initial_lr
        self.best = math.inf
        self.bad_epochs = 0

    def end_epoch(self, valid_loss: float) -> None:
        if valid_loss < self.best * (1.0 - PLATEAU_THRESHOLD):
            self.best = valid_loss
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            new_lr = self.lr * self.factor
            if self.lr - new_lr > PLATEAU_MIN_CHANGE:
                self.lr = new_lr
            self.bad_epochs = 0

    def state(self) -> dict[str, float]:
        return {"lr": self.lr, "best": self.best, "bad_epochs": float(self.bad_epochs)}

    def load_state(self, state: Mapping[str, float]) -> None:
        self.lr = float(state["lr"])
        self.best = float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])


def make_schedule(schedule: ScheduleConfig, initial_lr: float, epochs: int) -> LRSchedule:
    """Make the schedule that the `train.schedule` settings name, for a run of `epochs`."""
    if schedule.kind == "constant":
        return ConstantSchedule(initial_lr)
    if schedule.kind == "step":
        return StepSchedule(initial_lr, schedule.step_epochs, schedule.factor)
    if schedule.kind == "plateau":
        return PlateauSchedule(initial_lr, schedule.patience, schedule.factor)
    if schedule.kind == "cosine":
        return CosineSchedule(initial_lr, epochs)
    raise ValueError(
        f"unknown schedule kind {schedule.kind!r}; expected step, plateau, cosine or constant"
    )
