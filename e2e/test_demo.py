"""The README's main command works: ``python -m e2e.demo`` ends with real answers from the
sample model served in a pod, and ``down`` stops everything.

It starts its own cluster with the real node, so it runs apart from the session cluster
(marked ``node_lifecycle``; ``make test`` runs those first).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from e2e import inference
from e2e.cluster import model_store
from e2e.cluster.processes import Registry

pytestmark = [pytest.mark.cluster, pytest.mark.node_lifecycle]


def test_demo_serves_real_answers_and_down_stops_everything(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # A short folder name: containerd's socket path must fit in 107 bytes.
    workdir = tmp_path_factory.mktemp("demo")
    started = []
    try:
        result = subprocess.run(
            [sys.executable, "-m", "e2e.demo", "--workdir", str(workdir)],
            capture_output=True,
            text=True,
            timeout=1800,
            stdin=subprocess.DEVNULL,
        )
        started = Registry(workdir).load()
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Ready=True" in result.stderr
        # The answers printed are onnxruntime's for the same model and input.
        model = model_store.folder(workdir) / model_store.sample_path()
        want = inference.expected(model, inference.sample_input(2, model_store.SAMPLE_SIZES[0]))
        for protocol in ("HTTP", "gRPC"):
            block = result.stdout.split(f"\n{protocol}  ", 1)[1]
            assert "first answer in" in block
            for row, scores in enumerate(want):
                printed = np.array2string(scores, precision=3)
                assert f"row {row}: scores {printed}" in block
        listing = result.stdout.split("$ kubectl get infsvc -n default\n", 1)[1]
        columns = listing.split("$ kubectl", 1)[0].strip().splitlines()[1].split()
        assert columns[0] == "mlp", listing
        assert "True" in columns, listing
        assert f"make down WORKDIR={workdir}" in result.stdout
    finally:
        subprocess.run(
            [sys.executable, "-m", "e2e.cluster", "down", "--workdir", str(workdir)],
            check=True,
            timeout=300,
        )
    assert started
    assert not any(p.alive() for p in started)
