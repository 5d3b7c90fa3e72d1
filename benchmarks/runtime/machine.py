"""A description of the machine and software a run used, for the results file."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("onnxruntime", "onnxruntime-gpu", "onnx", "tritonclient", "nvidia-pytriton",
            "kserve", "numpy", "sluice")  # fmt: skip


def describe_machine() -> str:
    """CPU model, core count, memory and kernel, in one line."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kib / 2**20:.0f} GiB memory"
    except (OSError, ValueError, IndexError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}, Linux {platform.release()}"


def load_average() -> str:
    """The 1/5/15-minute load averages."""
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


def versions(repo: Path) -> str:
    """Installed versions of the packages that matter, plus the repository commit."""
    found = []
    for name in PACKAGES:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    try:
        rev = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout.strip()  # fmt: skip
        if rev:
            found.append(f"commit {rev}")
    except (OSError, subprocess.SubprocessError):
        pass
    return ", ".join(found)
