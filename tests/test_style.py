"""The checks a contributor runs before a pull request: lint, formatting, Snakemake lint, DAG."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_lint_clean() -> None:
    result = run(str(BIN / "ruff"), "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_clean() -> None:
    result = run(str(BIN / "ruff"), "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakefmt_clean() -> None:
    result = run(str(BIN / "snakefmt"), "--check", "Snakefile", "workflow/rules")
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakemake_lint_clean() -> None:
    result = run(str(BIN / "snakemake"), "--lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_default_config_dag_has_every_framework_and_sigma() -> None:
    """`snakemake -n` on the full reproduction plans one training job per framework x sigma."""
    result = run(str(BIN / "snakemake"), "-n", "--quiet", "rules")
    assert result.returncode == 0, result.stdout + result.stderr
    counts = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    assert counts.get("train_torch") == 4, result.stdout
    assert counts.get("train_jittor") == 4, result.stdout
    assert counts.get("evaluate", counts.get("evaluate_torch", 0)) >= 4, result.stdout
