"""The machine a measurement was taken on, named in benchmark records and training summaries."""

from __future__ import annotations

import contextlib
import os
import platform


def machine_name() -> str:
    """Return the CPU model and the CPUs this process may use, e.g. 'AMD EPYC 7B13 (2 CPUs)'."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model} ({len(os.sched_getaffinity(0))} CPUs)"
