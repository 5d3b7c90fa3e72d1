"""The cluster DNS: Service names resolve to ClusterIPs, every other name is NXDOMAIN at once,
and CoreDNS talks to nothing but the API server and its clients on loopback.

The cluster tests start a kwok-only cluster of their own (the session cluster holds this
machine's one real node) and CoreDNS on 127.0.0.1 and a free port, and stop both at the end.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import struct
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client

from e2e.cluster import dns
from e2e.cluster.client import Cluster
from e2e.cluster.fixtures import fresh_namespace
from e2e.cluster.processes import Managed, Registry
from e2e.cluster.waiting import wait_for
from tests.cluster.commands import cli

LOOPBACK = "127.0.0.1"
TYPE_A = 1
RCODE_NOERROR = 0
RCODE_NXDOMAIN = 3
FLAG_AUTHORITATIVE = 0x0400


@dataclass(frozen=True)
class Answer:
    """What a DNS reply says, as far as these tests look."""

    rcode: int
    authoritative: bool
    addresses: list[str]


@dataclass(frozen=True)
class Server:
    """A running CoreDNS and the API it reads."""

    process: Managed
    port: int
    api: client.ApiClient
    api_endpoint: str  # ADDRESS:PORT


def query(name: str, port: int, *, qtype: int = TYPE_A, timeout: float = 2.0) -> Answer:
    """One DNS query over UDP to ``127.0.0.1:port`` (RFC 1035 section 4), without recursion."""
    ident = random.randrange(1 << 16)
    header = struct.pack("!6H", ident, 0, 1, 0, 0, 0)
    labels = b"".join(bytes([len(label)]) + label.encode() for label in name.split("."))
    question = labels + b"\0" + struct.pack("!2H", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(header + question, (LOOPBACK, port))
        reply = sock.recv(4096)
    reply_id, flags, _, count = struct.unpack("!4H", reply[:8])
    assert reply_id == ident
    offset = 12 + len(question)
    addresses = []
    for _ in range(count):
        offset = _skip_name(reply, offset)
        rtype, _, _, length = struct.unpack("!2HIH", reply[offset : offset + 10])
        offset += 10
        if rtype == TYPE_A:
            addresses.append(socket.inet_ntoa(reply[offset : offset + length]))
        offset += length
    return Answer(flags & 0xF, bool(flags & FLAG_AUTHORITATIVE), addresses)


def _skip_name(message: bytes, offset: int) -> int:
    while message[offset] != 0:
        if message[offset] & 0xC0 == 0xC0:  # a compression pointer ends the name
            return offset + 2
        offset += 1 + message[offset]
    return offset + 1


def sockets(pid: int) -> set[tuple[str, str]]:
    """(local, remote) ``ADDRESS:PORT`` of every TCP and UDP socket process ``pid`` holds,
    read from /proc; a listening or unconnected socket's remote is ``0.0.0.0:0``."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # closed while we look
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    found = set()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                found.add((_endpoint(fields[1]), _endpoint(fields[2])))
    return found


def _endpoint(field: str) -> str:
    """``0100007F:0035`` (an address in little-endian words, as /proc/net prints it, and a
    port) to ``127.0.0.1:53``."""
    address, port = field.split(":")
    packed = bytes.fromhex(address)
    words = b"".join(packed[i : i + 4][::-1] for i in range(0, len(packed), 4))
    family = socket.AF_INET if len(words) == 4 else socket.AF_INET6
    return f"{socket.inet_ntop(family, words)}:{int(port, 16)}"


def free_port() -> int:
    """A loopback port free for both UDP and TCP (CoreDNS serves both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((LOOPBACK, 0))
            port = int(udp.getsockname()[1])
            with socket.socket() as tcp:
                try:
                    tcp.bind((LOOPBACK, port))
                except OSError:
                    continue
                return port


def answers(url: str) -> bool:
    """True when ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """CoreDNS on loopback as one of the processes of a kwok-only cluster of its own, so
    that the cluster's ``down`` stops it with the rest."""
    workdir = tmp_path_factory.mktemp("dns")
    registry = Registry(workdir)
    try:
        cli("up", "--workdir", str(workdir), "--real-nodes", "0", "--gpu-nodes", "1")
        cluster = Cluster.load(workdir)
        probes = dns.Probes.free()
        port = free_port()
        command = dns.command(
            cluster.bin_dir,
            workdir,
            kubeconfig=cluster.kubeconfig,
            address=LOOPBACK,
            port=port,
            probes=probes,
        )
        process = registry.start(dns.NAME, command)

        def ready() -> bool:
            if not process.alive():
                raise RuntimeError(f"CoreDNS exited:\n{registry.log_tail(dns.NAME)}")
            return answers(probes.ready_url)

        wait_for(ready, timeout=60, interval=0.2, what="CoreDNS ready")
        assert answers(probes.health_url)
        with cluster.api_client() as api:
            yield Server(process, port, api, urllib.parse.urlsplit(cluster.server).netloc)
    finally:
        stopped = cli("down", "--workdir", str(workdir))
    assert stopped.stderr.rstrip().endswith(f", {dns.NAME}")
    assert not process.alive()
    assert registry.load() == []


def test_corefile_binds_only_the_address_and_forwards_nothing(tmp_path: Path) -> None:
    probes = dns.Probes(health_port=18080, ready_port=18181)
    kubeconfig = tmp_path / "kubeconfig"
    command = dns.command(
        tmp_path / "bin",
        tmp_path,
        kubeconfig=kubeconfig,
        address="10.88.0.1",
        port=53,
        probes=probes,
    )
    assert command[0] == str(tmp_path / "bin" / "coredns")
    text = Path(command[command.index("-conf") + 1]).read_text()
    assert text == dns.corefile(kubeconfig=kubeconfig, address="10.88.0.1", port=53, probes=probes)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert "cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {" in lines
    assert ".:53 {" in lines
    assert lines.count("bind 10.88.0.1") == 2  # in both server blocks
    assert "kubernetes cluster.local in-addr.arpa ip6.arpa {" in lines
    assert f'kubeconfig "{kubeconfig}"' in lines
    assert "health 127.0.0.1:18080" in lines
    assert "ready 127.0.0.1:18181" in lines
    assert "template ANY ANY {" in lines
    assert "rcode NXDOMAIN" in lines
    # Every directive is one of these: no forward (nor loop, which only guards a forwarder).
    directives = {line.split()[0] for line in lines if line != "}"}
    assert directives == {
        "cluster.local:53", ".:53", "bind", "errors", "health", "ready", "kubernetes",
        "kubeconfig", "cache", "template", "rcode",
    }  # fmt: skip


def test_probes_are_two_ports_on_loopback() -> None:
    probes = dns.Probes.free()
    assert probes.health_port != probes.ready_port
    assert probes.health_url == f"http://127.0.0.1:{probes.health_port}/health"
    assert probes.ready_url == f"http://127.0.0.1:{probes.ready_port}/ready"


@pytest.mark.cluster
def test_kubernetes_service_resolves_to_its_cluster_ip(server: Server) -> None:
    service = client.CoreV1Api(server.api).read_namespaced_service("kubernetes", "default")
    answer = query(f"kubernetes.default.svc.{dns.CLUSTER_DOMAIN}", server.port)
    assert answer == Answer(RCODE_NOERROR, True, [service.spec.cluster_ip])


@pytest.mark.cluster
def test_a_new_service_resolves_to_its_cluster_ip(server: Server) -> None:
    core = client.CoreV1Api(server.api)
    with fresh_namespace(server.api) as namespace:
        core.create_namespaced_service(
            namespace,
            {
                "metadata": {"name": "predictor"},
                "spec": {"selector": {"app": "predictor"}, "ports": [{"port": 80}]},
            },
        )
        cluster_ip = core.read_namespaced_service("predictor", namespace).spec.cluster_ip
        name = f"predictor.{namespace}.svc.{dns.CLUSTER_DOMAIN}"

        def resolved() -> Answer | None:
            answer = query(name, server.port)
            return answer if answer.addresses else None

        # The plugin learns of the Service through its watch: bounded, and quick.
        answer = wait_for(resolved, timeout=30, interval=0.2, what=f"{name} to resolve")
        assert answer == Answer(RCODE_NOERROR, True, [cluster_ip])
        missing = query(f"absent.{namespace}.svc.{dns.CLUSTER_DOMAIN}", server.port)
        assert missing == Answer(RCODE_NXDOMAIN, True, [])


@pytest.mark.cluster
@pytest.mark.parametrize("name", ["example.com", "kubernetes.default", "predictor.example.org"])
def test_names_outside_the_cluster_are_nxdomain_at_once_and_go_nowhere(
    server: Server, name: str
) -> None:
    started = time.monotonic()
    answer = query(name, server.port)
    assert time.monotonic() - started < 1
    assert answer.rcode == RCODE_NXDOMAIN
    assert not answer.addresses
    # A forwarder keeps its upstream's socket open for reuse; CoreDNS holds only its
    # listeners on loopback and its connections to the API server.
    held = sockets(server.process.pid)
    assert {local.rpartition(":")[0] for local, _ in held} == {LOOPBACK}
    assert {remote for _, remote in held} == {"0.0.0.0:0", server.api_endpoint}
