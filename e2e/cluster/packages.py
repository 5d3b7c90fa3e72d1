"""Install the Debian packages the real node runs on, once per machine.

The real node's container runtime (containerd, runc), its pod network (the CNI plugins),
Services (iptables, conntrack for kube-proxy) and the pause image's compiler (gcc) come from
Debian's packages. ``control_plane.up`` calls ``ensure`` before it starts a real node: a
package is installed only when the file it provides is missing, so a prepared machine never
runs apt at all and a fresh one gets everything from ``make test``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

CNI_BIN_DIR = Path("/usr/lib/cni")

# Debian package -> a file it installs (a bare name is looked up on PATH).
PACKAGES = {
    "containerd": "containerd",
    "runc": "runc",
    "containernetworking-plugins": str(CNI_BIN_DIR / "bridge"),
    "iptables": "iptables",
    "conntrack": "conntrack",
    "gcc": "gcc",
    # The runtime and operator images (e2e.cluster.images): their base and their builds.
    "debootstrap": "debootstrap",
    "buildah": "buildah",
}


def missing() -> list[str]:
    """The packages whose file is not on this machine."""
    return [
        package
        for package, provided in PACKAGES.items()
        if not (Path(provided).exists() if provided.startswith("/") else shutil.which(provided))
    ]


def ensure(log: Callable[[str], None] = print) -> None:
    """Install the missing packages with apt (as root, non-interactive)."""
    todo = missing()
    if not todo:
        return
    if os.geteuid() != 0:
        raise RuntimeError(f"a real node needs root to install {', '.join(todo)}")
    log(f"installing Debian packages {', '.join(todo)}")
    started = time.monotonic()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *todo]):
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
    still = missing()
    if still:
        raise RuntimeError(f"apt installed {', '.join(todo)} but {', '.join(still)} is missing")
    log(f"installed {', '.join(todo)} in {time.monotonic() - started:.0f}s")
