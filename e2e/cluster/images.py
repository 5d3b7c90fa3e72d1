"""The runtime, operator and router images, built from the project's own Dockerfiles with no
registry.

The real node runs pods from images in its containerd, and here no registry can be reached and
no Docker engine runs. So ``buildah`` builds runtime/Dockerfile, operator/Dockerfile and
router/Dockerfile on the local Debian base (``debian_base``), with no network in the build:
Python packages are installed from wheels made on this machine (a fresh Debian root lacks the
certificates the package index needs), mounted into the build at /wheels. Each image is tagged
with a digest of what goes into it (its Dockerfile, every file the Dockerfile copies, its build
arguments, the base's key and the wheels' requirements) and kept as a docker-archive under
``~/.cache/sluice/images/``, so an unchanged tree never builds twice.

``python -m e2e.cluster images`` and the real node call ``ensure``; ``load`` imports the
archives into a node's containerd, and ``helm_flags`` points the Helm chart at them.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from e2e.cluster import binaries, debian_base, packages, static_images
from e2e.cluster.buildah import ISOLATION, Buildah

ROOT = Path(__file__).resolve().parents[2]
WHEELS_MOUNT = "/wheels"


@dataclass(frozen=True)
class Recipe:
    """How one image is built from its Dockerfile."""

    name: str
    dockerfile: str  # relative to the build context, the repository root
    extras: tuple[str, ...]  # the extras it installs, whose wheels the build needs
    extras_arg: bool  # whether the Dockerfile takes them as the EXTRAS build argument

    def build_args(self) -> dict[str, str]:
        """The build arguments that make the Dockerfile build here: the local base, and pip
        installing from the mounted wheels with no index."""
        args = {
            "BASE": debian_base.REFERENCE,
            "PIP_NO_INDEX": "1",
            "PIP_FIND_LINKS": WHEELS_MOUNT,
        }
        if self.extras_arg:
            args["EXTRAS"] = ",".join(self.extras)
        return args


# The CPU `runtime` extra, not the production `gpu`: the real node has no GPU and the base no
# CUDA, so onnxruntime-gpu would only add size and build time (runtime/Dockerfile says more).
RUNTIME = Recipe("sluice-runtime", "runtime/Dockerfile", ("runtime", "s3"), extras_arg=True)
OPERATOR = Recipe("sluice-operator", "operator/Dockerfile", ("operator",), extras_arg=False)
ROUTER = Recipe("sluice-router", "router/Dockerfile", ("router",), extras_arg=True)
RECIPES = (RUNTIME, OPERATOR, ROUTER)


@dataclass(frozen=True)
class Image:
    """A locally built image and its docker-archive."""

    repository: str
    tag: str
    archive: Path

    @property
    def reference(self) -> str:
        """The image reference pods and the chart name."""
        return f"{self.repository}:{self.tag}"


@dataclass(frozen=True)
class Built:
    """The images ``ensure`` returns."""

    runtime: Image
    operator: Image
    router: Image

    @property
    def images(self) -> tuple[Image, Image, Image]:
        """Every image, in the order of ``RECIPES``."""
        return (self.runtime, self.operator, self.router)


def cache_dir() -> Path:
    """Where the storage, the wheels and the archives are kept, outside the repository."""
    return binaries.cache_root() / "images"


def storage() -> Buildah:
    """buildah on the storage the images are built in."""
    return Buildah(cache_dir())


def copied_sources(dockerfile: str) -> list[str]:
    """The build-context paths the Dockerfile's COPY and ADD instructions read (not those
    copied from another stage), in order."""
    sources: list[str] = []
    for instruction in _instructions(dockerfile):
        keyword, _, rest = instruction.partition(" ")
        if keyword.upper() not in ("COPY", "ADD"):
            continue
        flags = re.match(r"(?:--\S+\s+)*", rest.strip())
        assert flags is not None  # the pattern matches the empty string
        if "--from=" in flags.group():
            continue
        operands = rest.strip()[flags.end() :]
        words = json.loads(operands) if operands.startswith("[") else shlex.split(operands)
        sources += [source.rstrip("/") or "." for source in words[:-1]]
    return sources


def _instructions(dockerfile: str) -> Iterator[str]:
    """Instructions with their continuation lines joined, comments left out."""
    pending = ""
    for line in dockerfile.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        yield pending + stripped
        pending = ""
    if pending:
        yield pending


def wheel_requirements(pyproject: Path, extras: tuple[str, ...]) -> list[str]:
    """What the image builds install from wheels: the build backend, the base dependencies and
    those of ``extras``."""
    project = tomllib.loads(pyproject.read_text())
    requirements = [*project["build-system"]["requires"], *project["project"]["dependencies"]]
    for extra in extras:
        requirements += project["project"]["optional-dependencies"][extra]
    return sorted(set(requirements))


def wheels_key(requirements: list[str]) -> str:
    """The wheel folder's name: the requirements, for this interpreter and machine."""
    python = f"cp{sys.version_info.major}{sys.version_info.minor}-{platform.machine()}"
    return hashlib.sha256("\n".join([python, *requirements]).encode()).hexdigest()[:12]


def input_digest(recipe: Recipe, context: Path, *, base_key: str, wheels: str) -> str:
    """A digest of everything that goes into ``recipe``'s image when built from ``context``:
    its Dockerfile, the files it copies, its build arguments, the base's and the wheels' keys."""
    digest = hashlib.sha256()
    for name, value in [("base", base_key), ("wheels", wheels), *recipe.build_args().items()]:
        digest.update(f"{name}={value}\n".encode())
    dockerfile = context / recipe.dockerfile
    for source in [recipe.dockerfile, *copied_sources(dockerfile.read_text())]:
        top = context / source
        files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        if not files:
            raise FileNotFoundError(f"{recipe.dockerfile} copies {source}, missing in {context}")
        for path in files:
            # Bytecode that running the sources leaves beside them: the build copies it, but
            # the wheel (and so the image) is made from the sources alone.
            if "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            relative = path.relative_to(context).as_posix()
            mode = "x" if path.stat().st_mode & 0o111 else "-"
            digest.update(f"{relative}\0{mode}\0{path.stat().st_size}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def image(recipe: Recipe, context: Path = ROOT) -> Image:
    """The image ``recipe`` makes from ``context``, named by its inputs' digest."""
    requirements = wheel_requirements(context / "pyproject.toml", _all_extras())
    tag = input_digest(recipe, context, base_key=debian_base.key(), wheels=wheels_key(requirements))
    repository = f"{static_images.REPOSITORY}/{recipe.name}"
    return Image(repository, tag, cache_dir() / "archives" / f"{recipe.name}-{tag}.tar")


def _all_extras() -> tuple[str, ...]:
    """Every image's extras: one folder of wheels serves them all."""
    return tuple(sorted({extra for recipe in RECIPES for extra in recipe.extras}))


def ensure(log: Callable[[str], None] = print) -> Built:
    """Return the runtime, operator and router images, building those whose archive is
    missing."""
    started = time.monotonic()
    wanted = {recipe: image(recipe) for recipe in RECIPES}
    built = Built(runtime=wanted[RUNTIME], operator=wanted[OPERATOR], router=wanted[ROUTER])
    if all(item.archive.is_file() for item in wanted.values()):
        log(f"images up to date ({time.monotonic() - started:.1f}s): {_references(built)}")
        return built
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    # Concurrent sessions may all find an archive missing: one builds, the rest wait.
    with (directory / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        todo = [recipe for recipe, item in wanted.items() if not item.archive.is_file()]
        if todo:
            _build(todo, wanted, log)
    log(f"images ready in {time.monotonic() - started:.0f}s: {_references(built)}")
    return built


def _references(built: Built) -> str:
    return ", ".join(item.reference for item in built.images)


def _build(todo: list[Recipe], wanted: dict[Recipe, Image], log: Callable[[str], None]) -> None:
    packages.ensure(log)
    buildah = storage()
    debian_base.ensure(buildah, cache_dir(), log)
    wheels = _ensure_wheels(wheel_requirements(ROOT / "pyproject.toml", _all_extras()), log)
    for recipe in todo:
        _build_image(buildah, recipe, wanted[recipe], wheels, log)


def _ensure_wheels(requirements: list[str], log: Callable[[str], None]) -> Path:
    """The folder of wheels for ``requirements``, made with pip on this machine when missing."""
    if sys.version_info[:2] != debian_base.PYTHON:
        raise RuntimeError(
            f"the images' Python is {debian_base.PYTHON}: make their wheels with that version,"
            f" not {sys.version_info[:2]}"
        )
    directory = cache_dir() / "wheels" / wheels_key(requirements)
    if directory.is_dir():
        return directory
    started = time.monotonic()
    log(f"making wheels of {len(requirements)} requirements with pip")
    staging = directory.with_name(f".{directory.name}")
    shutil.rmtree(staging, ignore_errors=True)
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(staging)]
    result = subprocess.run([*command, *requirements], capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"pip wheel failed:\n{(result.stdout + result.stderr)[-6000:]}")
    staging.rename(directory)
    for other in directory.parent.iterdir():
        if other != directory:
            shutil.rmtree(other)
    count = len(list(directory.glob("*.whl")))
    log(f"made {count} wheels ({_megabytes(directory)} MB) in {time.monotonic() - started:.0f}s")
    return directory


def _build_image(
    buildah: Buildah, recipe: Recipe, target: Image, wheels: Path, log: Callable[[str], None]
) -> None:
    """Build one image, write its docker-archive, and drop it and older archives of it from
    the cache (the archive is what nodes and tests use)."""
    started = time.monotonic()
    log(f"building {target.reference} from {recipe.dockerfile}")
    args = [f"--build-arg={name}={value}" for name, value in recipe.build_args().items()]
    buildah.run(
        "bud",
        f"--file={ROOT / recipe.dockerfile}",
        f"--tag={target.reference}",
        *args,
        f"--volume={wheels}:{WHEELS_MOUNT}:ro",
        "--pull=never",
        "--network=none",
        f"--isolation={ISOLATION}",
        str(ROOT),
        timeout=1800,
    )
    built = time.monotonic()
    target.archive.parent.mkdir(exist_ok=True)
    staging = target.archive.with_suffix(".tmp")
    staging.unlink(missing_ok=True)
    buildah.run("push", target.reference, f"docker-archive:{staging}:{target.reference}")
    buildah.run("rmi", target.reference)
    # Rename into place so an interrupted build never leaves a half-written archive.
    staging.replace(target.archive)
    for older in target.archive.parent.glob(f"{recipe.name}-*.tar"):
        if older != target.archive:
            older.unlink()
    log(
        f"built {target.reference} in {built - started:.0f}s, archived in"
        f" {time.monotonic() - built:.0f}s ({target.archive.stat().st_size // 10**6} MB)"
    )


def _megabytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) // 10**6


def load(built: Built, address: str, log: Callable[[str], None] = print) -> None:
    """Import the images into the containerd at socket ``address`` (namespace ``k8s.io``,
    the kubelet's), skipping those it already holds."""
    present = set(_ctr(address, "images", "list", "--quiet").split())
    for item in built.images:
        if item.reference in present:
            log(f"{item.reference} already in containerd")
            continue
        started = time.monotonic()
        _ctr(address, "images", "import", str(item.archive), timeout=900)
        log(f"imported {item.reference} into containerd in {time.monotonic() - started:.0f}s")


def _ctr(address: str, *args: str, timeout: float = 60) -> str:
    command = ["ctr", "--address", address, "--namespace", "k8s.io", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"ctr {' '.join(args[:2])} failed:\n{result.stderr[-4000:]}")
    return result.stdout


def helm_flags(built: Built) -> str:
    """Helm flags, on one line, that point helm/sluice at the local images. The operator's
    pull policy is Never, since the images exist only in the node's containerd; the runtime
    and router pods the operator creates name a tag other than ``latest``, so Kubernetes'
    default pull policy for them, IfNotPresent, uses the imported image too."""
    values = {
        "image.repository": built.operator.repository,
        "image.tag": built.operator.tag,
        "image.pullPolicy": "Never",
        "images.runtime.repository": built.runtime.repository,
        "images.runtime.tag": built.runtime.tag,
        "images.router.repository": built.router.repository,
        "images.router.tag": built.router.tag,
    }
    return " ".join(f"--set {name}={value}" for name, value in values.items())
