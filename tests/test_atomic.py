"""Atomic writes: leftovers of killed writes are cleaned up, permissions follow the umask."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from n2v_repro.io.atomic import atomic_path, save_npz, write_json


def test_temporary_file_of_a_killed_write_is_removed_by_the_next_write(tmp_path: Path) -> None:
    """A real kill mid-write leaves `.<name>.<pid>.tmp`; the next write of the target removes
    it (and the random-named debris of older versions), but nothing else."""
    target = tmp_path / "noisy" / "bsd400.npz"
    writer = textwrap.dedent(
        f"""
        import sys, time
        from n2v_repro.io.atomic import atomic_open
        with atomic_open({str(target)!r}, "wb") as handle:
            handle.write(b"half of an archive")
            handle.flush()
            print("writing", flush=True)
            time.sleep(60)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    try:
        assert process.stdout.readline().strip() == "writing"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    leftovers = list(target.parent.iterdir())
    assert [p.name for p in leftovers] == [f".bsd400.npz.{process.pid}.tmp"]
    older = target.with_name(".bsd400.npz.k3j_9zq1.tmp")  # tempfile.mkstemp's naming
    older.write_bytes(b"debris")
    unrelated = [target.with_name(name) for name in (".other.npz.123.tmp", "bsd400.npz.bak")]
    for path in unrelated:
        path.write_bytes(b"keep me")

    save_npz(target, {"x": np.arange(3)})

    with np.load(target) as archive:
        assert archive["x"].tolist() == [0, 1, 2]
    assert not any(p.exists() for p in [*leftovers, older])
    assert sorted(p.name for p in target.parent.iterdir()) == sorted(
        ["bsd400.npz", *(p.name for p in unrelated)]
    )


@pytest.fixture
def umask() -> Iterator[Callable[[int], None]]:
    original = os.umask(0o022)
    os.umask(original)
    yield os.umask
    os.umask(original)


def copy_into(target: Path) -> None:
    with atomic_path(target, suffix=".csv") as tmp:
        shutil.copyfile(__file__, tmp)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
@pytest.mark.parametrize(
    "write",
    [
        pytest.param(lambda p: write_json(p, {"a": 1}), id="write_json"),
        pytest.param(lambda p: save_npz(p, {"x": np.zeros(2)}), id="save_npz"),
        pytest.param(copy_into, id="atomic_path"),
    ],
)
def test_outputs_are_created_with_the_umask(
    tmp_path: Path, umask: Callable[[int], None], mask: int, write: Callable[[Path], None]
) -> None:
    umask(mask)
    target = tmp_path / "out" / "file"
    write(target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
