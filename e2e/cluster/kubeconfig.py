"""Kubeconfig files for the local cluster: the admin's, and a ServiceAccount's."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from e2e.cluster.pki import Pki

CLUSTER_NAME = "sluice-local"


def write_admin(path: Path, server: str, certs: Pki) -> Path:
    """Write a kubeconfig that authenticates as cluster admin with the client certificate."""
    user = {
        "client-certificate-data": _b64(certs.admin_cert),
        "client-key-data": _b64(certs.admin_key),
    }
    return _write(path, server, _b64(certs.ca_cert), "sluice-admin", user)


def write_token(path: Path, server: str, ca_data: str, user_name: str, token: str) -> Path:
    """Write a kubeconfig that authenticates with a bearer token (a ServiceAccount's)."""
    return _write(path, server, ca_data, user_name, {"token": token})


def ca_data(path: Path) -> str:
    """The base64 CA bundle of an existing kubeconfig, to build another for the same server."""
    config = yaml.safe_load(path.read_text())
    return str(config["clusters"][0]["cluster"]["certificate-authority-data"])


def _write(path: Path, server: str, ca: str, user_name: str, user: dict[str, str]) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": CLUSTER_NAME, "cluster": {"server": server, "certificate-authority-data": ca}}
        ],
        "users": [{"name": user_name, "user": user}],
        "contexts": [{"name": user_name, "context": {"cluster": CLUSTER_NAME, "user": user_name}}],
        "current-context": user_name,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)
    return path


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()
