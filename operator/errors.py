"""The operator's own error classes: every failure is decided once, where it is detected.

The Kubernetes client module (``kube.py``) turns kubernetes-client and urllib3 exceptions into
these; ``reconcile.py`` turns a permanent one into status and an event; the work queue
(``workqueue.py``) retries the key of a run that raised a temporary one after ``delay`` at
the least. No other layer sees a client library's exception.
"""

from __future__ import annotations


class OperatorError(Exception):
    """Base class of the errors the controller layers raise to each other."""


class TemporaryError(OperatorError):
    """Worth retrying unchanged after ``delay`` seconds: a conflict, throttling, a 5xx, a
    network failure, or a permission the cluster may still grant."""

    def __init__(self, message: str, *, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(OperatorError):
    """Retrying the same request cannot help: the API server rejected the object itself
    (400, 404 on a create, 422). Reported in status until the spec changes."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class StartupError(OperatorError):
    """The operator cannot start (no credentials, no API server, CRD not installed, Lease
    namespace missing, forbidden): ``__main__`` prints the message as one line and exits."""
