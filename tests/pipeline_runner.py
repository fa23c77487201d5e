"""Run the repository's Snakefile in a scratch working directory, for end-to-end tests.

Snakemake runs as a subprocess (`-s <repo>/Snakefile --directory <workdir>`) so that a test
sees exactly what a user sees: the exit status, the messages, and the files in the working
directory. The configuration is config/config.yaml (the Snakefile's own `configfile:`),
then config/test.yaml, then a YAML file the test writes, merged in that order as Snakemake does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from n2v_repro.config import merge_into

REPO_ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO_ROOT / "Snakefile"
TEST_CONFIG = REPO_ROOT / "config" / "test.yaml"
# The snakemake executable of the interpreter running the tests (the project's venv).
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
REPO_DATA = REPO_ROOT / "config" / "data"


def repo_data_config() -> dict[str, Any]:
    """`data` keys pointing at the repository's manifest files by absolute path.

    The config's paths are relative to the working directory, which is a scratch folder here.
    """
    return {
        "data": {
            "manifest": str(REPO_DATA / "bsds500.sha256"),
            "bsd68_ids": str(REPO_DATA / "bsd68_ids.txt"),
            "bsd68_pixels": str(REPO_DATA / "bsd68_pixels.sha256"),
            "train400_crops": str(REPO_DATA / "train400_crops.txt"),
        }
    }


def merged(*configs: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive merge, later wins (the way Snakemake merges --configfile files)."""
    result: dict[str, Any] = {}
    for config in configs:
        merge_into(result, config)
    return result


def write_config(path: Path, config: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    return path


def snakemake_command(
    workdir: Path,
    configfile: Path | None,
    targets: Sequence[str] = (),
    extra: Sequence[str] = (),
    cores: int | None = 2,
) -> list[str]:
    command = [str(SNAKEMAKE), "-s", str(SNAKEFILE), "--directory", str(workdir)]
    if cores is not None:
        command += ["--cores", str(cores)]
    command += [*extra, *targets]
    # --configfile takes every following word, so it goes last, after the targets.
    command += ["--configfile", str(TEST_CONFIG)]
    if configfile is not None:
        command.append(str(configfile))
    return command


def subprocess_environment() -> dict[str, str]:
    """The subprocess environment: the venv's bin first (Snakemake's scripts run `python`)."""
    environment = dict(os.environ)
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment['PATH']}"
    # Training on CPU: torch and numpy threads follow the job's `threads`; keep BLAS from
    # oversubscribing the 2 cores of a CI runner.
    environment.setdefault("OMP_NUM_THREADS", "2")
    return environment


def run_snakemake(
    workdir: Path,
    configfile: Path | None,
    targets: Sequence[str] = (),
    extra: Sequence[str] = (),
    timeout_s: float = 600,
    cores: int | None = 2,
) -> subprocess.CompletedProcess[str]:
    """Run Snakemake to completion; stdout and stderr together in `.stdout`."""
    return subprocess.run(
        snakemake_command(workdir, configfile, targets, extra, cores),
        cwd=workdir,
        env=subprocess_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def start_snakemake(
    workdir: Path,
    configfile: Path | None,
    targets: Sequence[str] = (),
    extra: Sequence[str] = (),
    log_path: Path | None = None,
    cores: int | None = 2,
) -> subprocess.Popen[bytes]:
    """Start Snakemake in its own process group (so a test can signal it and its jobs)."""
    output = open(log_path, "wb") if log_path is not None else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        snakemake_command(workdir, configfile, targets, extra, cores),
        cwd=workdir,
        env=subprocess_environment(),
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
