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
    names = [child["metadata"]["name"] for child in builders.desired_children(isvc)]
    assert names == [builders.deployment_name(isvc), builders.service_name(isvc)]
