"""Start-up and shutdown: wire the client, cache, queue, workers and kopf together, under
leadership.

Called by ``__main__`` with parsed ``Options``. The order is: connect, check that the operator
can work at all (``startup.preflight``), serve liveness, wait to become leader, then run kopf
(which fills the cache and the queue), the reconcile workers and the provider workers (which
ask runtime pods for their execution provider, ``providers.py``) once the cache holds the
initial listings, and the periodic resync, while renewing the Lease. Losing the Lease ends
the process at once (``os._exit``): runs in progress are threads that cannot be cancelled,
and ending the process is the only way to be sure this replica stops acting before another
one starts. Kubernetes restarts it as a standby.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass

import kopf
from sluice.contracts.labels import LABEL_INFERENCESERVICE

from . import handlers, probing, spec, startup
from .cache import Cache
from .errors import StartupError
from .kube import ConfigSource, Kube
from .leadership import Elector, LeaseSettings
from .pods import DEFAULT_IMAGES, Images
from .providers import Providers
from .reconcile import Key, Reconciler
from .router_metrics import RouterMetrics
from .runtime_client import RuntimeClient
from .workqueue import Workers, WorkQueue

LEADERSHIP_LOST = 3
# Reconcile threads: runs mostly wait on the API server, so more threads than cores.
WORKERS = 64
# Threads asking runtime pods for their execution provider: each pod is asked once, quickly.
PROVIDER_WORKERS = 4
# The first retry of a pod that could not be asked, doubling up to providers.ATTEMPTS tries.
PROVIDER_RETRY_DELAY = 2.0
# Seconds a stopping operator gives runs in progress to finish.
STOP_GRACE = 10.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Options:
    """Everything the command line decides."""

    namespaces: tuple[str, ...]  # empty: all namespaces
    config_source: ConfigSource  # where the credentials come from
    identity: str
    liveness_host: str = "0.0.0.0"
    liveness_port: int | None = None
    leader_election: bool = True
    lease_namespace: str = "sluice-system"
    lease_name: str = "sluice-operator"
    lease_duration: float = LeaseSettings.lease_duration
    renew_deadline: float = LeaseSettings.renew_deadline
    retry_period: float = LeaseSettings.retry_period
    resync_seconds: float = 600.0
    images: Images = DEFAULT_IMAGES  # for pods whose spec names no image


async def run(options: Options) -> int:
    """Run the operator until a signal arrives; the process exit code."""
    kube = Kube.connect(options.config_source)
    lease = LeaseSettings(
        namespace=options.lease_namespace,
        identity=options.identity,
        name=options.lease_name,
        lease_duration=options.lease_duration,
        renew_deadline=options.renew_deadline,
        retry_period=options.retry_period,
    )
    try:
        await asyncio.to_thread(
            startup.preflight,
            kube,
            namespaces=options.namespaces,
            lease=lease if options.leader_election else None,
        )
    except StartupError:
        kube.close()
        raise
    elector = Elector(kube, lease) if options.leader_election else None
    health = probing.Health(stale_after=lease.lease_duration * 2)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runner = None
    if options.liveness_port is not None:
        runner = await probing.serve(health, options.liveness_host, options.liveness_port)
    try:
        if elector is not None and not await _acquire(elector, health, stop):
            return 0
        return await _lead(options, kube, elector, health, stop)
    finally:
        if elector is not None:
            await asyncio.to_thread(elector.release)
        if runner is not None:
            await runner.cleanup()
        kube.close()


async def _acquire(elector: Elector, health: probing.Health, stop: asyncio.Event) -> bool:
    """Wait as a standby until the Lease is ours; False when stopped while waiting."""
    log.info("waiting for leadership as %s", elector.settings.identity)
    while not stop.is_set():
        if await asyncio.to_thread(elector.try_acquire_or_renew):
            log.info("became leader as %s", elector.settings.identity)
            health.beat()
            return True
        health.beat()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=elector.settings.retry_period)
    return False


async def _lead(
    options: Options,
    kube: Kube,
    elector: Elector | None,
    health: probing.Health,
    stop: asyncio.Event,
) -> int:
    """Run kopf, the workers and the resync while leading; return when kopf stops, or end
    the process when leadership is lost."""
    cache = Cache(LABEL_INFERENCESERVICE)
    queue: WorkQueue[Key] = WorkQueue()
    runtimes = RuntimeClient(pools=PROVIDER_WORKERS)
    provider_queue: WorkQueue[str] = WorkQueue(base_delay=PROVIDER_RETRY_DELAY)
    providers = Providers(provider_queue, runtimes.provider, queue.add)
    provider_workers = Workers(
        provider_queue, providers.ask, count=PROVIDER_WORKERS, name="provider"
    )
    reconciler = Reconciler(
        kube,
        cache,
        images=options.images,
        instance=options.identity,
        providers=providers,
        metrics=RouterMetrics(),
    )
    workers = Workers(queue, lambda key: reconciler.reconcile(key).requeue_after, count=WORKERS)
    synced = asyncio.Event()
    settings = kopf.OperatorSettings()
    handlers.configure(settings, namespaced=bool(options.namespaces))
    registry = handlers.build_registry(cache, queue, synced, kube.credentials)
    kopf_stop = asyncio.Event()
    kopf_task = asyncio.create_task(
        kopf.operator(
            registry=registry,
            settings=settings,
            standalone=True,
            # Our own identity: kopf's default reads the user's name, which a container
            # running as a numeric user with no passwd entry does not have.
            identity=options.identity,  # type: ignore[arg-type]  # kopf's NewType of str
            clusterwide=not options.namespaces,
            namespaces=list(options.namespaces),
            stop_flag=kopf_stop,
        )
    )
    stop_task = asyncio.create_task(stop.wait())
    keep_task = asyncio.create_task(_keep(elector, health))
    start_task = asyncio.create_task(_start_when_synced(synced, workers, provider_workers))
    resync_task = asyncio.create_task(_resync(cache, queue, options.resync_seconds))
    done, _ = await asyncio.wait(
        {kopf_task, stop_task, keep_task}, return_when=asyncio.FIRST_COMPLETED
    )
    if keep_task in done:
        log.critical("leadership lost: exiting so that only one replica acts")
        logging.shutdown()
        os._exit(LEADERSHIP_LOST)
    kopf_stop.set()
    for task in (stop_task, keep_task, start_task, resync_task):
        task.cancel()
    await asyncio.gather(
        asyncio.to_thread(workers.stop, STOP_GRACE),
        asyncio.to_thread(provider_workers.stop, STOP_GRACE),
    )
    runtimes.close()
    try:
        await kopf_task
    except Exception:
        log.exception("kopf stopped with an error")
        return 1
    return 0


async def _keep(elector: Elector | None, health: probing.Health) -> None:
    """Renew the Lease every retry period; return only when it could not be renewed for
    ``renew_deadline``. Without an elector, just keep the liveness heartbeat."""
    if elector is None:
        while True:
            health.beat()
            await asyncio.sleep(2.0)
    s = elector.settings
    renewed = time.monotonic()
    while time.monotonic() - renewed < s.renew_deadline:
        remaining = s.renew_deadline - (time.monotonic() - renewed)
        try:
            ok = await asyncio.wait_for(
                asyncio.to_thread(elector.try_acquire_or_renew), timeout=remaining
            )
        except TimeoutError:
            ok = False
        if ok:
            renewed = time.monotonic()
            health.beat()
        await asyncio.sleep(s.retry_period)


async def _start_when_synced(
    synced: asyncio.Event, workers: Workers[Key], provider_workers: Workers[str]
) -> None:
    """Start the workers once kopf has listed every watched kind into the cache."""
    await synced.wait()
    log.info("cache synced; starting %d reconcile workers", WORKERS)
    workers.start()
    provider_workers.start()


async def _resync(cache: Cache, queue: WorkQueue[Key], seconds: float) -> None:
    """Queue every cached InferenceService every ``seconds``: the net under a missed change.
    A run that finds nothing to change sends no request, so a resync costs no API calls."""
    while True:
        await asyncio.sleep(seconds)
        keys = cache.keys(spec.API_VERSION, spec.KIND)
        for key in keys:
            queue.add(key)
        log.info("resync: queued %d InferenceServices", len(keys))
