"""Framework-neutral pieces of the two backends: argument checks and Adam's arithmetic.

Both backends apply Adam with the same formulas, written once here as scalar coefficients:

    m <- b1*m + (1-b1)*g;   v <- b2*v + (1-b2)*g^2;   t <- t+1
    p <- p - step_size * m / (sqrt(v) / sqrt_bc2 + eps)

- semantics "torch" (torch.optim.Adam): step_size = lr/(1-b1^t), sqrt_bc2 = sqrt(1-b2^t), so
  eps is added to the bias-corrected sqrt(v).
- semantics "jittor" (jittor.optim.Adam): step_size = lr*sqrt(1-b2^t)/(1-b1^t), sqrt_bc2 = 1,
  so eps is added to the raw sqrt(v): the same as "torch" with eps scaled by sqrt(1-b2^t)
  (31.6x larger at t=1 with b2=0.999).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from n2v_repro.models.spec import ARCH_STRIDE, parameter_shapes

ADAM_SEMANTICS = ("torch", "jittor")


@dataclass(frozen=True)
class AdamSettings:
    lr: float
    betas: tuple[float, float]
    eps: float
    semantics: str

    def __post_init__(self) -> None:
        if self.semantics not in ADAM_SEMANTICS:
            raise ValueError(f"Adam semantics must be torch or jittor, not {self.semantics!r}")

    @classmethod
    def create(
        cls, lr: float, betas: tuple[float, float], eps: float, semantics: str
    ) -> AdamSettings:
        return cls(float(lr), (float(betas[0]), float(betas[1])), float(eps), semantics)

    def coefficients(self, step: int) -> tuple[float, float]:
        """(step_size, sqrt_bc2) for 1-based step `step`."""
        b1, b2 = self.betas
        bc1, bc2 = 1.0 - b1**step, 1.0 - b2**step
        if self.semantics == "torch":
            return self.lr / bc1, math.sqrt(bc2)
        return self.lr * math.sqrt(bc2) / bc1, 1.0


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


def check_weights(arch: str, weights: dict[str, np.ndarray]) -> None:
    """Raise ValueError naming every missing, unexpected or wrongly shaped array."""
    shapes = parameter_shapes(arch)
    problems = [f"missing {name}" for name in shapes if name not in weights]
    problems += [f"unexpected {name}" for name in weights if name not in shapes]
    problems += [
        f"{name}: shape {tuple(np.shape(weights[name]))}, expected {shape}"
        for name, shape in shapes.items()
        if name in weights and tuple(np.shape(weights[name])) != shape
    ]
    if problems:
        raise ValueError(f"weights do not fit {arch}: " + "; ".join(problems))


def check_images(arch: str, inputs: np.ndarray) -> None:
    """Inputs must be (B, 1, H, W) with H and W multiples of the arch's stride."""
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
