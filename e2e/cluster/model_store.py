"""The models the local cluster's pods serve, and the model server the tooling runs for them.

``publish`` builds the sample models (real ONNX, ``e2e.models``) into ``WORKDIR/models``, the
folder users' pods reach two ways a user's would: over HTTP from a plain file server that
``control_plane.up`` starts on the bridge's address (``http://10.244.0.1:PORT/...``, fetched by
the runtime's init container), and as a PersistentVolume of the real node
(``storage.provide_claim`` with this folder as the volume's path, ``pvc://CLAIM/...``). The
server listens only on the bridge, which only this machine and its pods reach.
"""

from __future__ import annotations

import sys
from pathlib import Path

from e2e.models import build_faulty, build_mlp, build_slow

# The sample model: 16 FP32 features in, 4 scores out; versions differ in their weights.
SAMPLE = "mlp"
SAMPLE_SIZES = (16, 64, 4)
SAMPLE_VERSIONS = (1, 2)
# The sample model's signature, answering only all-zero inputs: a canary that fails in service.
FAULTY = "faulty/model.onnx"
# The sample model's signature, answering each request after most of a second of compute.
SLOW = "slow/model.onnx"


def folder(workdir: Path) -> Path:
    """Where the cluster's models live."""
    return workdir / "models"


def sample_path(version: int = 1) -> str:
    """The sample model's file, relative to the models folder (and to a claim's root)."""
    return f"{SAMPLE}/{version}/model.onnx"


def publish(workdir: Path) -> Path:
    """Build the sample models that are not there yet; return the models folder. Everything
    is world-readable: the runtime runs as a non-root user."""
    root = folder(workdir)
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    for version in SAMPLE_VERSIONS:
        path = root / sample_path(version)
        if not path.exists():
            build_mlp(path, SAMPLE_SIZES, seed=version)
        _readable(path)
    for name, build in ((FAULTY, build_faulty), (SLOW, build_slow)):
        path = root / name
        if not path.exists():
            build(path, (SAMPLE_SIZES[0], SAMPLE_SIZES[-1]))
        _readable(path)
    return root


def _readable(path: Path) -> None:
    """Make a model file and its folders readable by the runtime's user."""
    for part in (path.parent, path.parent.parent):
        part.chmod(0o755)
    path.chmod(0o644)


def server_command(workdir: Path, address: str, port: int) -> list[str]:
    """A file server of the models folder on ``address:port`` only."""
    return [
        sys.executable,
        "-m",
        "http.server",
        "--bind",
        address,
        "--directory",
        str(folder(workdir)),
        str(port),
    ]
