"""Atomic file writes: a reader never sees a half-written output.

Everything is written to a temporary name in the destination folder and renamed into place
only when complete, so an interruption (error, kill, full disk) leaves either the old file
or no file, never a truncated one.

The temporary name is derived from the target, `.<name>.<pid><suffix>`, and every write of a
target first deletes such leftovers (a SIGKILL leaves its temporary file behind, ~250 MB for
a noisy data set), so debris never outlives the next successful write. The pipeline has one
writer per target at a time; a concurrent second writer would make the first fail at its
rename, never corrupt the target. Files are created with the usual 0o666 & ~umask
permissions (tempfile.mkstemp would make every output private, 0o600).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from n2v_repro.errors import UserError

# The middle part of a temporary name: a pid, or mkstemp's random letters from older versions.
_TEMP_TAG = re.compile(r"[A-Za-z0-9_]+")


# Write failures that are the machine's state, not a bug: a full disk or quota, a read-only
# file system, no permission.
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


class WriteError(UserError, OSError):
    """An output could not be written for a reason the user can fix (disk, permissions)."""


def _write_error(path: Path, error: OSError) -> WriteError:
    folder = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    try:
        free = f"{shutil.disk_usage(folder).free / 2**20:.0f} MiB free there"
    except OSError:
        free = "free space unknown"
    return WriteError(
        error.errno,
        f"cannot write {path}: {error.strerror} ({free}); make room or fix the permissions "
        "and rerun: finished outputs are kept and training resumes from its last checkpoint",
    )


def _about_target(error: OSError, final: Path) -> bool:
    """Whether the error is the write's own, not one of a file the block read (a source).

    Errors of writes through a handle (a full disk) name no file; those of the folder, the
    temporary file or the target name one in the target's folder or above it.
    """
    if isinstance(error, WriteError):
        return False
    names = [Path(n) for n in (error.filename, error.filename2) if isinstance(n, str | os.PathLike)]
    return all(p.parent == final.parent or p in (final, *final.parents) for p in names)


def temporary_path(path: str | Path, suffix: str = ".tmp") -> Path:
    """Return the temporary name an atomic write of `path` by this process uses."""
    final = Path(path)
    return final.with_name(f".{final.name}.{os.getpid()}{suffix}")


def remove_leftovers(path: str | Path, suffix: str = ".tmp") -> list[Path]:
    """Delete temporary files of earlier, interrupted writes of `path`; return them."""
    final = Path(path)
    prefix = f".{final.name}."
    removed = []
    for candidate in final.parent.glob(glob.escape(prefix) + "*" + glob.escape(suffix)):
        tag = candidate.name[len(prefix) : len(candidate.name) - len(suffix)]
        if _TEMP_TAG.fullmatch(tag) and candidate.is_file():
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` if the block succeeds.

    The block creates the file at the yielded path (open(), np.save, savefig, ...).
    """
    final = Path(path)
    suffix = suffix if suffix is not None else ".tmp"
    tmp = temporary_path(final, suffix)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(final, suffix)
        yield tmp
        os.replace(tmp, final)
    except OSError as error:
        if error.errno in _ENVIRONMENT_ERRNOS and _about_target(error, final):
            raise _write_error(final, error) from error
        raise
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """open() whose result appears at `path` only when the block completes without error."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def write_json(path: str | Path, data: Any) -> None:
    with atomic_open(path) as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")


def save_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez under an atomic rename.

    The handle is ours, not numpy's: when a write fails (full disk) np.savez would leave its
    own file object open, and its later close raises the same error again.
    """
    with atomic_open(path, "wb") as handle:
        np.savez(handle, **arrays)
