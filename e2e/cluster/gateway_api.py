"""The Gateway API's standard channel on a local cluster: its CRDs, from the Go module.

With ``spec.traffic.provider: GatewayAPI`` the operator renders an HTTPRoute and a GRPCRoute
(``sluice.operator.gateway``). The integration tests (tests/integration/test_gateway_api.py)
install the Gateway API here so that the API server validates those routes against the real
schema. No Gateway implementation runs: the routes are stored and checked, never served.

The manifests come from the Go module ``MODULE`` at ``VERSION``, because these machines have
no release downloads: ``go mod download`` fetches it through the Go module proxy, checked
against the checksum database like every module, into a module cache of its own under the
binary cache (``binaries.cache_root``), so it is fetched once per machine and the developer's
own module cache is left alone. ``install`` applies ``CHANNEL_DIR``'s manifests (the CRDs,
and the ValidatingAdmissionPolicy the release ships beside them) with server-side apply and
waits until every CRD is Established; running it again changes nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, dynamic
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from e2e.cluster.binaries import cache_root
from e2e.cluster.waiting import wait_for

MODULE = "sigs.k8s.io/gateway-api"
VERSION = "v1.7.0"
# The module's go.mod asks for Go 1.27: the go command fetches this release of itself from the
# module proxy (once, into the same cache) to unpack it, whichever Go the machine has.
GO_TOOLCHAIN = "go1.27.3"
# The standard channel: what Gateway API implementations support by default.
CHANNEL_DIR = "config/crd/standard"
FIELD_MANAGER = "sluice-e2e"
CRD_KIND = "CustomResourceDefinition"


def module_cache() -> Path:
    """The Go module cache the Gateway API module is downloaded into."""
    return cache_root() / "gomod"


def module_dir(log: Callable[[str], None] = print) -> Path:
    """The unpacked module at ``VERSION``, downloaded on first use (later calls find it in
    the cache without going to the network)."""
    if shutil.which("go") is None:
        raise RuntimeError(f"Go is needed to download {MODULE}; install Go 1.24 or newer")
    cache = module_cache()
    cache.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "GOMODCACHE": str(cache),
        "GOTOOLCHAIN": GO_TOOLCHAIN,
        # Writable, unlike Go's default, so that the cache folder can simply be deleted.
        "GOFLAGS": f"{os.environ.get('GOFLAGS', '')} -modcacherw".strip(),
    }
    log(f"fetching {MODULE}@{VERSION} (cached under {cache})")
    # Run in the cache, outside any Go module, so no go.mod around it is consulted.
    result = subprocess.run(
        ["go", "mod", "download", "-json", f"{MODULE}@{VERSION}"],
        cwd=cache,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    # -json reports a failed download in the output, with exit status 1.
    try:
        info: dict[str, Any] = json.loads(result.stdout)
    except json.JSONDecodeError:
        info = {}
    if result.returncode != 0 or info.get("Error") or not info.get("Dir"):
        raise RuntimeError(
            f"go mod download {MODULE}@{VERSION} failed: "
            f"{info.get('Error') or result.stderr.strip() or result.stdout.strip()}"
        )
    return Path(info["Dir"])


def manifests(directory: Path) -> list[dict[str, Any]]:
    """Every object in the channel's YAML files under module folder ``directory``, in file
    order (the release's own order: its file names)."""
    files = sorted((directory / CHANNEL_DIR).glob("*.yaml"))
    if not files:
        raise RuntimeError(f"{directory} has no manifests under {CHANNEL_DIR}")
    objects = []
    for path in files:
        objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return objects


def crd_names(objects: list[dict[str, Any]]) -> list[str]:
    """The names of the CRDs among ``objects``."""
    return [obj["metadata"]["name"] for obj in objects if obj["kind"] == CRD_KIND]


def established(crd: dict[str, Any]) -> bool:
    """Whether a CRD, as read from the API, reports condition Established True."""
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def install(
    api: client.ApiClient, *, timeout: float = 60, log: Callable[[str], None] = print
) -> list[str]:
    """Apply the Gateway API's standard channel to the cluster ``api`` talks to (as an admin)
    and wait until its CRDs are Established and their kinds discoverable; the CRDs' names."""
    objects = manifests(module_dir(log))
    resources = dynamic.DynamicClient(api)
    for obj in objects:
        kind = resources.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        resources.server_side_apply(
            kind, body=obj, field_manager=FIELD_MANAGER, force_conflicts=True
        )
    crds = [obj for obj in objects if obj["kind"] == CRD_KIND]
    names = crd_names(crds)
    wait_for(
        lambda: all(_serving(resources, crd) for crd in crds),
        timeout=timeout,
        what=f"{', '.join(names)} Established and discoverable",
    )
    log(f"installed {MODULE} {VERSION}: {len(names)} CRDs")
    return names


def _serving(resources: dynamic.DynamicClient, crd: dict[str, Any]) -> bool:
    """Whether a CRD is Established and discovery lists every version it serves, so that a
    client finds its kind as soon as ``install`` returns."""
    api = resources.resources.get(api_version="apiextensions.k8s.io/v1", kind=CRD_KIND)
    if not established(api.get(name=crd["metadata"]["name"]).to_dict()):
        return False
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    try:
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                resources.resources.get(api_version=f"{group}/{version['name']}", kind=kind)
    except ResourceNotFoundError:
        return False
    return True
