"""Images of one statically linked C program each, built from source without a registry.

The real node needs the ``pause`` image for every pod's sandbox, and its tests need a server
to reach; no registry can be reached here. ``real_node`` calls ``ensure`` for each image:
the program is compiled with ``gcc -static`` (``pause.c`` from the pinned ``k8s.io/kubernetes``
module; ``programs/http_ok.c`` from this folder) and packed, alone, into a docker-archive (one
layer, one config, a manifest that names the image), the format ``ctr images import`` reads.
The archives are cached next to the binaries, keyed by the same pinned versions.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from e2e.cluster import binaries

REPOSITORY = "sluice.local"
PROGRAMS_DIR = Path(__file__).resolve().parent / "programs"


@dataclass(frozen=True)
class StaticImage:
    """An image whose only file is one static program, run as its entrypoint."""

    name: str
    tag: str
    source: Path

    @property
    def reference(self) -> str:
        """The image reference pods name."""
        return f"{REPOSITORY}/{self.name}:{self.tag}"


def pause() -> StaticImage:
    """The sandbox image, tagged with the Kubernetes version its source comes from."""
    kubernetes = next(tool for tool in binaries.TOOLS if tool.folder == "kubernetes")
    module_dir = subprocess.run(
        ["go", "list", "-m", "-f", "{{.Dir}}", kubernetes.module],
        cwd=binaries.TOOLS_DIR / kubernetes.folder,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    source = Path(module_dir) / "build" / "pause" / "linux" / "pause.c"
    return StaticImage("pause", kubernetes.version, source)


def http_ok() -> StaticImage:
    """A server that answers "ok" on port 8080, tagged with its source's digest."""
    source = PROGRAMS_DIR / "http_ok.c"
    return StaticImage("http-ok", hashlib.sha256(source.read_bytes()).hexdigest()[:12], source)


def ensure(image: StaticImage, bin_dir: Path) -> Path:
    """Return ``image``'s archive in ``bin_dir``, building it when it is missing."""
    archive = bin_dir / "images" / f"{image.name}-{image.tag}.tar"
    if archive.is_file():
        return archive
    archive.parent.mkdir(exist_ok=True)
    program = archive.with_suffix(".bin")
    compiled = subprocess.run(
        ["gcc", "-Os", "-static", f"-DVERSION={image.tag}", "-o", str(program), str(image.source)],
        capture_output=True,
        text=True,
    )
    if compiled.returncode != 0:
        raise RuntimeError(f"compiling {image.source} failed:\n{compiled.stderr}")
    tmp = archive.with_suffix(".tmp")
    tmp.write_bytes(docker_archive(image.reference, program.read_bytes()))
    program.unlink()
    # Rename into place so an interrupted build never leaves a half-written archive.
    tmp.replace(archive)
    return archive


def docker_archive(reference: str, program: bytes) -> bytes:
    """A docker-archive holding one image whose only file is ``/program``, its entrypoint."""
    layer = _tar({"program": (program, 0o755)})
    layer_digest = hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": ["/program"], "User": "65535:65535"},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
        },
        sort_keys=True,
    ).encode()
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    manifest = [
        {"Config": config_name, "RepoTags": [reference], "Layers": [f"{layer_digest}/layer.tar"]}
    ]
    return _tar(
        {
            f"{layer_digest}/layer.tar": (layer, 0o644),
            config_name: (config, 0o644),
            "manifest.json": (json.dumps(manifest).encode(), 0o644),
        }
    )


def _tar(files: dict[str, tuple[bytes, int]]) -> bytes:
    """A reproducible tar: fixed owner and times, so equal input gives equal digests."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
