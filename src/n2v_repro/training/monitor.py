"""Resource sampling during training: a daemon thread writing `monitor.csv` at about 2 Hz.

Each row is flushed as soon as it is written, so a killed run keeps its rows.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import psutil

from n2v_repro.backends.gpu_select import nvml_device_for_cuda
from n2v_repro.io.formats import MONITOR_HEADER, monitor_line

logger = logging.getLogger(__name__)

_MIB = 1024.0 * 1024.0


@dataclass(frozen=True)
class Sample:
    """One monitor row; None where there is no data."""

    time_s: float
    cpu_percent: float
    rss_mib: float
    gpu_util_percent: float | None
    gpu_mem_mib: float | None
    framework_mem_mib: float | None

    def csv_row(self) -> str:
        values = (
            self.time_s,
            self.cpu_percent,
            self.rss_mib,
            self.gpu_util_percent,
            self.gpu_mem_mib,
            self.framework_mem_mib,
        )
        return monitor_line(values)


class _NvmlDevice:
    """Utilisation and used memory of one GPU through pynvml; disables itself on any failure.

    `gpu_index` None: this process's CUDA device 0, resolved through CUDA_VISIBLE_DEVICES.
    """

    def __init__(self, gpu_index: int | None) -> None:
        self._handle: Any = None
        self._pynvml: Any = None
        self.index: int | None = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._pynvml = pynvml
            if gpu_index is None:
                self._handle, self.index = nvml_device_for_cuda(pynvml, 0)
            else:
                self._handle = pynvml.nvmlDeviceGetHandleByIndex(gpu_index)
                self.index = gpu_index
            logger.info("monitoring GPU %s (NVML index)", self.index)
        except Exception as error:  # any NVML problem only disables the GPU columns
            logger.warning("GPU monitoring disabled: NVML unavailable (%s)", error)
            self.close()

    @property
    def available(self) -> bool:
        return self._handle is not None

    def read(self) -> tuple[float | None, float | None]:
        if self._handle is None:
            return None, None
        try:
            utilisation = self._pynvml.nvmlDeviceGetUtilizationRates(self._handle).gpu
            memory = self._pynvml.nvmlDeviceGetMemoryInfo(self._handle).used
        except Exception as error:  # e.g. the GPU fell off the bus
            logger.warning("GPU monitoring disabled: NVML query failed (%s)", error)
            self.close()
            return None, None
        return float(utilisation), memory / _MIB

    def close(self) -> None:
        if self._pynvml is not None:
            # Shutting down a half-initialised NVML is best effort.
            with contextlib.suppress(Exception):
                self._pynvml.nvmlShutdown()
        self._pynvml = None
        self._handle = None


class ResourceMonitor:
    """Sample CPU, RSS, GPU and framework memory into a CSV file from a daemon thread.

    The columns (`io.formats.MONITOR_COLUMNS`):

    - cpu_percent: this process's CPU use since the previous sample, all its threads together
      (psutil semantics: 200 means two cores busy); child processes are not counted.
    - rss_mib: resident set size of this process.
    - gpu_util_percent, gpu_mem_mib: NVML utilisation and used memory of the whole device
      (`gpu_index`), also counting other processes on it; empty on CPU or when NVML fails.
    - framework_mem_mib: what `framework_memory` returns (e.g. the framework's own allocator
      peak), called from the monitor thread; empty when it returns None or is not given.

    Parameters
    ----------
    csv_path : the CSV file; created with its header, or continued when `append` is set.
    interval_s : seconds between samples (0.5 = 2 Hz).
    device : ``"cpu"`` or ``"cuda"``; GPU columns are sampled only for ``"cuda"``.
    gpu_index : NVML index of the GPU to watch; None (default) watches this job's GPU, the
        one behind CUDA_VISIBLE_DEVICES's first entry.
    framework_memory : callable returning the framework's memory figure in MiB, or None.
    time_offset_s : added to every time_s (a resumed run continues its predecessor's clock).
    append : continue an existing file without writing a second header.
    pid : the process to watch (a reference's training in its own environment); None: this
        one.

    Use as a context manager, or call `start()` and `stop()`; `summary()` covers the samples
    of this object only (not rows of an earlier run in an appended file).
    """

    def __init__(
        self,
        csv_path: Path,
        interval_s: float = 0.5,
        device: str = "cpu",
        gpu_index: int | None = None,
        framework_memory: Callable[[], float | None] | None = None,
        time_offset_s: float = 0.0,
        append: bool = False,
        pid: int | None = None,
    ) -> None:
        if not (math.isfinite(interval_s) and interval_s > 0):
            raise ValueError(f"interval_s must be a positive number, got {interval_s!r}")
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        self.csv_path = Path(csv_path)
        self.interval_s = float(interval_s)
        self.device = device
        self.gpu_index = gpu_index
        self.framework_memory = framework_memory
        self.time_offset_s = float(time_offset_s)
        self.append = append
        self._samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._file: IO[str] | None = None
        self._process = psutil.Process(pid)
        self._gpu: _NvmlDevice | None = None
        self._framework_failed = False
        self._start_time = 0.0
        self._stopped = False

    def _open_csv(self) -> IO[str]:
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        if self.append and self.csv_path.is_file() and self.csv_path.stat().st_size > 0:
            with open(self.csv_path) as existing:
                first_line = existing.readline().rstrip("\r\n")
            if first_line != MONITOR_HEADER:
                raise ValueError(
                    f"{self.csv_path}: cannot append, its header is {first_line!r}, "
                    f"expected {MONITOR_HEADER!r}"
                )
            handle = open(self.csv_path, "a")  # noqa: SIM115 - kept open for the thread
            # A killed run may have left a partial last line; start ours on a fresh one.
            with open(self.csv_path, "rb") as existing:
                existing.seek(-1, 2)
                if existing.read(1) != b"\n":
                    handle.write("\n")
            return handle
        handle = open(self.csv_path, "w")  # noqa: SIM115
        handle.write(MONITOR_HEADER + "\n")
        handle.flush()
        return handle

    def start(self) -> ResourceMonitor:
        """Open the CSV file and start sampling; a monitor starts only once."""
        if self._thread is not None or self._stopped:
            raise RuntimeError("ResourceMonitor.start() may be called only once")
        self._file = self._open_csv()
        if self.device == "cuda":
            self._gpu = _NvmlDevice(self.gpu_index)
        # psutil's first cpu_percent() call only sets its reference point.
        self._process.cpu_percent(interval=None)
        self._start_time = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="ResourceMonitor", daemon=True)
        self._thread.start()
        return self

    def _framework_mib(self) -> float | None:
        if self.framework_memory is None or self._framework_failed:
            return None
        try:
            value = self.framework_memory()
        except Exception as error:  # a monitoring failure must not kill training
            logger.warning("framework memory monitoring disabled: %s", error)
            self._framework_failed = True
            return None
        return None if value is None else float(value)

    def _sample(self) -> None:
        gpu_util, gpu_mem = self._gpu.read() if self._gpu is not None else (None, None)
        sample = Sample(
            time_s=time.monotonic() - self._start_time + self.time_offset_s,
            cpu_percent=self._process.cpu_percent(interval=None),
            rss_mib=self._process.memory_info().rss / _MIB,
            gpu_util_percent=gpu_util,
            gpu_mem_mib=gpu_mem,
            framework_mem_mib=self._framework_mib(),
        )
        with self._lock:
            self._samples.append(sample)
            if self._file is not None:
                self._file.write(sample.csv_row() + "\n")
                self._file.flush()

    def _run(self) -> None:
        # Fixed-rate schedule: the sampling time itself does not stretch the interval.
        next_time = self._start_time + self.interval_s
        while not self._stop_event.wait(max(0.0, next_time - time.monotonic())):
            try:
                self._sample()
            except Exception as error:  # e.g. disk full: stop monitoring, never the training
                logger.warning("resource monitoring stopped: %s", error)
                return
            next_time += self.interval_s
            if next_time < time.monotonic():  # fell behind (suspended, overloaded): skip ahead
                next_time = time.monotonic() + self.interval_s

    def stop(self) -> None:
        """Stop sampling, write one last sample and close the file; safe to call repeatedly."""
        if self._stopped:
            return
        self._stopped = True
        if self._thread is None:
            return
        self._stop_event.set()
        self._thread.join()
        # A watched process (pid) that has ended has no last sample to give.
        with contextlib.suppress(psutil.NoSuchProcess):
            self._sample()
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
        if self._gpu is not None:
            self._gpu.close()

    def __enter__(self) -> ResourceMonitor:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def samples(self) -> list[Sample]:
        """A copy of the samples taken so far."""
        with self._lock:
            return list(self._samples)

    def summary(self) -> dict[str, float | None]:
        """Peaks and means over this monitor's samples; None where a column has no data."""
        samples = self.samples

        def values(column: str) -> list[float]:
            return [getattr(s, column) for s in samples if getattr(s, column) is not None]

        def peak(column: str) -> float | None:
            data = values(column)
            return max(data) if data else None

        def mean(column: str) -> float | None:
            data = values(column)
            return sum(data) / len(data) if data else None

        return {
            "peak_rss_mib": peak("rss_mib"),
            "mean_cpu_percent": mean("cpu_percent"),
            "peak_gpu_mem_mib": peak("gpu_mem_mib"),
            "mean_gpu_util_percent": mean("gpu_util_percent"),
            "peak_framework_mem_mib": peak("framework_mem_mib"),
        }
