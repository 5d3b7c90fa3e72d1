"""Bring the local control plane up and down.

``up`` starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok on free
ports, waits until each reports healthy, registers the fake GPU nodes and, when asked, starts
the real node (``real_node``) with what its pods use on this machine: the cluster DNS, Sluice's
images in its containerd, and the model server. Running it again while every component is still
up changes nothing; a partly dead cluster is stopped and started again on its existing etcd
data.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from e2e.cluster import (
    binaries,
    dns,
    images,
    kubeconfig,
    model_store,
    nodes,
    pki,
    real_node,
)
from e2e.cluster.client import Cluster
from e2e.cluster.processes import Registry

SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
# The addresses the API server's certificate names: loopback, the bridge's (when a real node is
# up), and the ``kubernetes`` Service's (the first of the range), which pods dial.
SERVING_ADDRESSES = ("127.0.0.1", real_node.BRIDGE_ADDRESS, "10.96.0.1")
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
# With a real node: the node's own processes and what its pods use on this machine.
REAL_NODE_COMPONENTS = (*real_node.COMPONENTS, dns.NAME, "model-server")
START_TIMEOUT = 120.0
# The controllers' client-side API rate limit (queries per second, burst). The defaults (20/30
# for kube-controller-manager, 50/100 for kube-scheduler) suit a handful of nodes; Kubernetes'
# own scalability tests run both at 100/100, and so does this cluster, so that a benchmark of
# hundreds of InferenceServices measures the operator rather than the controllers' throttle.
# (kwok has no such limit to raise.)
CONTROLLER_API_QPS = 100
CONTROLLER_API_BURST = 100


class StartError(RuntimeError):
    """A component did not become healthy; the message carries the end of its log."""


@dataclass(frozen=True)
class Ports:
    """The loopback ports one cluster listens on."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int
    model_server: int

    @classmethod
    def free(cls) -> Ports:
        """Pick free loopback ports, held open together so none is picked twice."""
        sockets = []
        try:
            for _ in range(7):
                sock = socket.socket()
                sock.bind(("127.0.0.1", 0))
                sockets.append(sock)
            return cls(*(sock.getsockname()[1] for sock in sockets))
        finally:
            for sock in sockets:
                sock.close()


def up(
    workdir: Path,
    *,
    gpu_nodes: int = 3,
    gpus_per_node: int = 8,
    gpu_products: tuple[str, ...] = nodes.DEFAULT_PRODUCTS,
    real_nodes: int = 0,
    real_node_gpus: int = real_node.DEFAULT_GPUS,
    log: Callable[[str], None] = print,
) -> Cluster:
    """Start the cluster in ``workdir`` (or find it running) and return a handle to it.

    ``real_nodes`` (0 or 1) adds a real worker node whose pods really run, with
    ``real_node_gpus`` GPUs advertised by the test tooling's device plugin."""
    if real_nodes not in (0, 1):
        raise ValueError("a machine holds at most one real node")
    wanted = set(COMPONENTS) | (set(REAL_NODE_COMPONENTS) if real_nodes else set())
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    registry = Registry(workdir)
    running = registry.load()
    state_path = workdir / "cluster.json"
    if running and state_path.exists() and all(p.alive() for p in running):
        cluster = Cluster.load(workdir)
        # A cluster holding at least what is asked for is reused (a real node included).
        if wanted <= {p.name for p in running} and _ready(cluster):
            log(f"cluster already running in {workdir}")
            return cluster
    if running:
        log("the cluster is partly stopped or lacks a part; restarting it on its existing data")
        down(workdir)

    started = time.monotonic()
    bin_dir = binaries.ensure(log)
    # With a real node the API server serves on the bridge's address, which pods reach (and
    # the ``kubernetes`` Service points at); otherwise on loopback only.
    if real_nodes:
        real_node.make_bridge(workdir)
    address = real_node.BRIDGE_ADDRESS if real_nodes else "127.0.0.1"
    certs = pki.ensure(workdir / "pki", SERVING_ADDRESSES)
    ports = Ports.free()
    server = f"https://{address}:{ports.apiserver}"
    admin_kubeconfig = kubeconfig.write_admin(workdir / "kubeconfig", server, certs)
    models_url = f"http://{address}:{ports.model_server}" if real_nodes else ""
    cluster = Cluster(
        workdir=workdir,
        bin_dir=bin_dir,
        kubeconfig=admin_kubeconfig,
        server=server,
        models_url=models_url,
    )
    state_path.write_text(json.dumps(cluster.to_json(), indent=2))

    try:
        registry.start("etcd", _etcd(bin_dir, workdir, ports))
        _wait(registry, "etcd", f"http://127.0.0.1:{ports.etcd_client}/health", None)
        registry.start("kube-apiserver", _apiserver(bin_dir, ports, certs, address))
        _wait(registry, "kube-apiserver", f"{server}/readyz", _admin_context(certs))
        registry.start(
            "kube-controller-manager", _controller_manager(bin_dir, workdir, ports, certs)
        )
        registry.start("kube-scheduler", _scheduler(bin_dir, workdir, ports))
        registry.start("kwok", _kwok(bin_dir, workdir, ports))
        insecure = _insecure_context()
        _wait(
            registry,
            "kube-controller-manager",
            f"https://127.0.0.1:{ports.controller_manager}/healthz",
            insecure,
        )
        _wait(registry, "kube-scheduler", f"https://127.0.0.1:{ports.scheduler}/healthz", insecure)
        _wait(registry, "kwok", f"http://127.0.0.1:{ports.kwok}/healthz", None)
        nodes.ensure(cluster, count=gpu_nodes, gpus_per_node=gpus_per_node, products=gpu_products)
        nodes.wait_ready(cluster, count=gpu_nodes, timeout=START_TIMEOUT)
        if real_nodes:
            real_node.start(
                cluster,
                registry,
                service_range=SERVICE_CLUSTER_IP_RANGE,
                gpus=real_node_gpus,
                log=log,
            )
            probes = dns.Probes.free()
            registry.start(
                dns.NAME,
                dns.command(
                    bin_dir,
                    workdir,
                    kubeconfig=admin_kubeconfig,
                    address=address,
                    port=dns.PORT,
                    probes=probes,
                ),
            )
            _wait(registry, dns.NAME, probes.ready_url, None)
            # Sluice's own images, built when missing or stale, in the node's containerd.
            built = images.ensure(log)
            images.load(built, str(real_node.layout(workdir).containerd_socket), log)
            model_store.publish(workdir)
            registry.start(
                "model-server", model_store.server_command(workdir, address, ports.model_server)
            )
            sample = f"{models_url}/{model_store.sample_path()}"
            _wait(registry, "model-server", sample, None)
    except BaseException:
        down(workdir)
        raise
    log(
        f"cluster up in {time.monotonic() - started:.1f}s"
        f" ({gpu_nodes} GPU nodes, {real_nodes} real nodes)"
    )
    return cluster


def down(workdir: Path) -> list[str]:
    """Stop every process ``up`` started in ``workdir`` and undo what the real node left in
    the kernel; return the names of the processes.

    The real node's pods are deleted first, while the API server and the kubelet still run,
    so that the kubelet itself stops their containers and tears down their networks; the
    controllers are stopped before, so that no Deployment replaces them."""
    workdir = workdir.resolve()
    registry = Registry(workdir)
    running = {managed.name for managed in registry.load() if managed.alive()}
    names = [managed.name for managed in registry.load()]
    state_path = workdir / "cluster.json"
    cluster = Cluster.load(workdir) if state_path.exists() else None
    try:
        if cluster and {"kube-apiserver", "kubelet"} <= running:
            # No controller may replace the pods being drained, nor place new ones.
            for name in ("kube-controller-manager", "kube-scheduler"):
                registry.stop(name)
            real_node.drain(cluster)
        elif "containerd" in running:
            real_node.kill_containers(workdir)
    finally:
        registry.stop_all()
        if cluster:
            real_node.clean(workdir, cluster.bin_dir)
    return names


def _ready(cluster: Cluster) -> bool:
    try:
        certs = pki.Pki(cluster.workdir / "pki")
        with urllib.request.urlopen(
            f"{cluster.server}/readyz", context=_admin_context(certs), timeout=5
        ) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _wait(registry: Registry, name: str, url: str, context: ssl.SSLContext | None) -> None:
    """Poll ``url`` until it answers 200, failing fast if the component exits."""
    managed = next(p for p in registry.load() if p.name == name)
    deadline = time.monotonic() + START_TIMEOUT
    last_error = ""
    while time.monotonic() < deadline:
        if not managed.alive():
            raise StartError(f"{name} exited during start:\n{registry.log_tail(name)}")
        try:
            with urllib.request.urlopen(url, context=context, timeout=5) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as error:
            last_error = f"HTTP {error.code}"
        except (OSError, urllib.error.URLError) as error:
            last_error = str(error)
        time.sleep(0.25)
    raise StartError(
        f"{name} not healthy after {START_TIMEOUT:.0f}s ({last_error}):\n{registry.log_tail(name)}"
    )


def _admin_context(certs: pki.Pki) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs.ca_cert))
    context.load_cert_chain(str(certs.admin_cert), str(certs.admin_key))
    return context


def _insecure_context() -> ssl.SSLContext:
    """For the health endpoints of components that serve self-signed certificates."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _etcd(bin_dir: Path, workdir: Path, ports: Ports) -> list[str]:
    client = f"http://127.0.0.1:{ports.etcd_client}"
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    return [
        str(bin_dir / "etcd"),
        f"--data-dir={workdir / 'etcd'}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=default={peer}",
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


def _apiserver(bin_dir: Path, ports: Ports, certs: pki.Pki, address: str) -> list[str]:
    # On loopback no pod could use the ``kubernetes`` Service's endpoint: leave it unset.
    reconciler = "none" if address == "127.0.0.1" else "lease"
    return [
        str(bin_dir / "kube-apiserver"),
        f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
        f"--bind-address={address}",
        f"--advertise-address={address}",
        f"--secure-port={ports.apiserver}",
        f"--tls-cert-file={certs.serving_cert}",
        f"--tls-private-key-file={certs.serving_key}",
        f"--client-ca-file={certs.ca_cert}",
        "--authorization-mode=RBAC",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={certs.service_account_pub}",
        f"--service-account-signing-key-file={certs.service_account_key}",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        "--allow-privileged=true",
        # Namespaces meant for the fake nodes send their pods there, and only there (nodes.py).
        "--enable-admission-plugins=PodTolerationRestriction,PodNodeSelector",
        f"--endpoint-reconciler-type={reconciler}",
        # The real node's name resolves nowhere: logs and exec go to its address.
        "--kubelet-preferred-address-types=InternalIP",
        # How it authenticates to the kubelet (logs, exec): the kubelet trusts this CA.
        f"--kubelet-client-certificate={certs.admin_cert}",
        f"--kubelet-client-key={certs.admin_key}",
        "--v=0",
    ]


def _controller_manager(bin_dir: Path, workdir: Path, ports: Ports, certs: pki.Pki) -> list[str]:
    config = workdir / "kubeconfig"
    return [
        str(bin_dir / "kube-controller-manager"),
        f"--kubeconfig={config}",
        f"--authentication-kubeconfig={config}",
        f"--authorization-kubeconfig={config}",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.controller_manager}",
        f"--service-account-private-key-file={certs.service_account_key}",
        f"--root-ca-file={certs.ca_cert}",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        f"--kube-api-qps={CONTROLLER_API_QPS}",
        f"--kube-api-burst={CONTROLLER_API_BURST}",
        "--v=0",
    ]


def _scheduler(bin_dir: Path, workdir: Path, ports: Ports) -> list[str]:
    config = workdir / "kubeconfig"
    return [
        str(bin_dir / "kube-scheduler"),
        f"--kubeconfig={config}",
        f"--authentication-kubeconfig={config}",
        f"--authorization-kubeconfig={config}",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.scheduler}",
        f"--kube-api-qps={CONTROLLER_API_QPS}",
        f"--kube-api-burst={CONTROLLER_API_BURST}",
        "--v=0",
    ]


def _kwok(bin_dir: Path, workdir: Path, ports: Ports) -> list[str]:
    command = [
        str(bin_dir / "kwok"),
        f"--kubeconfig={workdir / 'kubeconfig'}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={nodes.KWOK_ANNOTATION}=fake",
        "--node-lease-duration-seconds=40",
        f"--server-address=127.0.0.1:{ports.kwok}",
    ]
    for stage in binaries.kwok_stage_files(bin_dir):
        command.append(f"--config={stage}")
    return command
