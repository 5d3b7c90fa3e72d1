"""What happens before the operator acts: logging set-up and the preflight checks.

``__main__`` calls ``configure_logging``; ``running.run`` calls ``preflight`` right after
connecting, before leader election and kopf. Each check is one cheap request, so that every
reason the operator cannot work at all (no API server, rejected credentials, the CRD not
installed, a missing Lease namespace, a missing permission) ends the start with one line
that says what is wrong, instead of kopf retrying in the background or a traceback.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import kopf

from . import spec
from .errors import OperatorError, PermanentError, StartupError
from .kube import Kube, kind_of
from .leadership import API_VERSION as LEASE_API_VERSION
from .leadership import LeaseSettings

# kopf's lines for every handled event; at INFO they would log each object change twice
# more, while the reconciler already logs and posts Events for what it changed.
_PER_EVENT = re.compile(
    r"^Handler '[^']*' succeeded\.$|^\w+ is processed: \d+ succeeded; 0 failed\.$"
)


class PerEventToDebug(logging.Filter):
    """Demote kopf's per-event success lines ("Handler 'x' succeeded.", "Creation is
    processed: 1 succeeded; 0 failed.") to DEBUG, so they show only with ``--verbose``."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every other record as it is; keep a demoted one only when DEBUG is on."""
        if record.levelno != logging.INFO or not _PER_EVENT.match(record.getMessage()):
            return True
        record.levelno = logging.DEBUG
        record.levelname = logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def configure_logging(*, verbose: bool, log_format: str) -> None:
    """kopf's log set-up (``json``, ``plain`` or ``full`` lines on stderr), with its
    per-event success lines at DEBUG."""
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat[log_format.upper()])
    objects = logging.getLogger("kopf.objects")
    if not any(isinstance(f, PerEventToDebug) for f in objects.filters):
        objects.addFilter(PerEventToDebug())


def preflight(kube: Kube, *, namespaces: Sequence[str], lease: LeaseSettings | None) -> None:
    """Check that the operator can work at all; ``StartupError`` with one line if not.

    In order: the API server answers (and accepts the credentials), the InferenceService CRD
    is served, InferenceServices may be listed where the operator watches them (``namespaces``,
    or cluster-wide when empty), and the Lease can be read and created in its namespace.
    """
    server = kube.credentials()["server"]
    try:
        kube.get_path("/version")
    except OperatorError as exc:
        raise StartupError(f"no usable Kubernetes API server at {server}: {exc}") from None
    try:
        group = kube.get_path(f"/apis/{spec.API_VERSION}")
    except OperatorError as exc:
        raise StartupError(f"cannot discover {spec.API_VERSION}: {exc}") from None
    served = {resource.get("name") for resource in (group or {}).get("resources", [])}
    if spec.PLURAL not in served:
        raise StartupError(
            f"the InferenceService CRD ({spec.PLURAL}.{spec.GROUP}) is not "
            f"installed on {server}: kubectl apply -f crds/"
        )
    kind = kind_of(spec.API_VERSION, spec.KIND)
    scopes: Sequence[str | None] = namespaces or [None]
    for namespace in scopes:
        try:
            kube.get_path(kind.path(namespace), query={"limit": "1"})
        except OperatorError as exc:
            raise StartupError(f"cannot list InferenceServices: {exc}") from None
    if lease is not None:
        _check_lease(kube, lease)


def _check_lease(kube: Kube, lease: LeaseSettings) -> None:
    """The Lease can be read and, when absent, created (a dry run, which stores nothing)."""
    where = f"{lease.namespace}/{lease.name}"
    try:
        if kube.get(LEASE_API_VERSION, "Lease", lease.namespace, lease.name) is None:
            kube.create(
                {
                    "apiVersion": LEASE_API_VERSION,
                    "kind": "Lease",
                    "metadata": {"name": lease.name, "namespace": lease.namespace},
                },
                dry_run=True,
            )
    except PermanentError as exc:
        if exc.status == 404:
            raise StartupError(
                f"the Lease namespace {lease.namespace} does not exist: create it "
                "(kubectl apply -f manifests/operator/) or choose another with --lease-namespace"
            ) from None
        raise StartupError(f"cannot hold the Lease {where}: {exc}") from None
    except OperatorError as exc:
        raise StartupError(f"cannot hold the Lease {where}: {exc}") from None
