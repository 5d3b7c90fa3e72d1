"""Pinned versions come from the committed Go tools modules, stamped into the binaries."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from e2e.cluster import binaries


def tool(folder: str) -> binaries.Tool:
    return next(t for t in binaries.TOOLS if t.folder == folder)


def test_versions_are_read_from_go_mod() -> None:
    kubernetes = tool("kubernetes")
    major, minor, patch = kubernetes.version.lstrip("v").split(".")
    assert (int(major), int(minor)) >= (1, 34)
    etcd = tool("etcd").version.lstrip("v").split(".")
    assert (int(etcd[0]), int(etcd[1])) >= (3, 5)
    go_mod = (binaries.TOOLS_DIR / "kubernetes" / "go.mod").read_text()
    staging = [line for line in go_mod.splitlines() if "=> k8s.io/" in line]
    assert staging, "every staging module is replaced by its published tag"
    assert all(line.endswith(f" v0.{minor}.{patch}") for line in staging)


def test_cache_folder_is_keyed_by_every_version() -> None:
    name = binaries.bin_dir().name
    for t in binaries.TOOLS:
        assert f"{t.folder}-{t.version}" in name


@pytest.mark.cluster
def test_built_binaries_report_the_pinned_versions() -> None:
    directory = binaries.ensure(lambda message: None)
    kubernetes = tool("kubernetes").version
    kubectl = subprocess.run(
        [str(directory / "kubectl"), "version", "--client"], capture_output=True, text=True
    )
    assert f"Client Version: {kubernetes}" in kubectl.stdout
    apiserver = subprocess.run(
        [str(directory / "kube-apiserver"), "--version"], capture_output=True, text=True
    )
    assert apiserver.stdout.strip() == f"Kubernetes {kubernetes}"
    helm = subprocess.run(
        [str(directory / "helm"), "version", "--short"], capture_output=True, text=True
    )
    assert helm.stdout.startswith(tool("helm").version)
    etcd = subprocess.run([str(directory / "etcd"), "--version"], capture_output=True, text=True)
    assert f"etcd Version: {tool('etcd').version.lstrip('v')}" in etcd.stdout
    coredns = subprocess.run(
        [str(directory / "coredns"), "-version"], capture_output=True, text=True
    )
    assert coredns.stdout.startswith(f"CoreDNS-{tool('coredns').version.lstrip('v')}\n")


def test_envtest_assets_are_used_when_present(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assets = tmp_path / "assets"
    assets.mkdir()
    for name in binaries.ENVTEST_BINARIES:
        path = assets / name
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(assets))
    monkeypatch.setenv("SLUICE_CACHE_DIR", str(tmp_path / "cache"))
    directory = binaries.bin_dir()
    directory.mkdir(parents=True)
    binaries._link_envtest_assets(directory, lambda message: None)
    for name in binaries.ENVTEST_BINARIES:
        assert (directory / name).resolve() == (assets / name).resolve()
    assert sorted(binaries.missing(directory)) == sorted(
        [n for n in binaries.ALL_BINARIES if n not in binaries.ENVTEST_BINARIES]
        + ["kwok-stages", binaries.DEVICE_PLUGIN]
    )
    assert os.access(directory / "etcd", os.X_OK)
