"""The InferenceService CRD installed on the session cluster, with no operator running: the
API server alone validates, defaults and explains what these tests send."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e.cluster.client import Cluster

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "inferenceservices.serving.sluice.dev.yaml"
CRD_NAME = "inferenceservices.serving.sluice.dev"


@pytest.fixture(scope="session")
def crd(cluster: Cluster) -> str:
    """The InferenceService CRD, applied from crds/ and established; yields its name."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD_NAME}")
    return CRD_NAME
