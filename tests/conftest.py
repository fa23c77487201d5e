"""Shared pytest set-up: the project's Jittor cache and the repository paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_BSDS500 = REPO_ROOT.parent / "shared" / "data" / "BSDS500"

# Jittor compiles itself once per cache (~4.5 min on 2 cores): every test, subprocesses
# included, shares the project's cache instead of each making its own.
os.environ.setdefault("JITTOR_HOME", str(REPO_ROOT / ".cache" / "jittor"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_bsds500() -> Path:
    """The dataset mirror beside the checkout; tests that need it skip without it."""
    if not (SHARED_BSDS500 / "manifest.sha256").exists():
        pytest.skip(f"dataset mirror not found at {SHARED_BSDS500}")
    return SHARED_BSDS500
