"""Find or build the pinned binaries of the local control plane.

The versions live in the Go tools modules under ``e2e/cluster/tools/`` (their go.mod and
go.sum are the single source of truth). Binaries are built from Go modules, because these
machines have no release downloads, and cached outside the repository in a folder keyed by
every pinned version, so a version bump builds into a fresh folder and an unchanged pin never
builds twice. ``KUBEBUILDER_ASSETS`` (the envtest convention) supplies binaries a user already
has; they are linked into the cache folder so that one folder always holds the full set.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TOOLS_DIR = Path(__file__).resolve().parent / "tools"

KUBE_BINARIES = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "kube-proxy",
)
ALL_BINARIES = (*KUBE_BINARIES, "etcd", "kwok", "helm", "coredns")
# The real node's device plugin, built from its own tools module (main.go beside go.mod).
DEVICE_PLUGIN = "deviceplugin"
# Envtest asset folders hold only these; everything else is always built.
ENVTEST_BINARIES = ("kube-apiserver", "etcd", "kubectl")
# kwok 0.8 ships no built-in stages; these stage files from its module make nodes Ready,
# keep their leases fresh and move pods to Running.
KWOK_STAGES = ("node/fast", "node/heartbeat-with-lease", "pod/fast")


@dataclass(frozen=True)
class Tool:
    """One Go tools module and the binaries it yields."""

    folder: str
    module: str
    packages: dict[str, str]  # binary name -> Go main package

    @property
    def version(self) -> str:
        """The version this tools module pins for its main module."""
        text = (TOOLS_DIR / self.folder / "go.mod").read_text()
        match = re.search(rf"^\s*(?:require\s+)?{re.escape(self.module)}\s+(v\S+)", text, re.M)
        if match is None:
            raise RuntimeError(f"{self.folder}/go.mod does not pin {self.module}")
        return match.group(1)

    def ldflags(self) -> str:
        """Linker flags that strip debug data and stamp the real version."""
        flags = ["-s", "-w"]
        version = self.version
        if self.folder == "kubernetes":
            major, minor = version.lstrip("v").split(".")[:2]
            for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
                flags += [
                    f"-X {pkg}.gitVersion={version}",
                    f"-X {pkg}.gitMajor={major}",
                    f"-X {pkg}.gitMinor={minor}",
                    f"-X {pkg}.gitTreeState=clean",
                    f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
                ]
        elif self.folder == "helm":
            flags.append(f"-X helm.sh/helm/v3/internal/version.version={version}")
        return " ".join(flags)


TOOLS = (
    Tool(
        "kubernetes",
        "k8s.io/kubernetes",
        {name: f"k8s.io/kubernetes/cmd/{name}" for name in KUBE_BINARIES},
    ),
    Tool("etcd", "go.etcd.io/etcd/server/v3", {"etcd": "go.etcd.io/etcd/server/v3"}),
    Tool("kwok", "sigs.k8s.io/kwok", {"kwok": "sigs.k8s.io/kwok/cmd/kwok"}),
    Tool("helm", "helm.sh/helm/v3", {"helm": "helm.sh/helm/v3/cmd/helm"}),
    # The cluster DNS (dns.py); its main package is the module root.
    Tool("coredns", "github.com/coredns/coredns", {"coredns": "github.com/coredns/coredns"}),
)


def cache_root() -> Path:
    """Where built binaries are kept: ``$SLUICE_CACHE_DIR`` or ``~/.cache/sluice``."""
    return Path(os.environ.get("SLUICE_CACHE_DIR", Path.home() / ".cache" / "sluice"))


def bin_dir() -> Path:
    """The cache folder for the pinned set of versions."""
    key = "_".join(f"{tool.folder}-{tool.version}" for tool in TOOLS)
    return cache_root() / "bin" / key


def device_plugin(directory: Path) -> Path:
    """The device plugin's binary in ``directory``, named by a digest of its sources so that
    an edit builds a fresh one while the pinned set (and the folder's key) stays unchanged."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update((TOOLS_DIR / DEVICE_PLUGIN / name).read_bytes())
    return directory / f"{DEVICE_PLUGIN}-{digest.hexdigest()[:12]}"


def kwok_stage_files(directory: Path) -> list[Path]:
    """The kwok stage files copied next to the binaries at build time."""
    return [directory / "kwok-stages" / f"{stage.replace('/', '-')}.yaml" for stage in KWOK_STAGES]


def missing(directory: Path) -> list[str]:
    """Names of binaries (and the kwok stages) not yet present in ``directory``."""
    names = [name for name in ALL_BINARIES if not os.access(directory / name, os.X_OK)]
    if not all(path.is_file() for path in kwok_stage_files(directory)):
        names.append("kwok-stages")
    if not os.access(device_plugin(directory), os.X_OK):
        names.append(DEVICE_PLUGIN)
    return names


def ensure(log: Callable[[str], None] = print) -> Path:
    """Return the folder holding every binary, building whatever is missing."""
    directory = bin_dir()
    directory.mkdir(parents=True, exist_ok=True)
    if not missing(directory):
        return directory
    # Concurrent test sessions may all find the cache empty: one builds, the rest wait.
    with (directory.parent / f"{directory.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _build_missing(directory, log)
    return directory


def _build_missing(directory: Path, log: Callable[[str], None]) -> None:
    _link_envtest_assets(directory, log)
    todo = missing(directory)
    if not todo:
        return
    if shutil.which("go") is None:
        raise RuntimeError(f"Go is needed to build {', '.join(todo)}; install Go 1.24 or newer")
    for tool in TOOLS:
        wanted = [name for name in tool.packages if name in todo]
        if wanted:
            _build(tool, wanted, directory, log)
    if "kwok-stages" in todo:
        _copy_kwok_stages(directory)
    if DEVICE_PLUGIN in todo:
        _build_device_plugin(directory, log)
    still = missing(directory)
    if still:
        raise RuntimeError(f"build finished but {', '.join(still)} is missing in {directory}")


def _link_envtest_assets(directory: Path, log: Callable[[str], None]) -> None:
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if not assets:
        return
    for name in ENVTEST_BINARIES:
        source = Path(assets) / name
        target = directory / name
        if os.access(source, os.X_OK) and not target.exists():
            target.symlink_to(source.resolve())
            log(f"using {name} from KUBEBUILDER_ASSETS ({source})")


def _build(tool: Tool, names: list[str], directory: Path, log: Callable[[str], None]) -> None:
    """Build ``names`` from ``tool``'s module, reporting progress as packages compile."""
    log(f"building {', '.join(names)} {tool.version} from Go modules (first build takes a while)")
    started = time.monotonic()
    staging = directory / f".build-{tool.folder}"
    staging.mkdir(exist_ok=True)
    for name in names:
        command = [
            "go", "build", "-v", "-trimpath", "-ldflags", tool.ldflags(),
            "-o", str(staging / name), tool.packages[name],
        ]  # fmt: skip
        _run_with_progress(command, cwd=TOOLS_DIR / tool.folder, label=name, log=log)
        # Rename into place so an interrupted build never leaves a half-written binary.
        (staging / name).replace(directory / name)
    staging.rmdir()
    log(f"built {', '.join(names)} in {time.monotonic() - started:.0f}s")


def _run_with_progress(
    command: list[str], *, cwd: Path, label: str, log: Callable[[str], None]
) -> None:
    process = subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    started = last = time.monotonic()
    tail: list[str] = []
    for packages, line in enumerate(process.stdout, start=1):
        tail = [*tail[-20:], line.rstrip()]
        now = time.monotonic()
        if now - last >= 15:
            log(f"  {label}: {packages} packages compiled, {now - started:.0f}s")
            last = now
    if process.wait() != 0:
        raise RuntimeError(f"building {label} failed:\n" + "\n".join(tail))


def _build_device_plugin(directory: Path, log: Callable[[str], None]) -> None:
    """Build the device plugin, once its kubelet API is checked to be the kubelet's own."""
    kubernetes = next(tool for tool in TOOLS if tool.folder == "kubernetes").version
    plugin = Tool(DEVICE_PLUGIN, "k8s.io/kubelet", {DEVICE_PLUGIN: "."})
    if plugin.version != kubernetes.replace("v1.", "v0.", 1):
        raise RuntimeError(
            f"{DEVICE_PLUGIN}/go.mod pins k8s.io/kubelet {plugin.version}, not the kubelet's"
            f" {kubernetes}"
        )
    log(f"building {DEVICE_PLUGIN} from its tools module")
    started = time.monotonic()
    target = device_plugin(directory)
    staging = target.with_name(f".{target.name}")
    command = ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(staging), "."]
    _run_with_progress(command, cwd=TOOLS_DIR / DEVICE_PLUGIN, label=DEVICE_PLUGIN, log=log)
    staging.replace(target)
    log(f"built {DEVICE_PLUGIN} in {time.monotonic() - started:.0f}s")


def _copy_kwok_stages(directory: Path) -> None:
    kwok = next(tool for tool in TOOLS if tool.folder == "kwok")
    module_dir = subprocess.run(
        ["go", "list", "-m", "-f", "{{.Dir}}", kwok.module],
        cwd=TOOLS_DIR / kwok.folder,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    for stage, target in zip(KWOK_STAGES, kwok_stage_files(directory), strict=True):
        sources = sorted((Path(module_dir) / "kustomize" / "stage" / stage).glob("*.yaml"))
        sources = [path for path in sources if path.name != "kustomization.yaml"]
        if not sources:
            raise RuntimeError(f"kwok {kwok.version} has no stage files under {stage}")
        target.parent.mkdir(exist_ok=True)
        target.write_text("\n---\n".join(path.read_text() for path in sources))
