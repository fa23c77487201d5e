"""Logging set-up shared by the workflow scripts and the command-line tools."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sys
import traceback
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from n2v_repro.errors import UserError

log = logging.getLogger(__name__)

ATTEMPT_HEADER = "==== attempt {number}, started {date} (earlier attempts above) ===="


def log_to_file(path: str | Path | None, level: int = logging.INFO) -> None:
    """Send logging and stderr (tracebacks included) to `path`, or to stderr when None."""
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        sys.stderr = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    logging.basicConfig(
        stream=sys.stderr,
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )


def attempts_path(path: str | Path) -> Path:
    """Where the log of a job's unfinished attempts survives Snakemake's deletion of `path`."""
    log_path = Path(path)
    return log_path.with_name(f".{log_path.name}.attempts")


def _start_attempt(log_path: Path) -> None:
    """Put the earlier, unfinished attempts' log at the top of `log_path`.

    Then the attempts file becomes a hard link of it, so this attempt's lines survive even a
    SIGKILL.

    Snakemake deletes a job's log before each run: without this, rerunning a killed training
    job would erase the log of the run it resumes.
    """
    keep = attempts_path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if not log_path.exists() or not os.path.samefile(keep, log_path):
            earlier = keep.read_text(errors="replace")
            number = len(re.findall(r"^==== attempt (\d+),", earlier, flags=re.M)) + 2
            header = ATTEMPT_HEADER.format(
                number=number, date=datetime.now().astimezone().isoformat(timespec="seconds")
            )
            with open(log_path, "a") as handle:
                handle.write(earlier if earlier.endswith("\n") or not earlier else earlier + "\n")
                handle.write(header + "\n")
    log_path.touch()
    keep.unlink(missing_ok=True)
    try:
        os.link(log_path, keep)
    except OSError:
        # No hard links here (another file system): copy at the end instead, unless killed.
        keep.touch()


@contextlib.contextmanager
def script_log(path: str | Path) -> Iterator[None]:
    """Run a workflow script's body with its log in `path` (`snakemake.log[0]`).

    - Logging and stderr go to `path`; the log of earlier unfinished attempts of the job is
      kept at its top, under a dated attempt header.
    - A UserError (bad config or data, unreachable mirror, interrupted training, ...) logs
      its traceback to `path` and ends the script with its message on the console (status 1).
    - Any other exception is a bug: its traceback goes to both.
    """
    log_path = Path(path)
    _start_attempt(log_path)
    log_to_file(log_path)
    console = sys.__stderr__
    try:
        yield
    except UserError as error:
        # The traceback ends with the message; the console gets the message alone.
        log.error("stopped by %s:", type(error).__name__, exc_info=True)
        _keep_copy(log_path)
        if console is not None:
            print(f"Error: {error}\n(full log: {log_path})", file=console, flush=True)
        raise SystemExit(1) from None
    except Exception:
        if console is not None:
            traceback.print_exc(file=console)
        log.exception("unexpected error (a bug, not a setting)")
        _keep_copy(log_path)
        raise SystemExit(1) from None
    attempts_path(log_path).unlink(missing_ok=True)


def _keep_copy(log_path: Path) -> None:
    """Where the attempts file is a copy, not a link, bring it up to date."""
    keep = attempts_path(log_path)
    with contextlib.suppress(OSError):
        if not os.path.samefile(keep, log_path):
            sys.stderr.flush()
            shutil.copyfile(log_path, keep)
