"""Start-up and shutdown: wire the client, reconciler and kopf together, under leadership.

Called by ``__main__`` with parsed ``Options``. The order is: connect, serve liveness, wait to
become leader, then run kopf and the periodic resync while renewing the Lease. Losing the
Lease ends the process at once (``os._exit``): in-flight handlers run in threads that cannot be
cancelled, and ending the process is the only way to be sure this replica stops acting
before another one starts. Kubernetes restarts it as a standby.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import kopf

from . import handlers, probing
from .errors import OperatorError
from .kube import Kube
from .leadership import Elector, LeaseSettings
from .reconcile import Reconciler

LEADERSHIP_LOST = 3
RETRY_TICK = 1.0  # seconds between looks for failed runs that are due again

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Options:
    """Everything the command line decides."""

    namespaces: tuple[str, ...]  # empty: all namespaces
    kubeconfig: Path | None
    identity: str
    liveness_host: str = "0.0.0.0"
    liveness_port: int | None = None
    leader_election: bool = True
    lease_namespace: str = "sluice-system"
    lease_name: str = "sluice-operator"
    resync_seconds: float = 600.0


async def run(options: Options) -> int:
    """Run the operator until a signal arrives; the process exit code."""
    kube = Kube.connect(options.kubeconfig)
    lease = LeaseSettings(
        namespace=options.lease_namespace, identity=options.identity, name=options.lease_name
    )
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
    """Run kopf and the resync while leading; return when kopf stops, or end the process
    when leadership is lost."""
    reconciler = Reconciler(kube, instance=options.identity)
    settings = kopf.OperatorSettings()
    handlers.configure(settings, namespaced=bool(options.namespaces))
    registry = handlers.build_registry(reconciler, kube.credentials)
    kopf_stop = asyncio.Event()
    kopf_task = asyncio.create_task(
        kopf.operator(
            registry=registry,
            settings=settings,
            standalone=True,
            clusterwide=not options.namespaces,
            namespaces=list(options.namespaces),
            stop_flag=kopf_stop,
        )
    )
    stop_task = asyncio.create_task(stop.wait())
    keep_task = asyncio.create_task(_keep(elector, health))
    resync_task = asyncio.create_task(_resync(reconciler, options))
    retry_task = asyncio.create_task(_retry(reconciler))
    done, _ = await asyncio.wait(
        {kopf_task, stop_task, keep_task}, return_when=asyncio.FIRST_COMPLETED
    )
    if keep_task in done:
        log.critical("leadership lost: exiting so that only one replica acts")
        logging.shutdown()
        os._exit(LEADERSHIP_LOST)
    kopf_stop.set()
    for task in (stop_task, keep_task, resync_task, retry_task):
        task.cancel()
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


async def _retry(reconciler: Reconciler) -> None:
    """Re-run objects whose last run failed temporarily, once their delay has passed: kopf
    retries its own handlers, but not event handlers, nor runs that other requests joined."""
    while True:
        await asyncio.sleep(RETRY_TICK)
        for namespace, name in reconciler.due():
            try:
                await asyncio.to_thread(reconciler.reconcile, namespace, name)
            except OperatorError as exc:
                log.warning("retry of %s/%s failed: %s", namespace, name, exc)


async def _resync(reconciler: Reconciler, options: Options) -> None:
    """Reconcile everything every ``resync_seconds``: the net under missed watch events."""
    namespaces = options.namespaces or None
    while True:
        await asyncio.sleep(options.resync_seconds)
        failed = await asyncio.to_thread(reconciler.resync, namespaces)
        log.info("resync done; %d failed", failed)
