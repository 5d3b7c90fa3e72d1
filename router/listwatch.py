"""List and watch one kind of Kubernetes object, and keep a local copy of it current.

``Reflector`` is the informer loop the router's ``KubeSource`` runs on a thread per kind: it
lists the selected objects, then watches from the list's resourceVersion and applies each
event to its copy; when the watch ends it watches again from the last version seen, when the
API says that version has expired (410 Gone) it lists again, and when the API fails it waits
(doubling up to a bound) and tries again, until it is halted. The API is reached only through
a ``ListWatch`` (``sluice.router.kube_api`` over the Kubernetes client; a fake in tests), which
turns the client's errors into ``ExpiredError`` and ``ApiError``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)

# An object as the API serves it, as parsed JSON.
Object = Mapping[str, Any]


class ExpiredError(Exception):
    """The resourceVersion a watch started from is too old (410 Gone): list again."""


class ApiError(Exception):
    """The API could not be reached or refused the request: try again later."""


@dataclass(frozen=True)
class Listing:
    """The objects a list returned, and the resourceVersion to watch from."""

    items: tuple[Object, ...]
    resource_version: str


@dataclass(frozen=True)
class Event:
    """One watch event: ``ADDED``, ``MODIFIED``, ``DELETED`` or ``BOOKMARK``."""

    type: str
    object: Object


class Stream(Protocol):
    """An open watch: its events until the server ends it or ``close`` is called."""

    def __iter__(self) -> Iterator[Event]: ...

    def close(self) -> None:
        """End the watch from another thread; the iteration stops soon after."""


class ListWatch(Protocol):
    """List and watch one kind of object in one place, narrowed by a label selector
    (``""`` selects every object the place holds)."""

    def list(self, label_selector: str) -> Listing: ...

    def watch(self, label_selector: str, resource_version: str) -> Stream: ...


@dataclass(frozen=True)
class Backoff:
    """Seconds to wait after the n-th failure in a row: ``initial`` doubling up to
    ``maximum``."""

    initial: float
    maximum: float

    def delay(self, failures: int) -> float:
        """The wait after ``failures`` (1 or more) failures in a row."""
        return float(min(self.maximum, self.initial * 2 ** min(failures - 1, 32)))


@dataclass(frozen=True)
class Snapshot:
    """What a reflector holds: its objects by name, for ``selector``, and whether they are
    the full result of a list for it (``synced``) rather than what remains of an older one."""

    selector: str | None
    synced: bool
    objects: Mapping[str, Object] = field(default_factory=dict)


class Reflector:
    """A local copy of the objects ``listwatch`` selects, kept current by ``run``.

    ``select`` changes the label selector (``None``: select nothing); ``on_change`` is called,
    from the reflector's thread, after every change of the copy. It must return at once.
    """

    def __init__(
        self,
        listwatch: ListWatch,
        *,
        kind: str,
        selector: str | None,
        on_change: Callable[[], None],
        halt: threading.Event,
        backoff: Backoff,
    ) -> None:
        self._listwatch = listwatch
        self._kind = kind
        self._on_change = on_change
        self._halt = halt
        self._backoff = backoff
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._selector = selector
        self._generation = 0  # counts selector changes: a list or watch of an older one is void
        self._stream: Stream | None = None
        self._snapshot = Snapshot(selector=None, synced=False)
        self._failures = 0  # API failures in a row, since the last list that worked

    def snapshot(self) -> Snapshot:
        """The current copy."""
        with self._lock:
            return self._snapshot

    def select(self, selector: str | None) -> None:
        """Select other objects: the copy is listed again for ``selector``."""
        with self._lock:
            if selector == self._selector:
                return
            self._selector = selector
            self._generation += 1
        self.interrupt()

    def interrupt(self) -> None:
        """Break off the current watch or wait, so ``run`` sees a new selector or the halt."""
        self._wake.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.close()

    def run(self) -> None:
        """List and watch until halted, surviving expired watches and API errors."""
        while True:
            # Cleared before the halt is checked: an interrupt that comes after still wakes.
            self._wake.clear()
            if self._halt.is_set():
                return
            with self._lock:
                selector, generation = self._selector, self._generation
            if selector is None:
                self._store(Snapshot(selector=None, synced=True))
                self._wake.wait()
                continue
            try:
                self._list_and_watch(selector, generation)
            except ExpiredError:
                log.info("%s: the watch expired (410 Gone); listing again", self._kind)
            except ApiError as exc:
                self._failures += 1
                delay = self._backoff.delay(self._failures)
                log.warning("%s: %s; retrying in %.1fs", self._kind, exc, delay)
                self._wake.wait(delay)

    def _list_and_watch(self, selector: str, generation: int) -> None:
        """List, then watch until the selector changes, the reflector halts, or the API
        fails; a watch the server ends is opened again from the last version seen."""
        listing = self._listwatch.list(selector)
        if not self._current(generation):
            return
        objects = {_name(item): item for item in listing.items}
        self._store(Snapshot(selector=selector, synced=True, objects=dict(objects)))
        self._failures = 0
        version = listing.resource_version
        while self._current(generation):
            stream = self._listwatch.watch(selector, version)
            with self._lock:
                self._stream = stream
            try:
                # A select or halt that came before the stream was recorded must end it too.
                if not self._current(generation):
                    return
                for event in stream:
                    version = self._apply(event, objects, selector) or version
            finally:
                with self._lock:
                    self._stream = None
                stream.close()

    def _current(self, generation: int) -> bool:
        with self._lock:
            return generation == self._generation and not self._halt.is_set()

    def _apply(self, event: Event, objects: dict[str, Object], selector: str) -> str | None:
        """Apply one event to the copy; return the resourceVersion it carries."""
        metadata = event.object.get("metadata") or {}
        if event.type in ("ADDED", "MODIFIED"):
            objects[_name(event.object)] = event.object
        elif event.type == "DELETED":
            objects.pop(_name(event.object), None)
        elif event.type != "BOOKMARK":
            log.warning("%s: ignoring a watch event of type %r", self._kind, event.type)
            return None
        if event.type != "BOOKMARK":
            self._store(Snapshot(selector=selector, synced=True, objects=dict(objects)))
        version = metadata.get("resourceVersion")
        return str(version) if version else None

    def _store(self, snapshot: Snapshot) -> None:
        with self._lock:
            changed = snapshot != self._snapshot
            self._snapshot = snapshot
        if changed:
            self._on_change()


def _name(item: Object) -> str:
    return str((item.get("metadata") or {}).get("name", ""))
