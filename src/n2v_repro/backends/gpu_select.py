"""One GPU per job when several training or evaluation jobs share a node with several GPUs.

Two parts (docs/gpu.md, "Several GPUs on one node"):

- How many GPU jobs run at once is Snakemake's business: every GPU rule asks for
  `resources: gpu=1` and the run is given `--resources gpu=N`, N the node's GPUs.
- Which GPU a job takes is decided in the job, by `acquire_gpu()`, before the framework
  initialises CUDA: it tries an exclusive, non-blocking `flock` on
  `<lock_dir>/gpu-<host>-<gpu>.lock` for each GPU of the pool in turn and keeps the first it
  gets for the life of the process. The kernel drops a flock when its process ends, however
  it ends (SIGKILL, out-of-memory kill), so no stale lock outlives a crashed job, unlike lock
  files created with O_EXCL. It then sets `CUDA_VISIBLE_DEVICES` to that one GPU (its UUID
  when NVML lists the GPUs) and `CUDA_DEVICE_ORDER=PCI_BUS_ID`, so the framework sees exactly
  one device, cuda:0.

The pool is, first found: the `pool` argument, env `N2V_GPUS` (comma-separated indices or
UUIDs), the entries of an inherited `CUDA_VISIBLE_DEVICES` (a scheduler's allocation), the
GPUs NVML lists in PCI bus order. `nvml_device_for_cuda` maps a CUDA device index of this
process back to its NVML handle, for the resource monitor: NVML ignores CUDA_VISIBLE_DEVICES
and numbers GPUs its own way.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from n2v_repro.errors import UserError

POOL_ENV = "N2V_GPUS"
LOCK_DIR_ENV = "N2V_GPU_LOCK_DIR"
DEFAULT_LOCK_DIR = Path(".snakemake") / "gpu_locks"
_NO_DEVICE = {"", "-1", "none", "nodevfiles"}


class GpuSelectionError(UserError, RuntimeError):
    """No GPU can be given to this job."""


def _load_pynvml() -> ModuleType | None:
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _nvml_handles_by_pci(pynvml: Any) -> list[Any]:
    """Every NVML device handle, in PCI bus id order (CUDA's order with PCI_BUS_ID)."""
    handles = [
        pynvml.nvmlDeviceGetHandleByIndex(index) for index in range(pynvml.nvmlDeviceGetCount())
    ]
    return sorted(handles, key=lambda h: _text(pynvml.nvmlDeviceGetPciInfo(h).busId).lower())


def _split_visible(value: str) -> list[str]:
    entries = [entry.strip() for entry in value.split(",")]
    if not entries or entries[0].lower() in _NO_DEVICE:
        return []
    # CUDA stops at the first invalid entry (e.g. -1): so do we.
    kept = []
    for entry in entries:
        if entry.lower() in _NO_DEVICE or entry.startswith("-"):
            break
        kept.append(entry)
    return kept


def gpu_pool(pynvml: Any | None = None) -> list[str]:
    """List the GPUs this job may choose from; see the module docstring for the order of sources."""
    configured = os.environ.get(POOL_ENV)
    if configured is not None:
        return _split_visible(configured)
    inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
    if inherited is not None:
        return _split_visible(inherited)
    pynvml = pynvml or _load_pynvml()
    if pynvml is None:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver: no GPU to choose
        return []
    try:
        return [_text(pynvml.nvmlDeviceGetUUID(h)) for h in _nvml_handles_by_pci(pynvml)]
    finally:
        pynvml.nvmlShutdown()


@dataclass
class GpuLease:
    """The GPU this process holds; the lock goes when `release()` runs or the process ends."""

    gpu: str
    lock_path: Path
    _fd: int | None = field(default=None, repr=False)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> GpuLease:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def _lock_name(gpu: str) -> str:
    host = socket.gethostname().split(".")[0] or "host"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"gpu-{host}-{gpu}") + ".lock"


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    # For people reading the folder: who holds it. The lock itself is the flock.
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.ctime()}\n".encode())
    return fd


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "?"
    except OSError:
        return "?"


def _cuda_started() -> bool:
    if "jittor" in sys.modules:  # Jittor initialises CUDA when imported
        return True
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_initialized())


def acquire_gpu(
    lock_dir: Path | str | None = None,
    pool: list[str] | None = None,
    wait_s: float = 0.0,
    poll_s: float = 0.5,
) -> GpuLease:
    """Lock a free GPU of the pool for this process and make it the only one CUDA sees.

    Call before the framework initialises CUDA. `lock_dir` defaults to env N2V_GPU_LOCK_DIR,
    else `.snakemake/gpu_locks` in the working directory; every job of a node must use the
    same folder. Waits up to `wait_s` seconds for a GPU to come free, then raises
    GpuSelectionError naming the holders.
    """
    if _cuda_started():
        raise GpuSelectionError(
            "acquire_gpu() must run before CUDA starts (before `import jittor` and before "
            "torch's first CUDA call): CUDA_VISIBLE_DEVICES is read once"
        )
    gpus = list(pool) if pool is not None else gpu_pool()
    if not gpus:
        raise GpuSelectionError(
            f"no GPU to choose from: set {POOL_ENV} or CUDA_VISIBLE_DEVICES, or install the "
            "NVIDIA driver and nvidia-ml-py (pynvml)"
        )
    folder = Path(lock_dir or os.environ.get(LOCK_DIR_ENV) or DEFAULT_LOCK_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + max(0.0, wait_s)
    while True:
        for gpu in gpus:
            path = folder / _lock_name(gpu)
            fd = _try_lock(path)
            if fd is not None:
                # Integer entries then count GPUs as NVML's PCI order does (a user's own
                # CUDA_DEVICE_ORDER stands).
                os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
                os.environ["CUDA_VISIBLE_DEVICES"] = gpu
                return GpuLease(gpu, path, fd)
        if time.monotonic() >= deadline:
            holders = "; ".join(f"{gpu}: {_holder(folder / _lock_name(gpu))}" for gpu in gpus)
            raise GpuSelectionError(
                f"all {len(gpus)} GPU(s) are taken ({holders}); locks in {folder}. Run at most "
                f"as many GPU jobs as GPUs (snakemake --resources gpu={len(gpus)})"
            )
        time.sleep(poll_s)


def claim_gpu_for_job(
    device: str, lock_dir: Path | str | None = None, wait_s: float = 120.0
) -> GpuLease | None:
    """Lease a GPU for `device` (None on CPU): what a training or evaluation job calls first.

    cpu: None. auto: a lease when there is a GPU to choose from, else None (the job runs on
    CPU). cuda: a lease, or GpuSelectionError. It waits up to `wait_s` for a GPU held by a
    job of another run; within one run Snakemake's `gpu` resource already keeps one free.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise GpuSelectionError(f"device must be auto, cpu or cuda, not {device!r}")
    if device == "cpu":
        return None
    if device == "auto" and not gpu_pool():
        return None
    return acquire_gpu(lock_dir, wait_s=wait_s)


def nvml_device_for_cuda(
    pynvml: Any, cuda_index: int = 0, visible: str | None = None
) -> tuple[Any, int]:
    """(NVML handle, NVML index) of this process's CUDA device `cuda_index`.

    `visible` defaults to env CUDA_VISIBLE_DEVICES. A UUID entry (GPU-..., MIG-...) is looked
    up by UUID (a unique prefix is enough, as for CUDA); an integer entry, or the index itself
    when nothing is set, counts GPUs in PCI bus order, as CUDA does with
    CUDA_DEVICE_ORDER=PCI_BUS_ID (which `acquire_gpu` sets). Raises ValueError when the entry
    does not name a GPU. `pynvml.nvmlInit()` must have run.
    """
    if visible is None:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    entry = str(cuda_index)
    if visible is not None:
        entries = _split_visible(visible)
        if cuda_index >= len(entries):
            raise ValueError(
                f"CUDA device {cuda_index} does not exist with CUDA_VISIBLE_DEVICES={visible!r}"
            )
        entry = entries[cuda_index]
    if entry.upper().startswith(("GPU-", "MIG-")):
        handles = [
            pynvml.nvmlDeviceGetHandleByIndex(index) for index in range(pynvml.nvmlDeviceGetCount())
        ]
        matches = [h for h in handles if _text(pynvml.nvmlDeviceGetUUID(h)).startswith(entry)]
        if len(matches) != 1:
            raise ValueError(f"{entry!r} matches {len(matches)} GPU(s) by UUID, expected 1")
        handle = matches[0]
    else:
        try:
            position = int(entry)
        except ValueError:
            raise ValueError(f"CUDA_VISIBLE_DEVICES entry {entry!r} is no index or UUID") from None
        by_pci = _nvml_handles_by_pci(pynvml)
        if not 0 <= position < len(by_pci):
            raise ValueError(f"GPU {position} does not exist: NVML lists {len(by_pci)}")
        handle = by_pci[position]
    return handle, int(pynvml.nvmlDeviceGetIndex(handle))
