"""``buildah`` on a storage of its own, for the images of the local cluster.

``images`` and ``debian_base`` build through this, and the tests run the built images with
it. The storage (``--root``) and its run state (``--runroot``) live in one folder of the cache,
so nothing here touches a system-wide image store, and every command is bounded in time.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

# The kernel's overlay file system works on this machine's ext4 and shares layers between
# images; vfs would copy the whole base into every layer.
STORAGE_DRIVER = "overlay"
# Build steps run under runc (buildah's "oci" isolation), which gives them a network namespace
# of their own: with ``--network none`` they reach nothing. "chroot" isolation can only share
# this machine's network.
ISOLATION = "oci"


@dataclass(frozen=True)
class Buildah:
    """``buildah`` commands on the storage kept in ``home``."""

    home: Path

    def command(self, *args: str) -> list[str]:
        """The full command line of ``buildah ARGS`` on this storage."""
        return [
            "buildah",
            "--root", str(self.home / "storage"),
            "--runroot", str(self.home / "run"),
            "--storage-driver", STORAGE_DRIVER,
            *args,
        ]  # fmt: skip

    def run(self, *args: str, timeout: float = 600) -> str:
        """Run ``buildah ARGS`` and return its output; raise with its error output when it
        fails."""
        result = subprocess.run(
            self.command(*args), capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"buildah {' '.join(args[:2])} failed ({result.returncode}):\n"
                f"{(result.stdout + result.stderr)[-6000:]}"
            )
        return result.stdout

    def label(self, image: str, name: str) -> str | None:
        """The value of label ``name`` on ``image``; None when there is no such image."""
        result = subprocess.run(
            self.command(
                "inspect", "--type", "image", "--format",
                f'{{{{index .OCIv1.Config.Labels "{name}"}}}}', image,
            ),
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
        return result.stdout.strip() if result.returncode == 0 else None
