"""The InferenceService CRD installed on the session cluster, with no operator running: the
API server alone validates, defaults and explains what these tests send."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e.cluster.client import Cluster
from e2e.cluster.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "inferenceservices.serving.sluice.dev.yaml"
CRD_NAME = "inferenceservices.serving.sluice.dev"


@pytest.fixture(scope="session")
def crd(cluster: Cluster) -> str:
    """The InferenceService CRD, applied from crds/ and established; yields its name."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))

    def established() -> str | None:
        # Polled rather than `kubectl wait`, whose one watch can end early with an error.
        found = cluster.kubectl(
            "get", "crd", CRD_NAME, "-o",
            'jsonpath={.status.conditions[?(@.type=="Established")].status}',
            check=False,
        )  # fmt: skip
        return None if found.stdout.strip() != "True" else found.stdout

    wait_for(established, timeout=60, what=f"CRD {CRD_NAME} to be Established")
    return CRD_NAME
