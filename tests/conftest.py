"""Shared pytest helpers: run the command line in-process or in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_cli():
    """Run ``python -m simulator ARGS`` in a fresh interpreter; returns the CompletedProcess."""

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "simulator", *args],
            capture_output=True, text=True, cwd=REPO_ROOT, timeout=timeout,
        )

    return run
