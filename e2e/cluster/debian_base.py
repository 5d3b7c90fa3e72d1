"""The base of the local images: Debian bookworm (minbase) with python3 and its venv module.

No registry can be reached here, so ``images`` builds the project's Dockerfiles on a base made
on this machine: ``debootstrap --variant=minbase`` from the Debian mirror that apt here already
uses (read from apt's sources at run time), then python3 and python3-venv installed with apt in
a chroot, trimmed the way Debian's slim images are, and committed as a buildah image. It is
built once and labelled with its ``key()``, a digest of this module: a change to the recipe
builds a fresh base (and, through the images' digests, fresh images on it).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from e2e.cluster import static_images
from e2e.cluster.buildah import Buildah

SUITE = "bookworm"
# bookworm's python3: the wheels installed into the images are made for this version.
PYTHON = (3, 11)
PACKAGES = ("python3", "python3-venv")
REFERENCE = f"{static_images.REPOSITORY}/debian-python:{SUITE}"
KEY_LABEL = "dev.sluice.base-key"
APT_DIR = Path("/etc/apt")
# What Debian's slim images leave out (documentation, manual pages, translations); written
# into the base's dpkg configuration too, so that packages a Dockerfile adds stay as lean.
DPKG_EXCLUDES = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
"""
ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8")


def key() -> str:
    """What identifies the base's recipe: a digest of this module's source."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


def debian_mirror(apt_dir: Path = APT_DIR) -> str:
    """The archive URI that apt on this machine fetches ``SUITE``'s main component from.

    Reads the one-line (``*.list``) and deb822 (``*.sources``) formats; raises when no
    enabled source serves the suite.
    """
    files = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]
    for path in files:
        if path.suffix == ".list" and path.is_file():
            sources = _one_line_sources(path.read_text())
        elif path.suffix == ".sources" and path.is_file():
            sources = _deb822_sources(path.read_text())
        else:
            continue
        for uris, suites, components in sources:
            if SUITE in suites and "main" in components:
                return uris[0].rstrip("/")
    raise RuntimeError(f"no apt source under {apt_dir} serves Debian {SUITE} main")


Source = tuple[list[str], list[str], list[str]]  # URIs, suites, components


def _one_line_sources(text: str) -> list[Source]:
    sources = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) > 1 and words[0] == "deb":
            if words[1].startswith("["):  # options, e.g. [arch=amd64 signed-by=...]
                closing = next(i for i, word in enumerate(words) if word.endswith("]"))
                words = ["deb", *words[closing + 1 :]]
            if len(words) >= 4:
                sources.append(([words[1]], [words[2]], words[3:]))
    return sources


def _deb822_sources(text: str) -> list[Source]:
    sources = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[0].isspace():
                continue
            name, value = line.split(":", 1)
            fields[name.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
            uris = fields.get("uris", "").split()
            if uris:
                sources.append(
                    (uris, fields.get("suites", "").split(), fields.get("components", "").split())
                )
    return sources


def ensure(buildah: Buildah, workdir: Path, log: Callable[[str], None]) -> None:
    """Build the base image into ``buildah``'s storage unless it is there with today's
    ``key()``; ``workdir`` holds the root file system while it is made."""
    if buildah.label(REFERENCE, KEY_LABEL) == key():
        return
    started = time.monotonic()
    rootfs = workdir / "rootfs"
    _remove(rootfs)
    mirror = debian_mirror()
    log(f"base image {REFERENCE}: debootstrap {SUITE} from {mirror}")
    _run(["debootstrap", "--variant=minbase", SUITE, str(rootfs), mirror], timeout=1200)
    log(f"  debootstrap done in {time.monotonic() - started:.0f}s")
    (rootfs / "etc" / "dpkg" / "dpkg.cfg.d" / "slim").write_text(DPKG_EXCLUDES)
    install = (
        "apt-get update -q && apt-get install -y -q --no-install-recommends "
        f"{' '.join(PACKAGES)} && apt-get clean && rm -rf /var/lib/apt/lists/*"
    )
    _run(["chroot", str(rootfs), "/bin/sh", "-c", install], timeout=900)
    _trim(rootfs)
    log(f"  {', '.join(PACKAGES)} installed in {time.monotonic() - started:.0f}s")
    _commit(buildah, rootfs)
    _remove(rootfs)
    log(f"built {REFERENCE} in {time.monotonic() - started:.0f}s")


def _commit(buildah: Buildah, rootfs: Path) -> None:
    """Copy ``rootfs`` into a scratch container and commit it as ``REFERENCE``."""
    container = buildah.run("from", "scratch").strip()
    try:
        mountpoint = buildah.run("mount", container).strip()
        # Devices come from the container runtime; /proc and /sys stay as empty folders.
        pack = subprocess.Popen(
            ["tar", "-C", str(rootfs), "--numeric-owner", "--exclude=./dev/*", "-cf", "-", "."],
            stdout=subprocess.PIPE,
        )
        unpack = subprocess.run(
            ["tar", "-C", mountpoint, "--numeric-owner", "-xpf", "-"],
            stdin=pack.stdout,
            capture_output=True,
            timeout=600,
        )
        if pack.wait(timeout=60) != 0 or unpack.returncode != 0:
            raise RuntimeError(f"copying the base's root file system failed: {unpack.stderr!r}")
        buildah.run("umount", container)
        config = [f"--env={variable}" for variable in ENV]
        buildah.run("config", *config, "--cmd=python3", f"--label={KEY_LABEL}={key()}", container)
        buildah.run("commit", "--rm", container, REFERENCE, timeout=900)
    except BaseException:
        subprocess.run(buildah.command("rm", container), capture_output=True, timeout=60)
        raise
    # The base this one replaces, now untagged.
    buildah.run("rmi", "--prune")


def _trim(rootfs: Path) -> None:
    """Remove what ``DPKG_EXCLUDES`` keeps out of later installs, and this machine's resolver
    configuration (container runtimes mount their own)."""
    share = rootfs / "usr" / "share"
    for path in (share / "doc").glob("*/*"):
        if path.name != "copyright":
            _remove(path)
    for folder in ("man", "info", "locale"):
        for path in (share / folder).glob("*"):
            if path.name != "locale.alias":
                _remove(path)
    (rootfs / "etc" / "resolv.conf").write_text("")


def _remove(path: Path) -> None:
    """Delete a file or a tree, first unmounting anything a failed chroot left mounted in
    it, so that the host's /proc or /dev is never walked."""
    prefix = f"{path}/"
    with open("/proc/self/mounts") as mounts:
        below = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for mountpoint in sorted(below, reverse=True):
        subprocess.run(["umount", "--lazy", mountpoint], check=True, timeout=60)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _run(command: list[str], *, timeout: float) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command[:3])} failed ({result.returncode}):\n"
            f"{(result.stdout + result.stderr)[-6000:]}"
        )
