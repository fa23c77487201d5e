"""PyTorch backend: the interface of docs/backend_interface.md over models_torch.

backend_jittor.py implements the same members with the same semantics in Jittor.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from n2v_repro.backends.base import (
    AdamSettings,
    as_float32,
    check_batch,
    check_images,
    check_optimizer_state,
    check_weights,
    moment_keys,
)
from n2v_repro.models.spec import ARCH_STRIDE, is_buffer, trainable_names
from n2v_repro.models.torch_nets import build_model


def resolve_device(device: str) -> str:
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {device!r}")
    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise RuntimeError("device 'cuda' requested but torch.cuda.is_available() is False")
    return "cuda" if device == "cuda" or (device == "auto" and has_cuda) else "cpu"


def masked_mse(out: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum of squared errors over masked pixels / number of masked pixels (whole batch)."""
    return ((out - targets) ** 2 * mask).sum() / mask.sum()


class TorchAdam:
    """Adam over named parameters with either semantics (see backend_common)."""

    def __init__(self, params: dict[str, torch.nn.Parameter], settings: AdamSettings):
        self.params = params
        self.settings = settings
        self.step = 0
        self.m = {name: torch.zeros_like(p) for name, p in params.items()}
        self.v = {name: torch.zeros_like(p) for name, p in params.items()}

    @torch.no_grad()
    def update(self) -> None:
        self.step += 1
        b1, b2 = self.settings.betas
        step_size, sqrt_bc2 = self.settings.coefficients(self.step)
        eps = self.settings.eps
        for name, p in self.params.items():
            g = p.grad
            m, v = self.m[name], self.v[name]
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v.sqrt() / sqrt_bc2).add_(eps)
            p.addcdiv_(m, denom, value=-step_size)


class TorchBackend:
    name = "torch"

    def __init__(self, arch: str, device: str = "auto", threads: int | None = None):
        if threads:
            torch.set_num_threads(threads)
        self.arch = arch
        self.stride = ARCH_STRIDE[arch]
        self.device = resolve_device(device)
        self.model = build_model(arch).to(self.device)
        named = dict(self.model.named_parameters())
        self._params = {name: named[name] for name in trainable_names(arch)}
        self._optimizer: TorchAdam | None = None

    # --- weights ----------------------------------------------------------------------------

    def _state(self) -> dict[str, torch.Tensor]:
        # num_batches_tracked is PyTorch-only bookkeeping, unused with a fixed momentum.
        return {
            k: v
            for k, v in self.model.state_dict().items()
            if not k.endswith("num_batches_tracked")
        }

    def load_weights(self, weights: dict[str, np.ndarray]) -> None:
        check_weights(self.arch, weights)
        state = self._state()
        with torch.no_grad():
            for name, tensor in state.items():
                tensor.copy_(torch.from_numpy(as_float32(weights[name])))

    def get_weights(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in self._state().items()}

    # --- optimiser --------------------------------------------------------------------------

    def configure_optimizer(
        self, lr: float, betas: tuple[float, float], eps: float, semantics: str = "torch"
    ) -> None:
        settings = AdamSettings(
            float(lr), (float(betas[0]), float(betas[1])), float(eps), semantics
        )
        self._optimizer = TorchAdam(self._params, settings)

    def _adam(self) -> TorchAdam:
        if self._optimizer is None:
            raise RuntimeError("call configure_optimizer() before training")
        return self._optimizer

    def set_lr(self, lr: float) -> None:
        adam = self._adam()
        adam.settings = replace(adam.settings, lr=float(lr))

    def optimizer_state(self) -> dict[str, np.ndarray]:
        adam = self._adam()
        state: dict[str, np.ndarray] = {"step": np.array(adam.step, dtype=np.int64)}
        for name in self._params:
            m_key, v_key = moment_keys(name)
            state[m_key] = adam.m[name].detach().cpu().numpy().copy()
            state[v_key] = adam.v[name].detach().cpu().numpy().copy()
        return state

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        adam = self._adam()
        step = check_optimizer_state(state, list(self._params))
        with torch.no_grad():
            for name in self._params:
                m_key, v_key = moment_keys(name)
                adam.m[name].copy_(torch.from_numpy(as_float32(state[m_key])))
                adam.v[name].copy_(torch.from_numpy(as_float32(state[v_key])))
        adam.step = step

    # --- computation ------------------------------------------------------------------------

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(as_float32(array)).to(self.device)

    def _train_loss(
        self, inputs: np.ndarray, targets: np.ndarray, mask: np.ndarray
    ) -> torch.Tensor:
        check_batch(self.arch, inputs, targets, mask)
        self.model.train()
        for p in self._params.values():
            p.grad = None
        out = self.model(self._tensor(inputs))
        loss = masked_mse(out, self._tensor(targets), self._tensor(mask))
        loss.backward()
        return loss

    def train_step(self, inputs: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> float:
        adam = self._adam()
        loss = self._train_loss(inputs, targets, mask)
        adam.update()
        # A nan loss is returned as is: the training loop decides what to do with it.
        return float(loss.detach())

    def loss_and_grads(
        self, inputs: np.ndarray, targets: np.ndarray, mask: np.ndarray
    ) -> tuple[float, dict[str, np.ndarray]]:
        """Train-mode loss and gradients; weights and batch-norm statistics stay as they were."""
        buffers = {k: v.clone() for k, v in self._state().items() if is_buffer(k)}
        loss = self._train_loss(inputs, targets, mask)
        grads = {name: p.grad.detach().cpu().numpy().copy() for name, p in self._params.items()}
        with torch.no_grad():
            for name, tensor in self._state().items():
                if name in buffers:
                    tensor.copy_(buffers[name])
        return float(loss.detach()), grads

    @torch.no_grad()
    def masked_loss(self, inputs: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> float:
        check_batch(self.arch, inputs, targets, mask)
        self.model.eval()
        out = self.model(self._tensor(inputs))
        return float(masked_mse(out, self._tensor(targets), self._tensor(mask)))

    @torch.no_grad()
    def predict(self, inputs: np.ndarray) -> np.ndarray:
        check_images(self.arch, inputs)
        self.model.eval()
        return self.model(self._tensor(inputs)).cpu().numpy().astype(np.float32)

    # --- device -----------------------------------------------------------------------------

    def peak_memory_mib(self) -> float | None:
        """Peak bytes reserved by PyTorch's CUDA caching allocator (comparable to Jittor's
        figure, which also counts cached blocks); None on CPU."""
        if self.device != "cuda":
            return None
        return torch.cuda.max_memory_reserved() / 2**20

    def reset_peak_memory(self) -> None:
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()

    def synchronize(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()


def float64_loss_and_grads(
    arch: str,
    weights: dict[str, np.ndarray],
    inputs: np.ndarray,
    targets: np.ndarray,
    mask: np.ndarray,
) -> tuple[float, dict[str, np.ndarray]]:
    """Train-mode masked loss and gradients computed in float64 on the CPU.

    The reference against which the parity check measures both frameworks' float32
    gradients: where float32 itself is ill-conditioned, PyTorch's own float32 error against
    it says how close two correct float32 implementations can be expected to agree.
    """
    check_weights(arch, weights)
    check_batch(arch, inputs, targets, mask)
    model = build_model(arch).double().train()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not name.endswith("num_batches_tracked"):
                tensor.copy_(torch.from_numpy(np.asarray(weights[name], dtype=np.float64)))
    x, t, m = (torch.from_numpy(np.asarray(a, dtype=np.float64)) for a in (inputs, targets, mask))
    loss = masked_mse(model(x), t, m)
    loss.backward()
    named = dict(model.named_parameters())
    grads = {name: named[name].grad.numpy().copy() for name in trainable_names(arch)}
    return float(loss.detach()), grads
