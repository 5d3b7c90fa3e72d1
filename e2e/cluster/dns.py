"""The local cluster's DNS: CoreDNS answering Service names from the API, forwarding nothing.

Pods resolve ``NAME.NAMESPACE.svc.cluster.local`` (and the short forms, through the search path
the kubelet writes from its ``clusterDomain``) to ClusterIPs: CoreDNS's ``kubernetes`` plugin
watches Services and EndpointSlices with the cluster's admin kubeconfig. Run it with
``processes.Registry`` on an address the pods reach, port 53, and give that address to the
kubelet as ``clusterDNS``; ``Probes.ready_url`` answers 200 once the plugin has synced with
the API, which is what a start-up wait should poll.

Nothing leaves the machine, so there is no ``forward``: every name outside the cluster's zones
is answered NXDOMAIN at once. NXDOMAIN rather than REFUSED, because a resolver walking the
search path (glibc, musl) moves on to the next candidate after NXDOMAIN but gives up after
REFUSED, and a search suffix taken from the host's resolv.conf comes before the name itself.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

NAME = "coredns"  # the binary, and the process's name in the Registry
CLUSTER_DOMAIN = "cluster.local"
# The zones answered from the API: Service names, and the reverse zones for their addresses.
ZONES = (CLUSTER_DOMAIN, "in-addr.arpa", "ip6.arpa")
PORT = 53
PROBE_HOST = "127.0.0.1"
# Answers are cached for at most this long (the kubernetes plugin's own TTL, 5 s, is shorter).
CACHE_SECONDS = 30


@dataclass(frozen=True)
class Probes:
    """The loopback ports of CoreDNS's health (process up) and readiness (API synced)
    endpoints."""

    health_port: int
    ready_port: int

    @classmethod
    def free(cls) -> Probes:
        """Pick two free loopback ports, held open together so that they differ."""
        with socket.socket() as health, socket.socket() as ready:
            health.bind((PROBE_HOST, 0))
            ready.bind((PROBE_HOST, 0))
            return cls(health.getsockname()[1], ready.getsockname()[1])

    @property
    def health_url(self) -> str:
        """Answers 200 while the process serves."""
        return f"http://{PROBE_HOST}:{self.health_port}/health"

    @property
    def ready_url(self) -> str:
        """Answers 200 once the ``kubernetes`` plugin has synced its Services, 503 before."""
        return f"http://{PROBE_HOST}:{self.ready_port}/ready"


def corefile(*, kubeconfig: Path, address: str, port: int, probes: Probes) -> str:
    """The Corefile: the cluster's zones from the API, NXDOMAIN for every other name, both
    served only on ``address``:``port``."""
    cluster_zones = " ".join(f"{zone}:{port}" for zone in ZONES)
    return f"""\
{cluster_zones} {{
    bind {address}
    errors
    health {PROBE_HOST}:{probes.health_port}
    ready {PROBE_HOST}:{probes.ready_port}
    kubernetes {" ".join(ZONES)} {{
        kubeconfig "{kubeconfig}"
    }}
    cache {CACHE_SECONDS}
}}

.:{port} {{
    bind {address}
    errors
    template ANY ANY {{
        rcode NXDOMAIN
    }}
}}
"""


def command(
    bin_dir: Path, workdir: Path, *, kubeconfig: Path, address: str, port: int, probes: Probes
) -> list[str]:
    """Write the Corefile under ``workdir`` and return the command that serves it."""
    path = workdir / "dns" / "Corefile"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(corefile(kubeconfig=kubeconfig, address=address, port=port, probes=probes))
    return [str(bin_dir / NAME), "-conf", str(path)]
