"""PyTorch backend: the tensor half of `backends.base.Backend` over `models.torch_nets`.

jittor_backend.py implements the same methods, in the same order, in Jittor.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from n2v_repro.backends.base import (
    Adam,
    Backend,
    check_batch,
    check_images,
    check_weights,
    layer_call_name,
)
from n2v_repro.config import OptimizerConfig
from n2v_repro.models.spec import has_batch_norm, is_buffer, trainable_names
from n2v_repro.models.spec import layers as spec_layers
from n2v_repro.models.torch_nets import build_model


def resolve_device(device: str) -> str:
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {device!r}")
    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise RuntimeError("device 'cuda' requested but torch.cuda.is_available() is False")
    return "cuda" if device == "cuda" or (device == "auto" and has_cuda) else "cpu"


def set_cuda_precision(precision: str) -> None:
    """Set the float32 arithmetic of cuDNN convolutions and cuBLAS matmuls on CUDA.

    PyTorch runs convolutions in TF32 by default on Ampere and later; "fp32" (and "bf16",
    whose autocast leaves some layers in float32) turn it off so float32 means IEEE float32.
    """
    mode = "tf32" if precision == "tf32" else "ieee"
    cudnn_conv = getattr(torch.backends.cudnn, "conv", None)
    if cudnn_conv is not None and hasattr(cudnn_conv, "fp32_precision"):
        # PyTorch >= 2.9: the legacy allow_tf32 flags must not be mixed with this API.
        cudnn_conv.fp32_precision = mode
        torch.backends.cuda.matmul.fp32_precision = mode
    else:
        torch.backends.cudnn.allow_tf32 = mode == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"


def masked_mse(out: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum of squared errors over masked pixels / number of masked pixels (whole batch)."""
    return ((out - targets) ** 2 * mask).sum() / mask.sum()


class TorchAdam(Adam):
    """The element-wise Adam update in torch (bookkeeping in `Adam`)."""

    def __init__(self, params: dict[str, torch.nn.Parameter], settings: OptimizerConfig):
        super().__init__(list(params), settings)
        self.params = params
        self.m = {name: torch.zeros_like(p) for name, p in params.items()}
        self.v = {name: torch.zeros_like(p) for name, p in params.items()}

    @torch.no_grad()
    def update(self) -> None:
        # The same element-wise operations as one loop over the parameters would do, as
        # multi-tensor (foreach) kernels: a handful of launches per step instead of ~10 per
        # parameter, which is what dominates a small network's step on a GPU.
        step_size, sqrt_bc2 = self.next_coefficients()
        (b1, b2), eps = self.settings.betas, self.settings.eps
        params = list(self.params.values())
        grads = [p.grad for p in params]
        ms = [self.m[name] for name in self.params]
        vs = [self.v[name] for name in self.params]
        torch._foreach_mul_(ms, b1)
        torch._foreach_add_(ms, grads, alpha=1 - b1)
        torch._foreach_mul_(vs, b2)
        torch._foreach_addcmul_(vs, grads, grads, value=1 - b2)
        denoms = torch._foreach_sqrt(vs)
        torch._foreach_div_(denoms, sqrt_bc2)
        torch._foreach_add_(denoms, eps)
        torch._foreach_addcdiv_(params, ms, denoms, value=-step_size)

    def _get_moments(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {name: (_numpy(self.m[name]), _numpy(self.v[name])) for name in self.names}

    @torch.no_grad()
    def _set_moments(self, moments: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        for name, (m, v) in moments.items():
            self.m[name].copy_(torch.from_numpy(m))
            self.v[name].copy_(torch.from_numpy(v))


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().copy()


# (flat indices, values) of one layer call's output to overwrite (`recorded_layers`).
Replacement = tuple[np.ndarray, np.ndarray]


@contextlib.contextmanager
def recorded_layers(
    model: torch.nn.Module, arch: str, replace: Mapping[str, Replacement] | None = None
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the output of every call of every `spec.layers` layer while the block runs.

    `replace` overwrites some elements of a layer call's output before the network goes on
    (the float64 reference put on a float32 framework's side of a ReLU kink, parity.py); the
    gradient passes through them as through the rest.
    """
    outputs: dict[str, torch.Tensor] = {}

    def hook(layer: str) -> Any:
        def record(module: torch.nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
            name = layer_call_name(layer, outputs)
            if replace is not None and name in replace:
                index, values = replace[name]
                flat = output.reshape(-1)
                delta = torch.zeros_like(flat)
                at = torch.from_numpy(np.asarray(index, np.int64)).to(flat.device)
                new = torch.from_numpy(np.asarray(values)).to(flat.device, flat.dtype)
                delta[at] = new - flat[at].detach()
                output = (flat + delta).view_as(output)
            outputs[name] = output.detach()
            return output

        return record

    handles = [
        model.get_submodule(layer.name).register_forward_hook(hook(layer.name))
        for layer in spec_layers(arch)
    ]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


class TorchBackend(Backend):
    name = "torch"

    def __init__(
        self,
        arch: str,
        device: str = "auto",
        threads: int | None = None,
        precision: str = "fp32",
        batch_norm: type | None = None,
    ):
        """`batch_norm`: PyTorch's own (None) or, for parity's emulations, another class."""
        super().__init__(arch, precision)
        if threads:
            torch.set_num_threads(threads)
        self.device = resolve_device(device)
        if self.device == "cuda":
            set_cuda_precision(self.precision)
            # Fixed input shapes: let cuDNN pick the fastest convolution algorithms once.
            torch.backends.cudnn.benchmark = True
        self.model = build_model(arch, batch_norm or torch.nn.BatchNorm2d).to(self.device)
        if has_batch_norm(arch):
            self.batch_norm = "stock" if batch_norm is None else batch_norm.__name__
        named = dict(self.model.named_parameters())
        self._params = {name: named[name] for name in self.trainable}

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(array)
        if self.device == "cuda":
            # Pinned host memory lets the copy run asynchronously, overlapping compute.
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor

    def _float_mask(self, mask: np.ndarray) -> torch.Tensor:
        return self._tensor(mask).to(torch.float32)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.device == "cuda" and self.precision == "bf16":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _module_state(self) -> dict[str, torch.Tensor]:
        # num_batches_tracked is PyTorch-only bookkeeping, unused with a fixed momentum.
        return {
            k: v
            for k, v in self.model.state_dict().items()
            if not k.endswith("num_batches_tracked")
        }

    # --- weights ----------------------------------------------------------------------------

    def _get_state(self) -> dict[str, np.ndarray]:
        return {name: _numpy(tensor) for name, tensor in self._module_state().items()}

    @torch.no_grad()
    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        for name, tensor in self._module_state().items():
            tensor.copy_(torch.from_numpy(state[name]))

    # --- optimiser --------------------------------------------------------------------------

    def _make_adam(self, settings: OptimizerConfig) -> TorchAdam:
        return TorchAdam(self._params, settings)

    # --- computation ------------------------------------------------------------------------

    def _forward_backward(
        self, inputs: np.ndarray, targets: np.ndarray, mask: np.ndarray
    ) -> torch.Tensor:
        self.model.train()
        for p in self._params.values():
            p.grad = None
        with self._autocast():
            out = self.model(self._tensor(inputs))
        loss = masked_mse(out.float(), self._tensor(targets), self._float_mask(mask))
        loss.backward()
        return loss

    def _train_step(
        self, adam: TorchAdam, inputs: np.ndarray, targets: np.ndarray, mask: np.ndarray
    ) -> torch.Tensor:
        loss = self._forward_backward(inputs, targets, mask)
        adam.update()
        return loss.detach()

    def _gather_losses(self, losses: list[torch.Tensor]) -> np.ndarray:
        return torch.stack(losses).cpu().numpy()

    def _apply_gradients(self, adam: TorchAdam, grads: dict[str, np.ndarray]) -> None:
        for name, p in self._params.items():
            p.grad = self._tensor(grads[name])
        adam.update()

    def _loss_and_grads(
        self,
        inputs: np.ndarray,
        targets: np.ndarray,
        mask: np.ndarray,
        layers: dict[str, np.ndarray] | None = None,
    ) -> tuple[float, dict[str, np.ndarray]]:
        buffers = {k: v.clone() for k, v in self._module_state().items() if is_buffer(k)}
        recording = (
            recorded_layers(self.model, self.arch)
            if layers is not None
            else contextlib.nullcontext({})
        )
        with recording as outputs:
            loss = self._forward_backward(inputs, targets, mask)
        grads = {name: _numpy(p.grad) for name, p in self._params.items()}
        if layers is not None:
            layers |= {name: _numpy(out.float()) for name, out in outputs.items()}
            state = self._module_state()
            layers |= {name: _numpy(state[name]) for name in buffers}
        with torch.no_grad():
            for name, tensor in self._module_state().items():
                if name in buffers:
                    tensor.copy_(buffers[name])
        return float(loss.detach()), grads

    @torch.no_grad()
    def _masked_loss(self, inputs: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> float:
        self.model.eval()
        with self._autocast():
            out = self.model(self._tensor(inputs))
        return float(masked_mse(out.float(), self._tensor(targets), self._float_mask(mask)))

    @torch.no_grad()
    def _predict(self, inputs: np.ndarray) -> np.ndarray:
        self.model.eval()
        with self._autocast():
            out = self.model(self._tensor(inputs))
        return out.float().cpu().numpy()

    # --- device -----------------------------------------------------------------------------

    def peak_memory_mib(self) -> float | None:
        """Return the peak MiB reserved by PyTorch's CUDA caching allocator; None on CPU.

        Reserved, not allocated: comparable to Jittor's figure, which counts cached blocks.
        """
        if self.device != "cuda":
            return None
        return torch.cuda.max_memory_reserved() / 2**20

    def reset_peak_memory(self) -> None:
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()

    def synchronize(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()


def float64_model(
    arch: str, weights: dict[str, np.ndarray], batch_norm: type | None = None
) -> torch.nn.Module:
    """`arch` in float64 on the CPU with `weights`, buffers included (batch_norm: TorchBackend)."""
    check_weights(arch, weights)
    model = build_model(arch, batch_norm or torch.nn.BatchNorm2d).double()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not name.endswith("num_batches_tracked"):
                tensor.copy_(torch.from_numpy(np.asarray(weights[name], dtype=np.float64)))
    return model


def float64_loss_and_grads(
    arch: str,
    weights: dict[str, np.ndarray],
    inputs: np.ndarray,
    targets: np.ndarray,
    mask: np.ndarray,
    replace: Mapping[str, Replacement] | None = None,
    batch_norm: type | None = None,
) -> tuple[float, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """`Backend.traced_loss_and_grads` computed in float64 on the CPU: the parity reference.

    `replace` as in `recorded_layers`: the recorded outputs are those the network went on
    with. Layer outputs and gradients are float64 numpy arrays.
    """
    check_batch(arch, inputs, targets, mask)
    model = float64_model(arch, weights, batch_norm).train()
    x, t, m = (torch.from_numpy(np.asarray(a, dtype=np.float64)) for a in (inputs, targets, mask))
    with recorded_layers(model, arch, replace) as outputs:
        loss = masked_mse(model(x), t, m)
    loss.backward()
    named = dict(model.named_parameters())
    grads = {name: named[name].grad.numpy().copy() for name in trainable_names(arch)}
    recorded = {name: out.numpy().copy() for name, out in outputs.items()}
    recorded |= {
        name: tensor.numpy().copy()
        for name, tensor in model.state_dict().items()
        if is_buffer(name)
    }
    return float(loss.detach()), grads, recorded


@torch.no_grad()
def float64_predict(
    arch: str, weights: dict[str, np.ndarray], inputs: np.ndarray, batch_norm: type | None = None
) -> np.ndarray:
    """`Backend.predict` computed in float64 on the CPU."""
    check_images(arch, inputs)
    model = float64_model(arch, weights, batch_norm).eval()
    return model(torch.from_numpy(np.asarray(inputs, dtype=np.float64))).numpy()
