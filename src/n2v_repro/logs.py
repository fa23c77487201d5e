"""Logging set-up shared by the workflow scripts and the command-line tools."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def log_to_file(path: str | Path | None, level: int = logging.INFO) -> None:
    """Send logging and stderr (tracebacks included) to `path`, or to stderr when None.

    Snakemake scripts call this first with `snakemake.log[0]`, so a failed job's log holds
    the error message.
    """
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        sys.stderr = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    logging.basicConfig(
        stream=sys.stderr,
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
