"""The resource monitor thread and its monitor.csv."""

from __future__ import annotations

import csv
import itertools
import logging
import time
from pathlib import Path

import pytest

from n2v_repro.io.formats import MONITOR_HEADER as HEADER
from n2v_repro.training.monitor import ResourceMonitor


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def column(rows: list[dict[str, str]], name: str) -> list[float]:
    return [float(row[name]) for row in rows if row[name] != ""]


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    total = 0
    while time.perf_counter() < end:
        total += sum(range(1000))


def test_rows_at_two_hertz_with_header(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "monitor.csv"
    with ResourceMonitor(path) as monitor:
        time.sleep(1.8)
    lines = path.read_text().splitlines()
    assert lines[0] == HEADER
    rows = read_rows(path)
    # Samples at 0.5, 1.0, 1.5 s and a last one at stop.
    assert 3 <= len(rows) <= 5
    times = column(rows, "time_s")
    gaps = [b - a for a, b in itertools.pairwise(times[:-1])]
    assert all(0.35 < gap < 0.8 for gap in gaps)
    assert 0.3 < times[0] < 0.8 and times[-1] == pytest.approx(1.8, abs=0.3)
    assert all(value > 10 for value in column(rows, "rss_mib"))
    for name in ("gpu_util_percent", "gpu_mem_mib", "framework_mem_mib"):
        assert all(row[name] == "" for row in rows)
    assert len(monitor.samples) == len(rows)


def test_rows_are_flushed_while_running(tmp_path: Path) -> None:
    path = tmp_path / "monitor.csv"
    with ResourceMonitor(path, interval_s=0.1):
        time.sleep(0.55)
        # Read before stop(): rows of a run killed now would already be on disk.
        assert len(read_rows(path)) >= 2


def test_summary_matches_rows_and_framework_memory(tmp_path: Path) -> None:
    path = tmp_path / "monitor.csv"
    calls = itertools.count(1)
    with ResourceMonitor(path, interval_s=0.1, framework_memory=lambda: 10.0 * next(calls)) as mon:
        busy(1.0)
    rows = read_rows(path)
    summary = mon.summary()
    assert set(summary) == {
        "peak_rss_mib",
        "mean_cpu_percent",
        "peak_gpu_mem_mib",
        "mean_gpu_util_percent",
        "peak_framework_mem_mib",
    }
    framework = column(rows, "framework_mem_mib")
    assert framework == [10.0 * n for n in range(1, len(rows) + 1)]
    assert summary["peak_framework_mem_mib"] == pytest.approx(max(framework))
    assert summary["peak_rss_mib"] == pytest.approx(max(column(rows, "rss_mib")), abs=1e-3)
    cpu = column(rows, "cpu_percent")
    assert summary["mean_cpu_percent"] == pytest.approx(sum(cpu) / len(cpu), abs=1e-3)
    assert summary["mean_cpu_percent"] > 10  # the busy loop ran on this process
    assert summary["peak_gpu_mem_mib"] is None and summary["mean_gpu_util_percent"] is None


def test_append_continues_file_with_offset(tmp_path: Path) -> None:
    path = tmp_path / "monitor.csv"
    with ResourceMonitor(path, interval_s=0.1):
        time.sleep(0.35)
    first_rows = len(read_rows(path))
    with ResourceMonitor(path, interval_s=0.1, time_offset_s=100.0, append=True) as mon:
        time.sleep(0.35)
    assert path.read_text().count("time_s") == 1
    rows = read_rows(path)
    assert first_rows >= 2 and len(mon.samples) >= 2  # both runs sampled (~4 rows each)
    assert len(rows) == first_rows + len(mon.samples)
    times = column(rows, "time_s")
    assert all(t < 10 for t in times[:first_rows])
    assert all(100 < t < 110 for t in times[first_rows:])


def test_append_after_killed_run_starts_a_fresh_line(tmp_path: Path) -> None:
    path = tmp_path / "monitor.csv"
    path.write_text(HEADER + "\n0.500,12.0,100.0,,,\n1.000,1")  # cut mid-row
    with ResourceMonitor(path, interval_s=0.1, time_offset_s=1.0, append=True) as mon:
        time.sleep(0.15)
    lines = path.read_text().splitlines()
    assert lines[:3] == [HEADER, "0.500,12.0,100.0,,,", "1.000,1"]
    assert len(mon.samples) >= 1 and len(lines) == 3 + len(mon.samples)
    assert all(len(line.split(",")) == len(HEADER.split(",")) for line in lines[3:])


def test_append_to_missing_file_writes_header(tmp_path: Path) -> None:
    path = tmp_path / "monitor.csv"
    with ResourceMonitor(path, interval_s=0.1, append=True) as mon:
        time.sleep(0.15)
    assert path.read_text().splitlines()[0] == HEADER
    assert len(read_rows(path)) == len(mon.samples) >= 1


def test_append_to_foreign_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "monitor.csv"
    path.write_text("epoch,loss\n1,0.5\n")
    with pytest.raises(ValueError, match="cannot append"):
        ResourceMonitor(path, append=True).start()
    assert path.read_text() == "epoch,loss\n1,0.5\n"


def test_without_append_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "monitor.csv"
    path.write_text(HEADER + "\n" + "9.0,1,1,,,\n" * 50)
    with ResourceMonitor(path, interval_s=0.1) as mon:
        time.sleep(0.15)
    assert 1 <= len(read_rows(path)) == len(mon.samples) < 50
    assert all(float(row["time_s"]) < 9 for row in read_rows(path))


def test_cuda_without_working_nvml_leaves_gpu_columns_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pynvml = pytest.importorskip("pynvml")

    def no_driver() -> None:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

    monkeypatch.setattr(pynvml, "nvmlInit", no_driver)
    path = tmp_path / "monitor.csv"
    with (
        caplog.at_level(logging.WARNING, logger="n2v_repro.training.monitor"),
        ResourceMonitor(path, interval_s=0.1, device="cuda") as mon,
    ):
        time.sleep(0.35)
    rows = read_rows(path)
    assert len(rows) >= 3
    assert all(row["gpu_util_percent"] == "" and row["gpu_mem_mib"] == "" for row in rows)
    assert len([r for r in caplog.records if "NVML" in r.getMessage()]) == 1
    assert mon.summary()["peak_gpu_mem_mib"] is None


def test_cuda_on_this_machine_never_raises(tmp_path: Path) -> None:
    # Real NVML: filled GPU columns on a GPU machine, empty ones elsewhere, no exception.
    path = tmp_path / "monitor.csv"
    with ResourceMonitor(path, interval_s=0.1, device="cuda") as mon:
        time.sleep(0.25)
    rows = read_rows(path)
    assert len(rows) == len(mon.samples) >= 1
    filled = column(rows, "gpu_mem_mib")
    assert len(filled) in (0, len(rows))
    summary = mon.summary()
    assert (summary["peak_gpu_mem_mib"] is None) == (not filled)


def test_failing_framework_memory_is_disabled_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> float:
        raise RuntimeError("allocator gone")

    path = tmp_path / "monitor.csv"
    with (
        caplog.at_level(logging.WARNING, logger="n2v_repro.training.monitor"),
        ResourceMonitor(path, interval_s=0.1, framework_memory=broken),
    ):
        time.sleep(0.35)
    rows = read_rows(path)
    assert len(rows) >= 3 and all(row["framework_mem_mib"] == "" for row in rows)
    assert len([r for r in caplog.records if "allocator gone" in r.getMessage()]) == 1


def test_stop_is_idempotent_and_start_only_once(tmp_path: Path) -> None:
    monitor = ResourceMonitor(tmp_path / "monitor.csv", interval_s=0.1)
    monitor.stop()  # never started: nothing to do
    started = ResourceMonitor(tmp_path / "other.csv", interval_s=0.1).start()
    started.stop()
    rows = len(read_rows(tmp_path / "other.csv"))
    assert rows == len(started.samples) >= 1  # stop() takes a last sample
    started.stop()
    assert len(read_rows(tmp_path / "other.csv")) == rows
    with pytest.raises(RuntimeError, match="once"):
        started.start()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"interval_s": 0.0}, "interval_s"), ({"device": "tpu"}, "device")],
)
def test_bad_arguments_raise(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ResourceMonitor(tmp_path / "monitor.csv", **kwargs)
