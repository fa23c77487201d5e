"""Jittor backend: the interface of docs/backend_interface.md over models_jittor.

backend_torch.py implements the same members with the same semantics in PyTorch. Jittor has
no backward()/zero_grad(): gradients come from jt.grad(loss, params) and the Adam update is
written with jt ops (Var.update), executed lazily and forced with jt.sync_all().
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from dataclasses import replace
from types import ModuleType
from typing import Any

import numpy as np

from n2v_repro.backends.base import (
    AdamSettings,
    as_float32,
    check_batch,
    check_images,
    check_optimizer_state,
    check_weights,
    moment_keys,
)
from n2v_repro.backends.jittor_env import cuda_driver_available, prepare_jittor_env
from n2v_repro.models.spec import ARCH_STRIDE, is_buffer, trainable_names


def set_cpu_threads(threads: int) -> None:
    """Jittor's CPU convolutions run in oneDNN (GNU OpenMP); its own kernels are serial.

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


class JittorAdam:
    """Adam over named parameters with either semantics (see backend_common)."""

    def __init__(self, jt: ModuleType, params: dict[str, Any], settings: AdamSettings):
        self.jt = jt
        self.params = params
        self.settings = settings
        self.step = 0
        self.m = {name: jt.zeros(p.shape, "float32").stop_grad() for name, p in params.items()}
        self.v = {name: jt.zeros(p.shape, "float32").stop_grad() for name, p in params.items()}

    def update(self, grads: dict[str, Any]) -> None:
        jt = self.jt
        self.step += 1
        b1, b2 = self.settings.betas
        step_size, sqrt_bc2 = self.settings.coefficients(self.step)
        eps = self.settings.eps
        for name, p in self.params.items():
            g = grads[name].stop_grad()
            m, v = self.m[name], self.v[name]
            m.update(m * b1 + g * (1 - b1))
            v.update(v * b2 + g * g * (1 - b2))
            p.update(p - (m / (jt.sqrt(v) / sqrt_bc2 + eps)) * step_size)


class JittorBackend:
    name = "jittor"

    def __init__(self, arch: str, device: str = "auto", threads: int | None = None):
        if threads:
            set_cpu_threads(threads)
        self.jt, self.device = import_jittor(device)
        from n2v_repro.models.jittor_nets import build_model

        self.arch = arch
        self.stride = ARCH_STRIDE[arch]
        self.model = build_model(arch)
        state = self.model.state_dict()
        self._params = {name: state[name] for name in trainable_names(arch)}
        self._optimizer: JittorAdam | None = None
        self._peak_bytes = 0

    # --- weights ----------------------------------------------------------------------------

    def load_weights(self, weights: dict[str, np.ndarray]) -> None:
        check_weights(self.arch, weights)
        for name, var in self.model.state_dict().items():
            var.update(self.jt.array(as_float32(weights[name])))
        self.jt.sync_all()

    def get_weights(self) -> dict[str, np.ndarray]:
        return {k: v.numpy().astype(np.float32) for k, v in self.model.state_dict().items()}

    # --- optimiser --------------------------------------------------------------------------

    def configure_optimizer(
        self, lr: float, betas: tuple[float, float], eps: float, semantics: str = "torch"
    ) -> None:
        settings = AdamSettings(
            float(lr), (float(betas[0]), float(betas[1])), float(eps), semantics
        )
        self._optimizer = JittorAdam(self.jt, self._params, settings)

    def _adam(self) -> JittorAdam:
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
            state[m_key] = adam.m[name].numpy().copy()
            state[v_key] = adam.v[name].numpy().copy()
        return state

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        adam = self._adam()
        step = check_optimizer_state(state, list(self._params))
        for name in self._params:
            m_key, v_key = moment_keys(name)
            adam.m[name].update(self.jt.array(as_float32(state[m_key])))
            adam.v[name].update(self.jt.array(as_float32(state[v_key])))
        adam.step = step
        self.jt.sync_all()

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

    def _loss(self, inputs: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> Any:
        jt = self.jt
        out = self.model(jt.array(as_float32(inputs)))
        mask_var = jt.array(as_float32(mask))
        return ((out - jt.array(as_float32(targets))) ** 2 * mask_var).sum() / mask_var.sum()

    def _train_loss_and_grads(
        self, inputs: np.ndarray, targets: np.ndarray, mask: np.ndarray
    ) -> tuple[Any, dict[str, Any]]:
        check_batch(self.arch, inputs, targets, mask)
        self._set_training(True)
        loss = self._loss(inputs, targets, mask)
        names = list(self._params)
        grads = self.jt.grad(loss, [self._params[n] for n in names])
        return loss, dict(zip(names, grads, strict=True))

    def train_step(self, inputs: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> float:
        adam = self._adam()
        loss, grads = self._train_loss_and_grads(inputs, targets, mask)
        adam.update(grads)
        # Executes the step (weights, moments, batch-norm statistics) and frees its graph.
        self.jt.sync_all()
        self._sample_memory()
        # A nan loss is returned as is: the training loop decides what to do with it.
        return float(loss.item())

    def loss_and_grads(
        self, inputs: np.ndarray, targets: np.ndarray, mask: np.ndarray
    ) -> tuple[float, dict[str, np.ndarray]]:
        """Train-mode loss and gradients; weights and batch-norm statistics stay as they were."""
        state = self.model.state_dict()
        buffers = {k: v.numpy().copy() for k, v in state.items() if is_buffer(k)}
        loss, grads = self._train_loss_and_grads(inputs, targets, mask)
        result = float(loss.item()), {name: g.numpy().copy() for name, g in grads.items()}
        for name, value in buffers.items():
            state[name].update(self.jt.array(value))
        self.jt.sync_all()
        return result

    def masked_loss(self, inputs: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> float:
        check_batch(self.arch, inputs, targets, mask)
        self._set_training(False)
        with self.jt.no_grad():
            loss = float(self._loss(inputs, targets, mask).item())
        self._sample_memory()
        return loss

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        check_images(self.arch, inputs)
        self._set_training(False)
        with self.jt.no_grad():
            out = self.model(self.jt.array(as_float32(inputs))).numpy().astype(np.float32)
        self._sample_memory()
        return out

    # --- device -----------------------------------------------------------------------------

    def _sample_memory(self) -> None:
        if self.device == "cuda":
            used = self.jt.get_mem_info().total_cuda_used
            self._peak_bytes = max(self._peak_bytes, int(used))

    def peak_memory_mib(self) -> float | None:
        """Jittor has no peak counter: this is the largest GPU memory its allocators held
        (in use + cached, jt.get_mem_info().total_cuda_used) seen after a step or a
        prediction since the last reset. None on CPU."""
        if self.device != "cuda":
            return None
        # Only reads the recorded figure: the training monitor calls this from its own
        # thread, and Jittor is not meant to be called from two threads at once.
        return self._peak_bytes / 2**20

    def reset_peak_memory(self) -> None:
        self._peak_bytes = 0

    def synchronize(self) -> None:
        self.jt.sync_all(True)
