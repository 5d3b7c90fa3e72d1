"""A handle on a running local cluster: kubeconfig, kubectl, helm and API clients."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config

from e2e.cluster import kubeconfig


@dataclass(frozen=True)
class Cluster:
    """Where a local cluster lives and how to talk to it."""

    workdir: Path
    bin_dir: Path
    kubeconfig: Path
    server: str
    # The tooling's model server (``model_store``), which pods reach; only with a real node.
    models_url: str = ""

    @classmethod
    def load(cls, workdir: Path) -> Cluster:
        """The cluster recorded in ``workdir`` by ``up``."""
        state = json.loads((workdir / "cluster.json").read_text())
        return cls(
            workdir=Path(state["workdir"]),
            bin_dir=Path(state["bin_dir"]),
            kubeconfig=Path(state["kubeconfig"]),
            server=state["server"],
            models_url=state.get("models_url", ""),
        )

    def to_json(self) -> dict[str, str]:
        """What ``load`` reads back."""
        return {
            "workdir": str(self.workdir),
            "bin_dir": str(self.bin_dir),
            "kubeconfig": str(self.kubeconfig),
            "server": self.server,
            "models_url": self.models_url,
        }

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl against this cluster (as admin unless told otherwise)."""
        return self._run("kubectl", args, input, check, kubeconfig, timeout)

    def helm(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned helm against this cluster as admin."""
        return self._run("helm", args, None, check, None, timeout)

    def api_client(self, kubeconfig_path: Path | None = None) -> client.ApiClient:
        """A Kubernetes API client for this cluster (admin unless another kubeconfig)."""
        return config.new_client_from_config(str(kubeconfig_path or self.kubeconfig))

    def service_account_kubeconfig(
        self, namespace: str, name: str, path: Path, *, expiration_seconds: int = 3600
    ) -> Path:
        """Write a kubeconfig that authenticates as ServiceAccount ``namespace/name``.

        The ServiceAccount is created if absent; the token comes from the TokenRequest API,
        exactly as a pod would get it, so RBAC rules apply to it as they would in a cluster.
        """
        with self.api_client() as api:
            core = client.CoreV1Api(api)
            try:
                core.create_namespaced_service_account(
                    namespace, {"metadata": {"name": name, "namespace": namespace}}
                )
            except client.ApiException as error:
                if error.status != 409:
                    raise
            request: dict[str, Any] = {"spec": {"expirationSeconds": expiration_seconds}}
            token = core.create_namespaced_service_account_token(name, namespace, request)
        return kubeconfig.write_token(
            path,
            self.server,
            kubeconfig.ca_data(self.kubeconfig),
            f"system:serviceaccount:{namespace}:{name}",
            token.status.token,
        )

    def _run(
        self,
        binary: str,
        args: tuple[str, ...],
        input: str | None,
        check: bool,
        kubeconfig_path: Path | None,
        timeout: float,
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(kubeconfig_path or self.kubeconfig)}
        return subprocess.run(
            [str(self.bin_dir / binary), *args],
            input=input,
            env=env,
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )
