"""Every sample in manifests/samples/ parses and builds its children (tests/crd/ applies them
to a real API server, tests/integration/ runs them under the operator)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from sluice.operator import builders, spec

SAMPLES = sorted((Path(__file__).resolve().parents[2] / "manifests" / "samples").glob("*.yaml"))


def test_there_are_samples() -> None:
    assert len(SAMPLES) >= 3


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name for s in SAMPLES])
def test_sample_builds_children(sample: Path) -> None:
    body: dict[str, Any] = yaml.safe_load(sample.read_text())
    assert sample.read_text().startswith("#"), "every sample opens with a comment header"
    body["metadata"]["namespace"] = "samples"
    isvc = spec.parse(body)
    children = [(c["kind"], c["metadata"]["name"]) for c in builders.desired_children(isvc)]
    assert len(children) == len(set(children))
    assert ("Deployment", builders.deployment_name(isvc)) in children
    assert ("Service", builders.service_name(isvc)) in children
    for variant in isvc.variants:
        assert ("Deployment", builders.child_name(isvc, variant.name)) in children
