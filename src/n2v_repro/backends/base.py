"""The framework-neutral half of the two backends: the `Backend` and `Adam` base classes.

`Backend` holds the public interface (docs/backend_interface.md), argument checks, weight
conversion and optimizer bookkeeping; a framework backend implements only the underscored
tensor methods. `Adam` holds the settings, step count and state layout; a framework's Adam
implements only the moment arrays and the element-wise update.

Both backends apply Adam with the same formulas, written once here as scalar coefficients:

    m <- b1*m + (1-b1)*g;   v <- b2*v + (1-b2)*g^2;   t <- t+1
    p <- p - step_size * m / (sqrt(v) / sqrt_bc2 + eps)

- semantics "torch" (torch.optim.Adam): step_size = lr/(1-b1^t), sqrt_bc2 = sqrt(1-b2^t), so
  eps is added to the bias-corrected sqrt(v).
- semantics "keras" (Keras/TensorFlow's Adam, which the paper's juglab/n2v trains with, and
  jittor.optim.Adam): step_size = lr*sqrt(1-b2^t)/(1-b1^t), sqrt_bc2 = 1, so eps is added to
  the raw sqrt(v) (Kingma & Ba's "epsilon hat"): the same as "torch" with eps scaled by
  sqrt(1-b2^t) (31.6x larger at t=1 with b2=0.999).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from n2v_repro.config import OptimizerConfig
from n2v_repro.models.spec import ARCH_STRIDE, parameter_shapes, trainable_names

ADAM_SEMANTICS = ("torch", "keras")
# Arithmetic of convolutions and matmuls on CUDA: strict IEEE float32, TF32 tensor cores, or
# bfloat16 autocast (torch only). The CPU always computes in float32.
PRECISIONS = ("fp32", "tf32", "bf16")


def speed_setting(levers: Iterable[str]) -> str:
    """Name a run's speed setting for tables and print-outs: "stock" when no lever was on."""
    return ", ".join(sorted(levers)) or "stock"


def adam_coefficients(settings: OptimizerConfig, step: int) -> tuple[float, float]:
    """(step_size, sqrt_bc2) of 1-based step `step` (see the module docstring)."""
    b1, b2 = settings.betas
    bc1, bc2 = 1.0 - b1**step, 1.0 - b2**step
    if settings.semantics == "torch":
        return settings.lr / bc1, math.sqrt(bc2)
    return settings.lr * math.sqrt(bc2) / bc1, 1.0


def moment_keys(name: str) -> tuple[str, str]:
    """Optimizer-state keys of parameter `name`'s first and second moments."""
    return f"m/{name}", f"v/{name}"


def check_optimizer_state(state: dict[str, np.ndarray], names: list[str]) -> int:
    """Validate a state from optimizer_state(); return its step count."""
    expected = {"step"} | {key for name in names for key in moment_keys(name)}
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(
            f"optimizer state does not match the model: missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
        )
    return int(np.asarray(state["step"]))


def misfits(arrays: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]) -> list[str]:
    """Name every array of `shapes` that is missing or wrongly shaped, and every extra one."""
    problems = [f"missing {name}" for name in shapes if name not in arrays]
    problems += [f"unexpected {name}" for name in arrays if name not in shapes]
    problems += [
        f"{name}: shape {tuple(np.shape(arrays[name]))}, expected {shape}"
        for name, shape in shapes.items()
        if name in arrays and tuple(np.shape(arrays[name])) != shape
    ]
    return problems


def check_weights(arch: str, weights: dict[str, np.ndarray]) -> None:
    """Raise ValueError naming every missing, unexpected or wrongly shaped array."""
    problems = misfits(weights, parameter_shapes(arch))
    if problems:
        raise ValueError(f"weights do not fit {arch}: " + "; ".join(problems))


def check_images(arch: str, inputs: np.ndarray) -> None:
    """Check that inputs are (B, 1, H, W) with H and W multiples of the arch's stride."""
    stride = ARCH_STRIDE[arch]
    if inputs.ndim != 4 or inputs.shape[1] != 1:
        raise ValueError(f"expected a (B, 1, H, W) array, got shape {inputs.shape}")
    if inputs.shape[2] % stride or inputs.shape[3] % stride:
        raise ValueError(
            f"{arch} needs H and W multiples of {stride}; got {inputs.shape[2]}x{inputs.shape[3]}"
            " (reflect-pad first)"
        )


def check_batch(arch: str, inputs: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> None:
    check_images(arch, inputs)
    if targets.shape != inputs.shape or mask.shape != inputs.shape:
        raise ValueError(
            f"inputs, targets and mask must have one shape; got {inputs.shape}, "
            f"{targets.shape}, {mask.shape}"
        )


def as_float32(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float32)


def layer_call_name(layer: str, recorded: Mapping[str, Any]) -> str:
    """Name one call of `layer` among those `recorded` so far: `enc_down.conv`, then `#2`, ...

    n2n_unet applies some of its blocks several times; every call is a layer of its own.
    """
    if layer not in recorded:
        return layer
    calls = 2
    while f"{layer}#{calls}" in recorded:
        calls += 1
    return f"{layer}#{calls}"


class Adam(ABC):
    """Adam over named parameters with either semantics: settings, step count, state layout."""

    def __init__(self, names: list[str], settings: OptimizerConfig):
        self.names = list(names)
        self.settings = settings
        self.step = 0

    def next_coefficients(self) -> tuple[float, float]:
        """Advance the step count; (step_size, sqrt_bc2) of the step just begun."""
        self.step += 1
        return adam_coefficients(self.settings, self.step)

    def state(self) -> dict[str, np.ndarray]:
        """Step count and moments by parameter name (`moment_keys`), as numpy copies."""
        state: dict[str, np.ndarray] = {"step": np.array(self.step, dtype=np.int64)}
        for name, (m, v) in self._get_moments().items():
            m_key, v_key = moment_keys(name)
            state[m_key], state[v_key] = m, v
        return state

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        step = check_optimizer_state(state, self.names)
        moments = {}
        for name in self.names:
            m_key, v_key = moment_keys(name)
            moments[name] = (as_float32(state[m_key]), as_float32(state[v_key]))
        self._set_moments(moments)
        self.step = step

    @abstractmethod
    def _get_moments(self) -> dict[str, tuple[np.ndarray, np.ndarray]]: ...

    @abstractmethod
    def _set_moments(self, moments: dict[str, tuple[np.ndarray, np.ndarray]]) -> None: ...


class Backend(ABC):
    """One framework's network, optimizer and device behind one interface.

    The interface is docs/backend_interface.md; all public arguments and results are numpy.
    """

    name: str
    device: str
    # Opt-in speed levers of the framework in effect; none: stock (each framework's own ops
    # and defaults), the only setting the pipeline has. Recorded wherever speed is reported.
    speed_levers: tuple[str, ...] = ()
    # The batch norm its networks use: stock (the framework's own) or exact (the project's,
    # the opt-in Jittor variant); None for an arch without. Recorded beside speed_levers.
    batch_norm: str | None = None

    def __init__(self, arch: str, precision: str = "fp32"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
        self.arch = arch
        self.stride = ARCH_STRIDE[arch]
        self.trainable = trainable_names(arch)
        self.requested_precision = precision
        self._optimizer: Adam | None = None
        self._queued_losses: list[Any] = []

    @property
    def precision(self) -> str:
        """The arithmetic in effect: the requested precision on CUDA, fp32 on the CPU."""
        return self.requested_precision if self.device == "cuda" else "fp32"

    # --- weights ----------------------------------------------------------------------------

    def load_weights(self, weights: dict[str, np.ndarray]) -> None:
        check_weights(self.arch, weights)
        self._set_state({name: as_float32(weights[name]) for name in parameter_shapes(self.arch)})

    def get_weights(self) -> dict[str, np.ndarray]:
        return {name: as_float32(value) for name, value in self._get_state().items()}

    # --- optimiser --------------------------------------------------------------------------

    def configure_optimizer(self, settings: OptimizerConfig) -> None:
        if settings.semantics not in ADAM_SEMANTICS:
            raise ValueError(
                f"Adam semantics must be one of {ADAM_SEMANTICS}, not {settings.semantics!r}"
            )
        b1, b2 = settings.betas
        numbers = {
            "lr": float(settings.lr),
            "betas": (float(b1), float(b2)),
            "eps": float(settings.eps),
        }
        self._optimizer = self._make_adam(replace(settings, **numbers))

    def _adam(self) -> Adam:
        if self._optimizer is None:
            raise RuntimeError("call configure_optimizer() before training")
        return self._optimizer

    def set_lr(self, lr: float) -> None:
        adam = self._adam()
        adam.settings = replace(adam.settings, lr=float(lr))

    def optimizer_state(self) -> dict[str, np.ndarray]:
        return self._adam().state()

    def apply_gradients(self, grads: dict[str, np.ndarray]) -> None:
        """Take one Adam step with the given gradients (by trainable name), no loss computed.

        Parity checks the optimizer on prescribed gradients with it, apart from the network.
        """
        adam = self._adam()
        shapes = parameter_shapes(self.arch)
        problems = misfits(grads, {name: shapes[name] for name in self.trainable})
        if problems:
            raise ValueError(f"gradients do not fit {self.arch}: " + "; ".join(problems[:5]))
        self._apply_gradients(adam, {name: as_float32(grads[name]) for name in self.trainable})

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        self._adam().load_state(state)

    # --- computation ------------------------------------------------------------------------

    def train_step(self, inputs: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> float:
        """Take one Adam step on the masked loss and return the loss.

        A NaN loss is returned as is: the training loop decides what to do with it.
        """
        self.queue_train_step(inputs, targets, mask)
        return float(self.read_losses()[-1])

    def queue_train_step(self, inputs: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> None:
        """Take one Adam step without reading its loss back to the host (see `read_losses`).

        `mask` may be bool (sent as is, 4x smaller, made float on the device) or float 0/1.
        """
        adam = self._adam()
        check_batch(self.arch, inputs, targets, mask)
        mask = np.ascontiguousarray(mask) if mask.dtype == np.bool_ else as_float32(mask)
        self._queued_losses.append(
            self._train_step(adam, as_float32(inputs), as_float32(targets), mask)
        )

    def read_losses(self) -> np.ndarray:
        """Return the losses of the steps queued since the last read, in one transfer.

        The host waits for the device only here: a training loop reads every few steps and
        checks them for NaN/inf then, instead of synchronising on every step.
        """
        queued, self._queued_losses = self._queued_losses, []
        if not queued:
            return np.zeros(0, dtype=np.float64)
        return np.asarray(self._gather_losses(queued), dtype=np.float32).astype(np.float64)

    def loss_and_grads(
        self, inputs: np.ndarray, targets: np.ndarray, mask: np.ndarray
    ) -> tuple[float, dict[str, np.ndarray]]:
        """Train-mode loss and gradients; weights and batch-norm statistics stay as they were."""
        check_batch(self.arch, inputs, targets, mask)
        return self._loss_and_grads(*map(as_float32, (inputs, targets, mask)))

    def traced_loss_and_grads(
        self, inputs: np.ndarray, targets: np.ndarray, mask: np.ndarray
    ) -> tuple[float, dict[str, np.ndarray], dict[str, np.ndarray]]:
        """`loss_and_grads`, and the layers' outputs in the forward pass the gradients came from.

        The third result holds the output of every call of every `models.spec.layers` layer,
        in call order (`layer_call_name`), and each batch-norm running statistic (by its
        parameter name) as that forward pass updated it, before it was restored.
        """
        check_batch(self.arch, inputs, targets, mask)
        layers: dict[str, np.ndarray] = {}
        loss, grads = self._loss_and_grads(*map(as_float32, (inputs, targets, mask)), layers)
        return loss, grads, layers

    def masked_loss(self, inputs: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> float:
        """Eval-mode masked loss, no gradient (validation)."""
        check_batch(self.arch, inputs, targets, mask)
        return self._masked_loss(*map(as_float32, (inputs, targets, mask)))

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Eval-mode output, (B, 1, H, W) -> (B, 1, H, W) float32."""
        check_images(self.arch, inputs)
        return as_float32(self._predict(as_float32(inputs)))

    # --- what each framework implements, in this order in both files ------------------------

    @abstractmethod
    def _get_state(self) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def _set_state(self, state: dict[str, np.ndarray]) -> None: ...

    @abstractmethod
    def _make_adam(self, settings: OptimizerConfig) -> Adam: ...

    @abstractmethod
    def _train_step(
        self, adam: Any, inputs: np.ndarray, targets: np.ndarray, mask: np.ndarray
    ) -> Any:
        """Take one step; return the loss as a device scalar, not read back."""

    @abstractmethod
    def _gather_losses(self, losses: list[Any]) -> np.ndarray:
        """Read device scalars from `_train_step` back as one float32 array."""

    @abstractmethod
    def _apply_gradients(self, adam: Any, grads: dict[str, np.ndarray]) -> None: ...

    @abstractmethod
    def _loss_and_grads(
        self,
        inputs: np.ndarray,
        targets: np.ndarray,
        mask: np.ndarray,
        layers: dict[str, np.ndarray] | None = None,
    ) -> tuple[float, dict[str, np.ndarray]]:
        """Loss and gradients; with `layers`, fill it as `traced_loss_and_grads` says."""

    @abstractmethod
    def _masked_loss(self, inputs: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> float: ...

    @abstractmethod
    def _predict(self, inputs: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def peak_memory_mib(self) -> float | None:
        """Return the framework's peak device memory since the last reset; None on CPU."""

    @abstractmethod
    def reset_peak_memory(self) -> None: ...

    @abstractmethod
    def synchronize(self) -> None:
        """Wait for queued device work (timing)."""
