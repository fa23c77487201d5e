"""One GPU per job (backends/gpu_select.py) and the monitor watching that job's GPU.

There is no GPU here: concurrent jobs are real processes competing for real flocks over a
pool of GPU names, and NVML is a fake module whose index order differs from the PCI order, so
that a wrong mapping shows.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from n2v_repro.backends import gpu_select
from n2v_repro.backends.gpu_select import (
    GpuSelectionError,
    acquire_gpu,
    gpu_pool,
    nvml_device_for_cuda,
)
from n2v_repro.training.monitor import ResourceMonitor

MIB = 1024 * 1024


class FakeNvml:
    """pynvml over four GPUs; NVML index i is not the i-th GPU in PCI order."""

    class NVMLError(Exception):
        pass

    def __init__(self) -> None:
        # (uuid, PCI bus id, used memory in MiB) by NVML index
        self.devices = [
            ("GPU-cccc-3", "00000000:C1:00.0", 3000),
            ("GPU-aaaa-1", "00000000:01:00.0", 1000),
            ("GPU-dddd-4", "00000000:E1:00.0", 4000),
            ("GPU-bbbb-2", "00000000:41:00.0", 2000),
        ]
        self.initialised = 0

    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's names
        self.initialised += 1

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.initialised -= 1

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:  # noqa: N802
        if not 0 <= index < len(self.devices):
            raise self.NVMLError("invalid argument")
        return index  # the handle is the NVML index

    def nvmlDeviceGetIndex(self, handle: int) -> int:  # noqa: N802
        return handle

    def nvmlDeviceGetUUID(self, handle: int) -> str:  # noqa: N802
        return self.devices[handle][0]

    def nvmlDeviceGetPciInfo(self, handle: int) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(busId=self.devices[handle][1].encode())  # bytes, as older pynvml

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(used=self.devices[handle][2] * MIB)

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(gpu=10 * (handle + 1))


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "N2V_GPUS", "N2V_GPU_LOCK_DIR"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    # An earlier test of the session may have imported Jittor (CPU): not this process's CUDA.
    monkeypatch.delitem(sys.modules, "jittor", raising=False)


# --- NVML index of this job's GPU -------------------------------------------------------------


@pytest.mark.parametrize(
    ("visible", "uuid"),
    [
        ("GPU-bbbb-2", "GPU-bbbb-2"),  # by UUID
        ("GPU-dddd", "GPU-dddd-4"),  # a unique UUID prefix, as CUDA accepts
        ("2", "GPU-cccc-3"),  # third in PCI order: 01, 41, C1, E1
        ("0,3", "GPU-aaaa-1"),  # device 0 is the first entry
        (None, "GPU-aaaa-1"),  # nothing set: CUDA device 0 is the first in PCI order
    ],
)
def test_nvml_device_for_cuda(visible: str | None, uuid: str, clean_env) -> None:
    nvml = FakeNvml()
    handle, index = nvml_device_for_cuda(nvml, 0, visible)
    assert nvml.nvmlDeviceGetUUID(handle) == uuid
    assert index == [d[0] for d in nvml.devices].index(uuid)


@pytest.mark.parametrize("visible", ["GPU-", "7", "-1", "gpu0"])
def test_nvml_device_for_cuda_rejects_what_names_no_gpu(visible: str, clean_env) -> None:
    with pytest.raises(ValueError):
        nvml_device_for_cuda(FakeNvml(), 0, visible)


def test_monitor_samples_the_jobs_gpu_not_device_0(tmp_path, monkeypatch, clean_env) -> None:
    nvml = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-dddd-4")  # NVML index 2
    with ResourceMonitor(tmp_path / "monitor.csv", interval_s=0.05, device="cuda") as monitor:
        time.sleep(0.2)
    summary = monitor.summary()
    assert summary["peak_gpu_mem_mib"] == 4000.0
    assert summary["mean_gpu_util_percent"] == 30.0
    assert nvml.initialised == 0  # shut down again

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # second in PCI order: GPU-bbbb-2
    with ResourceMonitor(tmp_path / "again.csv", interval_s=0.05, device="cuda") as monitor:
        time.sleep(0.12)
    assert monitor.summary()["peak_gpu_mem_mib"] == 2000.0

    explicit = ResourceMonitor(tmp_path / "third.csv", interval_s=0.05, device="cuda", gpu_index=0)
    with explicit:
        time.sleep(0.12)
    assert explicit.summary()["peak_gpu_mem_mib"] == 3000.0  # NVML index 0, as asked


# --- the pool ---------------------------------------------------------------------------------


def test_gpu_pool_sources_in_order(monkeypatch, clean_env) -> None:
    nvml = FakeNvml()
    assert gpu_pool(nvml) == ["GPU-aaaa-1", "GPU-bbbb-2", "GPU-cccc-3", "GPU-dddd-4"]
    assert nvml.initialised == 0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")  # a scheduler's allocation
    assert gpu_pool(nvml) == ["2", "3"]
    monkeypatch.setenv("N2V_GPUS", "0, 1,-1,2")  # CUDA stops at an invalid entry
    assert gpu_pool(nvml) == ["0", "1"]
    monkeypatch.setenv("N2V_GPUS", "")
    assert gpu_pool(nvml) == []


def test_no_driver_means_an_empty_pool_and_a_clear_error(tmp_path, monkeypatch, clean_env):
    nvml = FakeNvml()

    def no_driver() -> None:
        raise nvml.NVMLError("driver not loaded")

    nvml.nvmlInit = no_driver  # type: ignore[method-assign]
    monkeypatch.setattr(gpu_select, "_load_pynvml", lambda: nvml)
    assert gpu_pool() == []
    with pytest.raises(GpuSelectionError, match="no GPU to choose from"):
        acquire_gpu(tmp_path)


def test_refused_once_cuda_may_have_started(tmp_path, monkeypatch, clean_env) -> None:
    monkeypatch.setitem(sys.modules, "jittor", SimpleNamespace())
    with pytest.raises(GpuSelectionError, match="before CUDA starts"):
        acquire_gpu(tmp_path, pool=["0"])


# --- concurrent jobs ----------------------------------------------------------------------------

JOB = """
import os, sys, time
from pathlib import Path
from n2v_repro.backends.gpu_select import GpuSelectionError, acquire_gpu
try:
    lease = acquire_gpu({locks!r}, wait_s=float(sys.argv[1]), poll_s=0.05)
except GpuSelectionError as error:
    print("ERROR", error, flush=True)
    sys.exit(3)
print(os.environ["CUDA_VISIBLE_DEVICES"], os.environ["CUDA_DEVICE_ORDER"], flush=True)
release = Path(sys.argv[2])
while not release.exists():
    time.sleep(0.02)
"""


def start_job(script: Path, wait_s: float, release: Path) -> subprocess.Popen:
    env = {**os.environ, "N2V_GPUS": "0,1"}
    return subprocess.Popen(
        [sys.executable, str(script), str(wait_s), str(release)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def first_line(job: subprocess.Popen) -> str:
    assert job.stdout is not None
    return job.stdout.readline().strip()


def test_concurrent_jobs_get_different_gpus(tmp_path: Path, clean_env) -> None:
    locks = tmp_path / "gpu_locks"
    script = tmp_path / "job.py"
    script.write_text(JOB.format(locks=str(locks)))
    release = [tmp_path / f"release{i}" for i in range(4)]
    jobs = []
    try:
        jobs = [start_job(script, 0, release[0]), start_job(script, 0, release[1])]
        chosen = [first_line(job) for job in jobs]
        assert sorted(chosen) == ["0 PCI_BUS_ID", "1 PCI_BUS_ID"]

        third = start_job(script, 0, release[2])  # both taken, no waiting: a clear error
        jobs.append(third)
        assert third.wait(timeout=60) == 3
        message = first_line(third)
        assert "all 2 GPU(s) are taken" in message and f"pid {jobs[0].pid}" in message

        waiting = start_job(script, 30, release[3])  # waits for a GPU to come free
        jobs.append(waiting)
        time.sleep(0.3)
        jobs[0].send_signal(signal.SIGKILL)  # a crashed job leaves no stale lock
        jobs[0].wait(timeout=60)
        assert first_line(waiting) == chosen[0]
    finally:
        for path in release:
            path.touch()
        for job in jobs:
            job.wait(timeout=60)
    assert sorted(p.name.split("-")[-1] for p in locks.iterdir()) == ["0.lock", "1.lock"]


def test_lease_release_frees_the_gpu_in_process(tmp_path: Path, clean_env) -> None:
    with acquire_gpu(tmp_path, pool=["GPU-aaaa-1"]) as lease:
        assert lease.held and os.environ["CUDA_VISIBLE_DEVICES"] == "GPU-aaaa-1"
        with pytest.raises(GpuSelectionError, match="taken"):
            acquire_gpu(tmp_path, pool=["GPU-aaaa-1"])  # a second flock, even in-process
    assert not lease.held
    again = acquire_gpu(tmp_path, pool=["GPU-aaaa-1"])
    again.release()


def test_claim_gpu_for_job_by_device(tmp_path: Path, monkeypatch, clean_env) -> None:
    monkeypatch.setenv("N2V_GPUS", "")
    assert gpu_select.claim_gpu_for_job("cpu", tmp_path) is None
    assert gpu_select.claim_gpu_for_job("auto", tmp_path) is None  # no GPU: runs on CPU
    with pytest.raises(GpuSelectionError, match="no GPU to choose from"):
        gpu_select.claim_gpu_for_job("cuda", tmp_path)
    with pytest.raises(GpuSelectionError, match="auto, cpu or cuda"):
        gpu_select.claim_gpu_for_job("gpu", tmp_path)
    monkeypatch.setenv("N2V_GPUS", "3")
    lease = gpu_select.claim_gpu_for_job("auto", tmp_path)
    assert lease is not None and lease.gpu == "3" and os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    lease.release()
