"""The README's main command works: ``python -m e2e.demo`` brings every sample to Ready."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from e2e.cluster.processes import Registry

pytestmark = pytest.mark.cluster


@pytest.mark.timeout(600)
def test_demo_runs_the_samples_and_down_stops_everything(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    samples = sorted((Path(__file__).parents[1] / "manifests" / "samples").glob("*.yaml"))
    try:
        result = subprocess.run(
            [sys.executable, "-m", "e2e.demo", "--workdir", str(workdir), "--timeout", "120"],
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"{len(samples)} InferenceServices Ready" in result.stderr
        listing = result.stdout.split("$ kubectl get infsvc -A", 1)[1].split("$ kubectl", 1)[0]
        rows = [line.split() for line in listing.strip().splitlines()[1:]]
        assert len(rows) == len(samples)
        assert all(row[2] == "True" for row in rows), listing
        assert "gpu-node-" in result.stdout
        assert result.stdout.rstrip().splitlines()[-1] == (
            f"export KUBECONFIG={workdir.resolve() / 'kubeconfig'}"
        )
        started = Registry(workdir).load()
        assert "sluice-operator" in {p.name for p in started}
    finally:
        subprocess.run(
            [sys.executable, "-m", "e2e.cluster", "down", "--workdir", str(workdir)],
            check=True,
            timeout=120,
        )
    assert not any(p.alive() for p in started)
