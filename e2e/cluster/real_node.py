"""One real worker node beside the kwok nodes: containerd, the kubelet, kube-proxy and a
device plugin that advertises ``nvidia.com/gpu``.

``control_plane.up`` calls ``start`` when asked for a real node, after the control plane is
healthy; ``control_plane.down`` calls ``drain`` while the cluster still runs and ``clean``
after the registry has stopped every process. Pods scheduled here run as real containers
(runc), on a CNI bridge whose pods route only to this node, to each other and to Services
(no default route, no masquerading: no pod packet can leave the machine). The device plugin
(``tools/deviceplugin``) gives the node fake GPUs, labelled like the kwok nodes' with
``nvidia.com/gpu.product``, so that GPU pods are scheduled there and really run (on the CPU);
it registers again whenever the kubelet restarts.

Everything the node writes lives under ``WORKDIR/node`` (containerd's root, state and
socket, the kubelet's root and pod logs, the CNI configuration and address leases), except
what the kernel holds (the bridge, kube-proxy's and the kubelet's iptables chains, the
kubelet's cgroups, the kernel settings the kubelet changes, the mounts of running pods) and a
few fixed paths the kubelet and containerd's shims use. ``clean`` undoes each.
There is one real node per machine, since the bridge and the iptables chains are global.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from e2e.cluster import binaries, dns, nodes, packages, static_images
from e2e.cluster.client import Cluster
from e2e.cluster.processes import Registry
from e2e.cluster.waiting import wait_for

NODE_NAME = "real-node-0"
POD_CIDR = "10.244.0.0/24"
BRIDGE = "sluice0"
# The bridge's own address: the pods' gateway, the node's IP, and where pods reach what runs on
# this machine (the API server, cluster DNS, the tooling's model server). It is made before
# the API server starts, so that the API server can serve on it.
BRIDGE_ADDRESS = "10.244.0.1"
# The CNI library's cache of results, one file per network attachment, each named with the
# container's ID; the kubelet's teardown removes them, killing containers without it does not.
CNI_CACHE = Path("/var/lib/cni/results")
COMPONENTS = ("containerd", "kubelet", "kube-proxy", "deviceplugin")
DEFAULT_GPUS = 4
GPU_PRODUCT = nodes.DEFAULT_PRODUCTS[0]
START_TIMEOUT = 120.0
DRAIN_TIMEOUT = 60.0
# The kubelet sets these unless protectKernelDefaults is on; ``clean`` puts back the values
# found before the first start.
KERNEL_SETTINGS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTAINER_LOGS = Path("/var/log/containers")
# The kubelet's device manager always listens here, whatever the kubelet's root folder; the
# device plugin serves its own socket beside it.
DEVICE_PLUGINS = Path("/var/lib/kubelet/device-plugins")
DEVICE_PLUGIN_SOCKET = DEVICE_PLUGINS / "sluice-gpu.sock"
# Fixed paths the kubelet, containerd's shims and its CNI library use whatever their root
# folders: the kubelet's files are removed, then each folder once it is empty (deepest first).
KUBELET_FIXED_FILES = (
    DEVICE_PLUGINS / "kubelet.sock",
    DEVICE_PLUGINS / "kubelet_internal_checkpoint",
    DEVICE_PLUGIN_SOCKET,
)
SHARED_FOLDERS = (
    DEVICE_PLUGINS,
    Path("/var/lib/kubelet"),
    CONTAINER_LOGS,
    CNI_CACHE,
    Path("/var/lib/cni"),
    Path("/run/netns"),
    Path("/run/containerd/s"),
    Path("/run/containerd"),
)


class NodeStartError(RuntimeError):
    """A node component did not start; the message carries the end of its log."""


@dataclass(frozen=True)
class Layout:
    """Where the real node keeps its files, under the cluster's work folder."""

    folder: Path

    @property
    def containerd_config(self) -> Path:
        return self.folder / "containerd.toml"

    @property
    def containerd_socket(self) -> Path:
        return self.folder / "containerd.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.folder / "cni" / "net.d"

    @property
    def cni_data_dir(self) -> Path:
        return self.folder / "cni" / "networks"

    @property
    def kubelet_root(self) -> Path:
        return self.folder / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.folder / "kubelet.yaml"

    @property
    def kernel_settings(self) -> Path:
        return self.folder / "kernel-settings.json"

    @property
    def nft_tables(self) -> Path:
        return self.folder / "nft-tables.json"


def layout(workdir: Path) -> Layout:
    """The real node's file layout for the cluster in ``workdir``."""
    return Layout(workdir / "node")


def start(
    cluster: Cluster,
    registry: Registry,
    *,
    service_range: str,
    gpus: int = DEFAULT_GPUS,
    log: Callable[[str], None] = print,
) -> None:
    """Start containerd, the kubelet, kube-proxy and the device plugin, and wait until the
    node is Ready with ``gpus`` allocatable ``nvidia.com/gpu``.

    ``service_range`` is the cluster's Service IP range, the one range beyond the node and
    its pods that pods get a route to."""
    packages.ensure(log)
    images = [static_images.pause(), static_images.http_ok()]
    archives = [static_images.ensure(image, cluster.bin_dir) for image in images]
    paths = layout(cluster.workdir)
    paths.folder.mkdir(parents=True, exist_ok=True)
    if not paths.kernel_settings.exists():
        paths.kernel_settings.write_text(json.dumps(_read_kernel_settings(), indent=2))
        paths.nft_tables.write_text(json.dumps(_nft_tables()))
    make_bridge(cluster.workdir)
    node_ip = BRIDGE_ADDRESS

    paths.containerd_config.write_text(_containerd_config(paths, images[0].reference))
    paths.cni_conf_dir.mkdir(parents=True, exist_ok=True)
    (paths.cni_conf_dir / "10-sluice.conflist").write_text(
        json.dumps(_cni_config(paths, service_range), indent=2)
    )
    containerd = _which("containerd")
    registry.start("containerd", [containerd, f"--config={paths.containerd_config}"])
    _wait_alive(
        registry, "containerd", lambda: _ctr(paths, "version").returncode == 0, "containerd"
    )
    for archive in archives:
        imported = _ctr(paths, "images", "import", str(archive))
        if imported.returncode != 0:
            raise NodeStartError(f"importing {archive.name} failed:\n{imported.stderr}")

    kubelet_port, healthz_port, proxy_healthz, proxy_metrics = _free_ports(4)
    paths.kubelet_config.write_text(
        yaml.safe_dump(_kubelet_config(cluster, paths, node_ip, kubelet_port, healthz_port))
    )
    started = time.monotonic()
    registry.start("kubelet", _kubelet(cluster, paths, node_ip, gpus))
    registry.start("kube-proxy", _kube_proxy(cluster, proxy_healthz, proxy_metrics))
    # It waits for the kubelet's socket by itself.
    registry.start("deviceplugin", _device_plugin(cluster, gpus))
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        _wait_alive(registry, "kubelet", lambda: _node_ready(core), f"node {NODE_NAME} Ready")
        _wait_alive(
            registry,
            "deviceplugin",
            lambda: allocatable_gpus(core) == gpus,
            f"{gpus} {nodes.GPU_RESOURCE} allocatable on {NODE_NAME}",
        )
    _wait_alive(
        registry,
        "kube-proxy",
        lambda: _healthy(f"http://127.0.0.1:{proxy_healthz}/healthz"),
        "kube-proxy healthy",
    )
    log(f"real node {NODE_NAME} Ready {time.monotonic() - started:.1f}s after the kubelet started")


def drain(cluster: Cluster) -> None:
    """Delete the pods bound to the real node and wait until the kubelet has stopped them."""
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        selector = f"spec.nodeName={NODE_NAME}"
        for pod in core.list_pod_for_all_namespaces(field_selector=selector).items:
            with contextlib.suppress(client.ApiException):
                core.delete_namespaced_pod(
                    pod.metadata.name, pod.metadata.namespace, grace_period_seconds=1
                )
        wait_for(
            lambda: not core.list_pod_for_all_namespaces(field_selector=selector).items,
            timeout=DRAIN_TIMEOUT,
            what=f"the pods on {NODE_NAME} to stop",
        )


def kill_containers(workdir: Path) -> None:
    """Kill every container of a node whose kubelet is gone, and drop their network namespaces.

    ``drain`` needs the kubelet; this is what ``down`` does instead when the kubelet died, so
    that no container outlives the cluster. It talks to containerd directly."""
    paths = layout(workdir)
    listing = _ctr(paths, "containers", "list", "--quiet")
    if listing.returncode != 0:
        return
    namespaces: set[Path] = set()
    for container in listing.stdout.split():
        info = _ctr(paths, "containers", "info", container)
        if info.returncode == 0:
            spec = json.loads(info.stdout).get("Spec") or {}
            for namespace in spec.get("linux", {}).get("namespaces", []):
                if namespace.get("type") == "network" and namespace.get("path"):
                    # /var/run links to /run, where the mount table names it.
                    namespaces.add(Path(namespace["path"]).resolve())
        _ctr(paths, "tasks", "kill", "--signal", "SIGKILL", container)
    wait_for(
        lambda: not _running_tasks(paths),
        timeout=DRAIN_TIMEOUT,
        what="the node's containers to stop",
    )
    for container in listing.stdout.split():
        _ctr(paths, "tasks", "delete", container)
    for namespace in namespaces:
        if namespace in mounts_under(namespace):
            subprocess.run(["umount", str(namespace)], check=True)
        namespace.unlink(missing_ok=True)
    for container in listing.stdout.split():
        for result in CNI_CACHE.glob(f"*-{container}-*"):
            result.unlink()


def clean(workdir: Path, bin_dir: Path) -> None:
    """Undo what the node left in the kernel once its processes are stopped."""
    paths = layout(workdir)
    if not paths.folder.exists():
        return
    kube_proxy = bin_dir / "kube-proxy"
    if kube_proxy.exists():
        subprocess.run([str(kube_proxy), "--cleanup"], capture_output=True, check=False)
    _remove_kube_chains()
    if paths.nft_tables.exists():
        # iptables (nf_tables backend) leaves the tables it made, empty by now.
        before = set(json.loads(paths.nft_tables.read_text()))
        for table in sorted(set(_nft_tables()) - before):
            subprocess.run(["nft", "delete", "table", *table.split()], check=True)
        paths.nft_tables.unlink()
    _unmount_under(workdir)
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        subprocess.run(["ip", "link", "delete", BRIDGE], check=True)
    shutil.rmtree(paths.cni_data_dir, ignore_errors=True)
    _remove_cgroups()
    for path in KUBELET_FIXED_FILES:
        path.unlink(missing_ok=True)
    for link in container_log_links(workdir):
        link.unlink()
    for folder in SHARED_FOLDERS:
        with contextlib.suppress(OSError):
            folder.rmdir()
    if paths.kernel_settings.exists():
        for name, value in json.loads(paths.kernel_settings.read_text()).items():
            Path("/proc/sys", name).write_text(value)
        paths.kernel_settings.unlink()


# The kubelet and kube-proxy authenticate with the admin's client certificate: the API server
# authorizes with RBAC alone (no Node authorizer), and no default binding grants the
# system:nodes group what a kubelet needs.
def _kubelet(cluster: Cluster, paths: Layout, node_ip: str, gpus: int) -> list[str]:
    labels = {
        "nvidia.com/gpu.present": "true",
        nodes.GPU_PRODUCT_LABEL: GPU_PRODUCT,
        "nvidia.com/gpu.count": str(gpus),
    }
    return [
        str(cluster.bin_dir / "kubelet"),
        f"--config={paths.kubelet_config}",
        f"--kubeconfig={cluster.kubeconfig}",
        f"--root-dir={paths.kubelet_root}",
        f"--cert-dir={paths.kubelet_root / 'pki'}",
        f"--hostname-override={NODE_NAME}",
        f"--node-ip={node_ip}",
        "--node-labels=" + ",".join(f"{key}={value}" for key, value in labels.items()),
        "--v=0",
    ]


def _device_plugin(cluster: Cluster, gpus: int) -> list[str]:
    return [
        str(binaries.device_plugin(cluster.bin_dir)),
        f"--dir={DEVICE_PLUGINS}",
        f"--endpoint={DEVICE_PLUGIN_SOCKET.name}",
        f"--resource={nodes.GPU_RESOURCE}",
        f"--count={gpus}",
    ]


def _kube_proxy(cluster: Cluster, healthz_port: int, metrics_port: int) -> list[str]:
    return [
        str(cluster.bin_dir / "kube-proxy"),
        f"--kubeconfig={cluster.kubeconfig}",
        f"--hostname-override={NODE_NAME}",
        "--proxy-mode=iptables",
        f"--cluster-cidr={POD_CIDR}",
        # Leave the machine's conntrack and localhost-routing settings as they are.
        "--conntrack-max-per-core=0",
        "--conntrack-tcp-timeout-established=0",
        "--conntrack-tcp-timeout-close-wait=0",
        "--iptables-localhost-nodeports=false",
        f"--healthz-bind-address=127.0.0.1:{healthz_port}",
        f"--metrics-bind-address=127.0.0.1:{metrics_port}",
        "--v=0",
    ]


def _containerd_config(paths: Layout, sandbox_image: str) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""\
version = 2
root = "{paths.folder / "containerd"}"
state = "{paths.folder / "containerd-state"}"
# Plugins that would write outside the work folder, or need what this machine lacks.
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{paths.containerd_socket}"

[{cri}]
  sandbox_image = "{sandbox_image}"
  # The sandbox lacks CAP_SYS_RESOURCE: the negative oom_score_adj the kubelet asks for
  # fails under runc ("can't get final child's PID from pipe: EOF") unless restricted.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[{cri}.containerd]
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  Root = "{paths.folder / "containerd-state" / "runc"}"

[{cri}.cni]
  bin_dir = "{packages.CNI_BIN_DIR}"
  conf_dir = "{paths.cni_conf_dir}"
"""


def _cni_config(paths: Layout, service_range: str) -> dict[str, Any]:
    """A bridge network whose pods route only to this node, the pod range and Services."""
    return {
        "cniVersion": "1.0.0",
        "name": "sluice",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR}]],
                    # The node's address is on the pods' own link; Services are the only
                    # range beyond it.
                    "routes": [{"dst": service_range}],
                    "dataDir": str(paths.cni_data_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def _kubelet_config(
    cluster: Cluster, paths: Layout, node_ip: str, port: int, healthz_port: int
) -> dict[str, Any]:
    endpoint = f"unix://{paths.containerd_socket}"
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node_ip,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(cluster.workdir / "pki" / "ca.crt")},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "containerRuntimeEndpoint": endpoint,
        "imageServiceEndpoint": endpoint,
        # No systemd here, and the machine mounts cgroup v1 beside v2 (hybrid).
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        "podCIDR": POD_CIDR,
        # The cluster DNS (``dns``) that ``control_plane.up`` serves on the bridge.
        "clusterDNS": [BRIDGE_ADDRESS],
        "clusterDomain": dns.CLUSTER_DOMAIN,
        "podLogsDir": str(paths.folder / "pod-logs"),
        "registerNode": True,
        "resolvConf": "/etc/resolv.conf",
    }


def _wait_alive(registry: Registry, name: str, condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition``, failing at once with the log's end if ``name`` exits."""
    managed = next(p for p in registry.load() if p.name == name)

    def met() -> bool:
        if not managed.alive():
            raise NodeStartError(f"{name} exited during start:\n{registry.log_tail(name)}")
        return condition()

    try:
        wait_for(met, timeout=START_TIMEOUT, what=what)
    except TimeoutError as error:
        raise NodeStartError(f"{error}\n{registry.log_tail(name)}") from error


def _node_ready(core: client.CoreV1Api) -> bool:
    try:
        node = core.read_node(NODE_NAME)
    except client.ApiException:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def allocatable_gpus(core: client.CoreV1Api) -> int | None:
    """The real node's allocatable ``nvidia.com/gpu``, or None before it reports any."""
    try:
        node = core.read_node(NODE_NAME)
    except client.ApiException:
        return None
    value = (node.status.allocatable or {}).get(nodes.GPU_RESOURCE)
    return None if value is None else int(value)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _ctr(paths: Layout, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ctr", f"--address={paths.containerd_socket}", "--namespace=k8s.io", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _running_tasks(paths: Layout) -> list[str]:
    """IDs of the containerd tasks still running (``ctr tasks list``: TASK PID STATUS)."""
    rows = [line.split() for line in _ctr(paths, "tasks", "list").stdout.splitlines()[1:]]
    return [row[0] for row in rows if row[-1:] == ["RUNNING"]]


def _which(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise NodeStartError(f"{name} is not installed")
    return path


def make_bridge(workdir: Path) -> None:
    """Create the pods' bridge with its address, unless it is there: the node's IP must exist
    before the kubelet starts, and the API server's address before the API server starts.
    The node's folder is made first, so that ``clean`` knows the bridge is this cluster's."""
    layout(workdir).folder.mkdir(parents=True, exist_ok=True)
    if not Path(f"/sys/class/net/{BRIDGE}").exists():
        subprocess.run(["ip", "link", "add", BRIDGE, "type", "bridge"], check=True)
    prefix = POD_CIDR.split("/")[1]
    listing = subprocess.run(
        ["ip", "-4", "-j", "address", "show", "dev", BRIDGE],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    addresses = {a["local"] for link in json.loads(listing) for a in link.get("addr_info", [])}
    if BRIDGE_ADDRESS not in addresses:
        subprocess.run(
            ["ip", "address", "add", f"{BRIDGE_ADDRESS}/{prefix}", "dev", BRIDGE], check=True
        )
    subprocess.run(["ip", "link", "set", BRIDGE, "up"], check=True)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _read_kernel_settings() -> dict[str, str]:
    return {name: Path("/proc/sys", name).read_text().strip() for name in KERNEL_SETTINGS}


def mounts_under(folder: Path) -> list[Path]:
    """Mount points at or below ``folder``, deepest first."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        # The fifth field is the mount point, with spaces and the like octal-escaped.
        point = Path(line.split()[4].encode().decode("unicode_escape"))
        if point == folder or folder in point.parents:
            points.append(point)
    return sorted(points, key=lambda p: len(p.parts), reverse=True)


def _unmount_under(folder: Path) -> None:
    for point in mounts_under(folder.resolve()):
        subprocess.run(["umount", "--lazy", str(point)], check=True)


def _remove_cgroups() -> None:
    """Remove the kubelet's (by then empty) ``kubepods`` cgroups in every hierarchy."""
    for top in CGROUP_ROOT.glob("*/kubepods"):
        for folder in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if folder.is_dir():
                with contextlib.suppress(OSError):
                    folder.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def container_log_links(workdir: Path) -> list[Path]:
    """The kubelet's links in ``/var/log/containers`` (a fixed folder) to this node's logs;
    the kubelet removes them with the containers, unless it died first."""
    if not CONTAINER_LOGS.is_dir():
        return []
    return [
        link
        for link in CONTAINER_LOGS.iterdir()
        if link.is_symlink() and Path(os.readlink(link)).is_relative_to(workdir)
    ]


def kube_chains() -> list[str]:
    """``TOOL TABLE CHAIN`` for every ``KUBE-*`` chain in the IPv4 and IPv6 tables."""
    found = []
    for tool in ("iptables", "ip6tables"):
        table = ""
        for line in _save(tool).splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":KUBE-"):
                found.append(f"{tool} {table} {line[1:].split()[0]}")
    return found


def _remove_kube_chains() -> None:
    """Remove the chains kube-proxy's cleanup leaves: the kubelet's firewall and canaries."""
    for tool in ("iptables", "ip6tables"):
        table = ""
        jumps: list[tuple[str, list[str]]] = []
        chains: list[tuple[str, str]] = []
        for line in _save(tool).splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":KUBE-"):
                chains.append((table, line[1:].split()[0]))
            elif line.startswith("-A ") and " -j KUBE-" in line and not line.startswith("-A KUBE-"):
                jumps.append((table, ["-D", *shlex.split(line)[1:]]))
        for table, rule in jumps:
            subprocess.run([tool, "-w", "-t", table, *rule], check=True)
        for table, chain in chains:
            subprocess.run([tool, "-w", "-t", table, "-F", chain], check=True)
        for table, chain in chains:
            subprocess.run([tool, "-w", "-t", table, "-X", chain], check=True)


def _save(tool: str) -> str:
    return subprocess.run([f"{tool}-save"], capture_output=True, text=True, check=True).stdout


def _nft_tables() -> list[str]:
    """``FAMILY NAME`` of every nftables table (none where the nft tool is missing)."""
    if shutil.which("nft") is None:
        return []
    listing = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True)
    return [line.removeprefix("table ").strip() for line in listing.stdout.splitlines() if line]
