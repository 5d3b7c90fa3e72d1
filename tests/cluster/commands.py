"""The cluster tooling's command line, run as a user runs it, for the tests of tests/cluster."""

from __future__ import annotations

import subprocess
import sys


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m e2e.cluster ARGS``; raises when it fails or outlasts ``timeout`` seconds."""
    return subprocess.run(
        [sys.executable, "-m", "e2e.cluster", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=timeout,
    )
