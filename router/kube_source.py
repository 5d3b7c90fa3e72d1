"""The router's state as the Kubernetes API holds it: one InferenceService's route table and
the ready endpoints of the Services it names.

``sluice.router.__main__`` runs a ``KubeSource`` in router pods. It keeps two reflectors
(``sluice.router.listwatch``) on threads: one on the ConfigMap the operator writes the route
table into (``routes.CONFIGMAP_KEY``), one on the namespace's EndpointSlices whose
``kubernetes.io/service-name`` is a Service the table names, selected again whenever the
table names others. After every change, gathered for a few milliseconds, it reports the
whole state: the last good table (one that fails ``routes.from_json`` is logged and left
out) and, for each Service, the ready endpoints of all its slices, on the ports named
``ports.HTTP`` and ``ports.GRPC``. It reports nothing until both copies are listed, so a
router never starts on a table without its endpoints.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Final

from sluice.contracts import ports, routes
from sluice.router import kube_api
from sluice.router.endpoints import Endpoint, Endpoints
from sluice.router.listwatch import Backoff, ListWatch, Object, Reflector, Snapshot
from sluice.router.source import OnChange

log = logging.getLogger(__name__)

# The label Kubernetes puts on an EndpointSlice: the Service it belongs to.
SERVICE_NAME_LABEL: Final = "kubernetes.io/service-name"
# Changes that arrive this close together are reported once.
DEBOUNCE_SECONDS: Final = 0.02
# How soon ``run`` notices ``stop`` (changes wake it at once).
STOP_CHECK_SECONDS: Final = 0.2
# How long to wait after API failures in a row: from half a second, doubling, up to 30.
RETRY: Final = Backoff(initial=0.5, maximum=30.0)
# How long ``run`` waits for its threads to end once stopped.
JOIN_SECONDS: Final = 5.0

State = tuple[routes.RouteTable | None, Endpoints]


class RouteWatch:
    """A ``Source`` over any pair of ``ListWatch``: the route table's ConfigMap, alone, and
    the EndpointSlices of its namespace."""

    def __init__(
        self,
        config_map: ListWatch,
        endpoint_slices: ListWatch,
        *,
        name: str,
        backoff: Backoff = RETRY,
        debounce: float = DEBOUNCE_SECONDS,
    ) -> None:
        self._config_map = config_map
        self._endpoint_slices = endpoint_slices
        self._name = name
        self._backoff = backoff
        self._debounce = debounce

    def run(self, on_change: OnChange, stop: threading.Event) -> None:
        """Report the state on every change until ``stop`` is set. A reflector that fails
        for a reason other than the API's is a bug: it is raised here."""
        changed = threading.Event()
        halt = threading.Event()
        tables = Reflector(
            self._config_map,
            kind=f"ConfigMap {self._name}",
            selector="",
            on_change=changed.set,
            halt=halt,
            backoff=self._backoff,
        )
        slices = Reflector(
            self._endpoint_slices,
            kind=f"EndpointSlices of {self._name}",
            selector=None,
            on_change=changed.set,
            halt=halt,
            backoff=self._backoff,
        )
        failures: list[Exception] = []
        threads = [
            threading.Thread(
                target=_run_reflector,
                args=(reflector, failures, changed),
                name=f"reflector-{index}",
                daemon=True,
            )
            for index, reflector in enumerate((tables, slices))
        ]
        for thread in threads:
            thread.start()
        reader = TableReader(self._name)
        reported: State | None = None
        try:
            while not stop.is_set():
                if not changed.wait(STOP_CHECK_SECONDS):
                    continue
                stop.wait(self._debounce)
                changed.clear()
                if failures:
                    raise failures[0]
                state = _state(reader, tables.snapshot(), slices)
                if state is not None and state != reported:
                    on_change(*state)
                    reported = state
        finally:
            halt.set()
            for reflector in (tables, slices):
                reflector.interrupt()
            for thread in threads:
                thread.join(JOIN_SECONDS)


class KubeSource(RouteWatch):
    """The route table in ConfigMap ``configmap`` of ``namespace`` and its Services'
    endpoints, through ``api`` (by default the cluster's own API, else the kubeconfig's)."""

    def __init__(
        self, namespace: str, configmap: str, api: kube_api.ApiClient | None = None
    ) -> None:
        client = api if api is not None else kube_api.load_client()
        super().__init__(
            kube_api.config_map(client, namespace, configmap),
            kube_api.endpoint_slices(client, namespace),
            name=f"{namespace}/{configmap}",
        )


class TableReader:
    """The last good route table of the ConfigMap's versions read so far."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._table: routes.RouteTable | None = None
        self._version: str | None = None

    def read(self, config_map: Object | None) -> routes.RouteTable | None:
        """The table in ``config_map`` (None: there is none), or the last good one when it
        holds no valid table; each version found wanting is logged once."""
        if config_map is None:
            if self._version is not None:
                log.warning("%s: the ConfigMap is gone; keeping the last route table", self._name)
                self._version = None
            return self._table
        version = str(config_map.get("metadata", {}).get("resourceVersion", ""))
        if version == self._version:
            return self._table
        self._version = version
        text = (config_map.get("data") or {}).get(routes.CONFIGMAP_KEY)
        try:
            if text is None:
                raise ValueError(f"no {routes.CONFIGMAP_KEY} key")
            self._table = routes.from_json(text)
        except ValueError as exc:
            log.error(
                "%s: bad route table at resourceVersion %s, keeping the last good one: %s",
                self._name,
                version,
                exc,
            )
        return self._table


def service_selector(table: routes.RouteTable | None) -> str | None:
    """The label selector of the EndpointSlices of the Services ``table`` names (None: no
    table, no slices wanted)."""
    if table is None:
        return None
    services = sorted(set(table.services().values()))
    return f"{SERVICE_NAME_LABEL} in ({','.join(services)})"


def ready_endpoints(
    services: Iterable[str], slices: Iterable[Object]
) -> dict[str, tuple[Endpoint, ...]]:
    """Each of ``services`` with the ready endpoints of its slices, merged and sorted.

    An endpoint is ready unless its ``conditions.ready`` is false (absent means ready, as
    Kubernetes reads it); a slice lacking a port named ``ports.HTTP`` or ``ports.GRPC``, or
    of FQDN addresses, gives none.
    """
    found: dict[str, set[Endpoint]] = {service: set() for service in services}
    for item in slices:
        service = (item.get("metadata", {}).get("labels") or {}).get(SERVICE_NAME_LABEL)
        if service not in found or item.get("addressType") not in ("IPv4", "IPv6"):
            continue
        named = {port.get("name"): port.get("port") for port in item.get("ports") or ()}
        http, grpc = named.get(ports.HTTP), named.get(ports.GRPC)
        if http is None or grpc is None:
            continue
        for endpoint in item.get("endpoints") or ():
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            # Pods have one address per slice; the rest, if any, are the same endpoint.
            addresses = endpoint.get("addresses") or ()
            if addresses:
                found[service].add(Endpoint(addresses[0], http, grpc))
    return {
        service: tuple(sorted(endpoints, key=lambda e: (e.address, e.http_port, e.grpc_port)))
        for service, endpoints in found.items()
    }


def _state(reader: TableReader, config_maps: Snapshot, slices: Reflector) -> State | None:
    """The state to report, or None while a copy it needs is not listed yet. Selects the
    slices of the table's Services as a side effect, so a new table brings its endpoints."""
    if not config_maps.synced:
        return None
    table = reader.read(next(iter(config_maps.objects.values()), None))
    selector = service_selector(table)
    slices.select(selector)
    current = slices.snapshot()
    if current.selector != selector or not current.synced:
        return None
    if table is None:
        return None, {}
    services = table.services().values()
    return table, ready_endpoints(services, current.objects.values())


def _run_reflector(
    reflector: Reflector, failures: list[Exception], changed: threading.Event
) -> None:
    """Run ``reflector``; an error it raises is kept for ``RouteWatch.run`` to raise."""
    try:
        reflector.run()
    except Exception as exc:
        failures.append(exc)
        changed.set()
