"""run.sh with a fake interpreter: which Pythons it accepts, that a CUDA torch which sees a GPU
is kept (venv over the system packages, no torch installed), and when it builds the report."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Answers run.sh's questions as the configured interpreter would, and logs every call; `-m
# venv` makes a .venv whose python is this script again, so pip calls are logged too.
FAKE_PYTHON = r"""#!/usr/bin/env bash
echo "$*" >>"$FAKE_LOG"
if [ "$1" = "-c" ]; then
    case "$2" in
        *version_info*) echo "$FAKE_VERSION" ;;
        *torch.__version__*) echo "torch 2.11.0+cu130" ;;
        *torch.cuda.is_available*)
            [ "$FAKE_TORCH" = none ] && exit 1
            [ "$FAKE_TORCH" = cuda ] && echo 1 || echo 0 ;;
    esac
    exit 0
fi
if [ "$1 $2" = "-m venv" ]; then
    venv="${!#}"
    mkdir -p "$venv/bin"
    cp "$0" "$venv/bin/python"
fi
"""


def set_up(
    tmp_path: Path, version: str, torch: str, args: tuple[str, ...] = ("--setup-only",)
) -> tuple[subprocess.CompletedProcess, list]:
    checkout = tmp_path / "checkout"
    checkout.mkdir(exist_ok=True)
    for name in ("run.sh", "requirements.txt", "pyproject.toml"):
        shutil.copy(REPO_ROOT / name, checkout / name)
    fake = tmp_path / "python3"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "calls.log"
    env = {
        **os.environ,
        "PYTHON": str(fake),
        "FAKE_LOG": str(log),
        "FAKE_VERSION": version,
        "FAKE_TORCH": torch,
    }
    result = subprocess.run(
        ["bash", str(checkout / "run.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return result, calls


def pip_requirements(calls: list[str], checkout: Path) -> list[str]:
    (install,) = [c for c in calls if c.startswith("-m pip install") and " -r " in c]
    words = install.split()
    return (checkout / words[words.index("-r") + 1]).read_text().splitlines()


@pytest.mark.parametrize("version", ["3.11", "3.12"])
def test_a_cuda_torch_that_sees_a_gpu_is_kept(tmp_path: Path, version: str) -> None:
    result, calls = set_up(tmp_path, version, torch="cuda")
    assert result.returncode == 0, result.stderr
    assert "-m venv --system-site-packages .venv" in calls
    # Every pin of requirements.txt but torch's.
    pinned = (REPO_ROOT / "requirements.txt").read_text().splitlines()
    (torch_pin,) = [line for line in pinned if line.lower().startswith("torch==")]
    pinned.remove(torch_pin)
    assert pip_requirements(calls, tmp_path / "checkout") == pinned
    assert "keeping torch 2.11.0+cu130" in result.stdout


@pytest.mark.parametrize("torch", ["cpu", "none"])
def test_without_a_usable_cuda_torch_the_pinned_one_is_installed(tmp_path: Path, torch) -> None:
    result, calls = set_up(tmp_path, "3.12", torch=torch)
    assert result.returncode == 0, result.stderr
    assert "-m venv .venv" in calls
    pinned = (REPO_ROOT / "requirements.txt").read_text().splitlines()
    assert pip_requirements(calls, tmp_path / "checkout") == pinned


def test_another_python_is_refused_naming_the_versions(tmp_path: Path) -> None:
    result, calls = set_up(tmp_path, "3.10", torch="cuda")
    assert result.returncode == 1
    assert "needs Python 3.11 or 3.12 (found 3.10" in result.stderr
    assert not [c for c in calls if "venv" in c or "pip" in c]


# A second run's venv: snakemake logs its arguments and succeeds; python answers run_plan
# (`-m n2v_repro.cli.run_plan -- ARGS`) with the arguments back, NUL-separated, as run_plan does.
FAKE_SNAKEMAKE = r"""#!/usr/bin/env bash
echo "snakemake $*" >>"$FAKE_LOG"
"""
FAKE_RUN_PLAN = r"""#!/usr/bin/env bash
shift 3
printf '%s\0' "$@"
"""


@pytest.mark.parametrize(
    ("args", "report"),
    [((), True), (("--cores", "2"), True), (("-n",), False), (("-np",), False),
     (("--dry-run",), False)],
)  # fmt: skip
def test_the_report_is_built_after_a_run_not_after_a_dry_run(
    tmp_path: Path, args: tuple[str, ...], report: bool
) -> None:
    venv = tmp_path / "checkout" / ".venv"
    (venv / "bin").mkdir(parents=True)
    for tool, script in (("snakemake", FAKE_SNAKEMAKE), ("python", FAKE_RUN_PLAN)):
        (venv / "bin" / tool).write_text(script)
        (venv / "bin" / tool).chmod(0o755)
    (venv / ".installed").touch()
    os.utime(venv / ".installed", (2**31, 2**31))  # newer than the pins: no reinstall
    result, calls = set_up(tmp_path, "3.12", torch="cpu", args=args)
    assert result.returncode == 0, result.stderr
    runs = [c for c in calls if c.startswith("snakemake")]
    assert len(runs) == (2 if report else 1), calls
    assert all(" ".join(args) in run for run in runs)
    assert ("--report results/report.html" in runs[-1]) == report
    assert ("report written" in result.stdout) == report
    assert "could not be built" not in result.stderr
