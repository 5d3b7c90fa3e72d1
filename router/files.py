"""The files Envoy reads its dynamic configuration from, written safely and sparingly.

``sluice.router.__main__`` hands every new ``envoy_config.Resources`` to ``ConfigFiles.apply``.
Envoy watches the directory for files moved into it, so each file is written to a temporary
name in the same directory and renamed over the old one: Envoy never reads half a file. A file
whose content is unchanged is left alone, so a weight change rewrites only the route
configurations, which Envoy swaps without draining a connection.

The order keeps every request routable while variants come and go: a new variant's endpoints
and cluster exist (and Envoy has them, ``clusters_ready``) before any route names it, and a
variant's cluster is removed only after no route names it any more.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from sluice.router import envoy_config
from sluice.router.envoy_config import JSON, Resources

BOOTSTRAP_FILE = "envoy.json"


class ConfigFiles:
    """The configuration directory of one Envoy."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def write_bootstrap(self, config: JSON) -> Path:
        """Write Envoy's static configuration; the path to start Envoy with."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / BOOTSTRAP_FILE
        self._write(path.name, config)
        return path

    def apply(
        self, resources: Resources, clusters_ready: Callable[[Collection[str]], None]
    ) -> list[str]:
        """Bring the files to ``resources``; the names of the files rewritten, in order.

        ``clusters_ready`` is called with the cluster names before routes may name new
        clusters, and returns once Envoy has them (it does nothing before Envoy runs)."""
        written: list[str] = []
        for name, assignment in resources.assignments.items():
            written += self._update(envoy_config.eds_file(name), [assignment])
        previous = self._clusters_on_disk()
        if set(resources.clusters) - set(previous):
            # Old routes still name the previous clusters: keep them until the routes change.
            written += self._update(
                envoy_config.cds_file(), _sorted({**previous, **resources.clusters})
            )
            clusters_ready(list(resources.clusters))
        for protocol, routes in resources.routes.items():
            written += self._update(envoy_config.route_file(protocol), [routes])
        written += self._update(envoy_config.cds_file(), _sorted(resources.clusters))
        keep = {envoy_config.eds_file(name) for name in resources.clusters}
        for stale in sorted(self.directory.glob(envoy_config.eds_file("*"))):
            if stale.name not in keep:
                stale.unlink()
        return written

    def _clusters_on_disk(self) -> dict[str, JSON]:
        path = self.directory / envoy_config.cds_file()
        if not path.exists():
            return {}
        found: list[JSON] = json.loads(path.read_text())["resources"]
        return {cluster["name"]: cluster for cluster in found}

    def _update(self, name: str, resources: list[JSON]) -> list[str]:
        """Write ``name`` as a discovery response holding ``resources`` if that changes it."""
        return [name] if self._write(name, envoy_config.discovery_response(resources)) else []

    def _write(self, name: str, document: Any) -> bool:
        text = json.dumps(document, indent=1, sort_keys=True) + "\n"
        path = self.directory / name
        if path.exists() and path.read_text() == text:
            return False
        # A dot-name Envoy's watch ignores until the rename moves it into place.
        fd, temporary = tempfile.mkstemp(prefix=f".{name}.", dir=self.directory)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(text)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return True


def _sorted(clusters: Mapping[str, JSON]) -> list[JSON]:
    """Clusters in name order: the same set is the same file, which Envoy is not asked to
    re-read (it would keep its clusters but not take the new version)."""
    return [clusters[name] for name in sorted(clusters)]
