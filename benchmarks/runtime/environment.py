"""``setup``: create the benchmark virtualenv (.venv-bench) and install wrk. Idempotent.

The anchors (PyTriton with its bundled Triton server, KServe) have heavy dependencies, so
they live in their own virtualenv, never in the development one. A stamp file records the
hash of requirements.txt; a second run with the same requirements installs nothing.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".venv-bench"
REQUIREMENTS = Path(__file__).with_name("requirements.txt")
STAMP = VENV / ".requirements.sha256"


def bench_python(venv: Path = VENV) -> Path:
    """The benchmark virtualenv's interpreter."""
    return venv / "bin" / "python"


def _run(argv: list[str]) -> None:
    print("+", " ".join(argv), flush=True)
    subprocess.run(argv, check=True)


def _digest(gpu: bool) -> str:
    text = REQUIREMENTS.read_bytes() + (b"gpu" if gpu else b"cpu")
    return hashlib.sha256(text).hexdigest()


def ensure_venv(venv: Path = VENV, gpu: bool = False, force: bool = False) -> Path:
    """Create ``venv`` if missing and install the pinned requirements plus sluice (editable)."""
    python = bench_python(venv)
    if not python.exists():
        _run([sys.executable, "-m", "venv", str(venv)])
    stamp = venv / STAMP.name
    if not force and stamp.exists() and stamp.read_text().strip() == _digest(gpu):
        print(f"{venv}: requirements already installed", flush=True)
        return python
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
    _run([*pip, "--upgrade", "pip"])
    _run([*pip, "-r", str(REQUIREMENTS)])
    _run([*pip, "-e", f"{REPO}[runtime]"])
    if gpu:
        ort = _installed_version(python, "onnxruntime")
        _run([str(python), "-m", "pip", "uninstall", "-y", "onnxruntime"])
        _run([*pip, f"onnxruntime-gpu=={ort}" if ort else "onnxruntime-gpu"])
    stamp.write_text(_digest(gpu))
    return python


def _installed_version(python: Path, package: str) -> str:
    done = subprocess.run(
        [str(python), "-c", f"from importlib.metadata import version; print(version({package!r}))"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return done.stdout.strip()


def ensure_debian_packages(binaries: Mapping[str, str]) -> bool:
    """Install the Debian packages of the ``binaries`` (binary name -> package) that are not on
    PATH, if apt-get can; True when every binary is present afterwards."""
    missing = sorted({package for binary, package in binaries.items() if not shutil.which(binary)})
    if not missing:
        return True
    if shutil.which("apt-get") is None:
        print(f"missing {', '.join(missing)} and apt-get is not available: install by hand",
              flush=True)  # fmt: skip
        return False
    try:
        _run(["apt-get", "update"])
        _run(["apt-get", "install", "-y", *missing])
    except (subprocess.CalledProcessError, OSError) as exc:
        print(f"could not install {', '.join(missing)} ({exc})", flush=True)
    return all(shutil.which(binary) for binary in binaries)


def ensure_wrk() -> bool:
    """Install the Debian ``wrk`` package if missing and apt-get can; True when present."""
    if not ensure_debian_packages({"wrk": "wrk"}):
        print("wrk is missing: the wrk client will be skipped", flush=True)
        return False
    return True


def setup(gpu: bool = False, force: bool = False, with_wrk: bool = True) -> int:
    """Prepare everything a run needs; return a process exit status."""
    python = ensure_venv(gpu=gpu, force=force)
    if with_wrk:
        ensure_wrk()
    print(f"ready: {python} -m benchmarks.runtime run", flush=True)
    return 0
