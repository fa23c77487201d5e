"""Jittor backend: the tensor half of `backends.base.Backend` over `models.jittor_nets`.

torch_backend.py implements the same methods, in the same order, in PyTorch. Jittor runs
lazily: updates are written with Var.update and executed by jt.sync_all().
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np

from n2v_repro.backends.base import Adam, Backend, layer_call_name
from n2v_repro.backends.jittor_env import cuda_driver_available, prepare_jittor_env
from n2v_repro.config import OptimizerConfig
from n2v_repro.models.spec import has_batch_norm, is_buffer
from n2v_repro.models.spec import layers as spec_layers


def set_cpu_threads(threads: int) -> None:
    """Set the OpenMP threads of oneDNN's convolutions; Jittor's element-wise ops are serial.

    OMP_NUM_THREADS works only before libgomp loads (first import); afterwards the running
    libgomp is told directly.
    """
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "jittor" in sys.modules:
        # Without libgomp nothing runs multi-threaded, so there is nothing to limit.
        with contextlib.suppress(OSError):
            ctypes.CDLL("libgomp.so.1").omp_set_num_threads(int(threads))


def import_jittor(device: str) -> tuple[ModuleType, str]:
    """Import jittor prepared for `device`; return (jittor, resolved device)."""
    if "jittor" not in sys.modules:
        resolved = prepare_jittor_env(device)
        sigchld_handler = signal.getsignal(signal.SIGCHLD)
        import jittor as jt

        # Jittor's core installs a C-level SIGCHLD handler (meant for its data-loader workers)
        # that quick-exits the whole process with status 1, without flushing, whenever ANY
        # child dies of a signal: a killed subprocess of the caller would take it down.
        signal.signal(signal.SIGCHLD, sigchld_handler or signal.SIG_DFL)
    else:
        # Already imported by an earlier backend: its environment stands; check the request.
        import jittor as jt

        usable = bool(jt.has_cuda) and cuda_driver_available()
        if device == "cuda" and not usable:
            raise RuntimeError("device 'cuda' requested but Jittor has no usable CUDA here")
        resolved = "cuda" if device == "cuda" or (device == "auto" and usable) else "cpu"
    jt.flags.use_cuda = 1 if resolved == "cuda" else 0
    return jt, resolved


@contextlib.contextmanager
def recorded_layers(model: Any, arch: str) -> Iterator[dict[str, Any]]:
    """Record the output Var of every call of every `spec.layers` layer while the block runs.

    Each layer instance's execute is wrapped, and put back afterwards as it was (an
    instance's own execute included): Jittor's own register_forward_hook swaps the class's
    __call__ for good.
    """
    outputs: dict[str, Any] = {}
    modules = {}
    for layer in spec_layers(arch):
        module = model
        for part in layer.name.split("."):
            module = getattr(module, part)
        modules[layer.name] = module
    own = {name: module.__dict__.get("execute") for name, module in modules.items()}

    def recording(name: str, execute: Any) -> Any:
        def recorded(*args: Any, **kwargs: Any) -> Any:
            out = execute(*args, **kwargs)
            outputs[layer_call_name(name, outputs)] = out
            return out

        return recorded

    for name, module in modules.items():
        module.execute = recording(name, module.execute)
    try:
        yield outputs
    finally:
        for name, module in modules.items():
            if own[name] is None:
                del module.execute
            else:
                module.execute = own[name]


class JittorAdam(Adam):
    """The element-wise Adam update in Jittor (bookkeeping in `Adam`)."""

    def __init__(self, jt: ModuleType, params: dict[str, Any], settings: OptimizerConfig):
        super().__init__(list(params), settings)
        self.jt = jt
        self.params = params
        self.m = {name: jt.zeros(p.shape, "float32").stop_grad() for name, p in params.items()}
        self.v = {name: jt.zeros(p.shape, "float32").stop_grad() for name, p in params.items()}

    def update(self, grads: dict[str, Any]) -> None:
        step_size, sqrt_bc2 = self.next_coefficients()
        (b1, b2), eps = self.settings.betas, self.settings.eps
        for name, p in self.params.items():
            g = grads[name].stop_grad()
            m, v = self.m[name], self.v[name]
            m.update(m * b1 + g * (1 - b1))
            v.update(v * b2 + g * g * (1 - b2))
            p.update(p - (m / (self.jt.sqrt(v) / sqrt_bc2 + eps)) * step_size)

    def _get_moments(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {
            name: (self.m[name].numpy().copy(), self.v[name].numpy().copy()) for name in self.names
        }

    def _set_moments(self, moments: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        for name, (m, v) in moments.items():
            self.m[name].update(self.jt.array(m))
            self.v[name].update(self.jt.array(v))
        self.jt.sync_all()


class JittorBackend(Backend):
    name = "jittor"

    def __init__(
        self,
        arch: str,
        device: str = "auto",
        threads: int | None = None,
        precision: str = "fp32",
        batch_norm: str = "stock",
    ):
        if precision == "bf16":
            raise ValueError(
                "precision bf16: Jittor 1.3.11 has no bfloat16 autocast; use fp32 or tf32"
            )
        super().__init__(arch, precision)
        if threads:
            set_cpu_threads(threads)
        self.jt, self.device = import_jittor(device)
        # TF32 tensor cores only when asked for: off, float32 is IEEE float32 as in torch.
        self.jt.flags.use_tensorcore = 1 if self.precision == "tf32" else 0
        from n2v_repro.models.jittor_nets import BATCH_NORMS, build_model

        self.model = build_model(arch, BATCH_NORMS[batch_norm])
        self.batch_norm = batch_norm if has_batch_norm(arch) else None
        state = self.model.state_dict()
        self._params = {name: state[name] for name in self.trainable}
        self._peak_bytes = 0

    def _masked_mse(self, inputs: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> Any:
        """Sum of squared errors over masked pixels / number of masked pixels (whole batch)."""
        jt = self.jt
        out = self.model(jt.array(inputs))
        mask_var = jt.array(mask).float32()
        return ((out - jt.array(targets)) ** 2 * mask_var).sum() / mask_var.sum()

    # --- weights ----------------------------------------------------------------------------

    def _get_state(self) -> dict[str, np.ndarray]:
        return {name: var.numpy().copy() for name, var in self.model.state_dict().items()}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        for name, var in self.model.state_dict().items():
            var.update(self.jt.array(state[name]))
        self.jt.sync_all()

    # --- optimiser --------------------------------------------------------------------------

    def _make_adam(self, settings: OptimizerConfig) -> JittorAdam:
        return JittorAdam(self.jt, self._params, settings)

    # --- computation ------------------------------------------------------------------------

    def _set_training(self, training: bool) -> None:
        """Module.train()/eval() without their parameter bookkeeping, for exact resumes.

        Jittor's eval() stop_grad()s every parameter and from then on each train() call
        re-enables them with start_grad(), which replaces each parameter by an unexecuted
        clone op of itself. So after the first validation every training step's graph held
        those clones, and they change how Jittor fuses the step: some bias gradients (sums over
        batch and pixels) come out in another summation order, an ulp apart. A resumed run
        loads its parameters as plain arrays and has no clones until its first validation, so
        its first epoch drifted from the uninterrupted run's (2.4e-5 after 8 epochs). Only the
        is_train flags are needed: evaluation runs under jt.no_grad() anyway.
        """
        for module in self.model.modules():
            module.is_train = training

    def _forward_backward(
        self, inputs: np.ndarray, targets: np.ndarray, mask: np.ndarray
    ) -> tuple[Any, dict[str, Any]]:
        # Jittor has no backward()/zero_grad(): gradients come from jt.grad(loss, params).
        self._set_training(True)
        loss = self._masked_mse(inputs, targets, mask)
        names = list(self._params)
        grads = self.jt.grad(loss, [self._params[n] for n in names])
        return loss, dict(zip(names, grads, strict=True))

    def _train_step(
        self, adam: JittorAdam, inputs: np.ndarray, targets: np.ndarray, mask: np.ndarray
    ) -> Any:
        loss, grads = self._forward_backward(inputs, targets, mask)
        adam.update(grads)
        # Runs the step (weights, moments, batch-norm statistics) and frees its graph; on a
        # GPU it queues the kernels without waiting for them (no device sync).
        self.jt.sync_all()
        self._sample_memory()
        return loss

    def _gather_losses(self, losses: list[Any]) -> np.ndarray:
        return self.jt.concat([loss.reshape((1,)) for loss in losses]).numpy()

    def _apply_gradients(self, adam: JittorAdam, grads: dict[str, np.ndarray]) -> None:
        adam.update({name: self.jt.array(g) for name, g in grads.items()})
        self.jt.sync_all()

    def _loss_and_grads(
        self,
        inputs: np.ndarray,
        targets: np.ndarray,
        mask: np.ndarray,
        layers: dict[str, np.ndarray] | None = None,
    ) -> tuple[float, dict[str, np.ndarray]]:
        state = self.model.state_dict()
        buffers = {k: v.numpy().copy() for k, v in state.items() if is_buffer(k)}
        if layers is None:
            loss, grads = self._forward_backward(inputs, targets, mask)
        else:
            with recorded_layers(self.model, self.arch) as outputs:
                loss, grads = self._forward_backward(inputs, targets, mask)
            # One execution of the whole graph: the outputs read are those the gradients used.
            self.jt.sync([loss, *grads.values(), *outputs.values()])
            layers |= {name: out.numpy().copy() for name, out in outputs.items()}
            layers |= {name: state[name].numpy().copy() for name in buffers}
        result = float(loss.item()), {name: g.numpy().copy() for name, g in grads.items()}
        for name, value in buffers.items():
            state[name].update(self.jt.array(value))
        self.jt.sync_all()
        return result

    def _masked_loss(self, inputs: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> float:
        self._set_training(False)
        with self.jt.no_grad():
            loss = float(self._masked_mse(inputs, targets, mask).item())
        self._sample_memory()
        return loss

    def _predict(self, inputs: np.ndarray) -> np.ndarray:
        self._set_training(False)
        with self.jt.no_grad():
            out = self.model(self.jt.array(inputs)).numpy()
        self._sample_memory()
        return out

    # --- device -----------------------------------------------------------------------------

    def _sample_memory(self) -> None:
        if self.device == "cuda":
            used = self.jt.get_mem_info().total_cuda_used
            self._peak_bytes = max(self._peak_bytes, int(used))

    def peak_memory_mib(self) -> float | None:
        """Return the largest GPU memory Jittor's allocators held since the last reset.

        Jittor has no peak counter: this is the largest figure (in use + cached,
        jt.get_mem_info().total_cuda_used) seen after a step or a prediction. None on CPU.
        """
        if self.device != "cuda":
            return None
        # Only reads the recorded figure: the training monitor calls this from its own
        # thread, and Jittor is not meant to be called from two threads at once.
        return self._peak_bytes / 2**20

    def reset_peak_memory(self) -> None:
        self._peak_bytes = 0

    def synchronize(self) -> None:
        self.jt.sync_all(True)
