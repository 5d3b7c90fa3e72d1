"""sluice.contracts.labels and ports: keys and values Kubernetes accepts, used by the operator."""

from __future__ import annotations

import re

import pytest
from sluice.contracts import labels, ports
from sluice.operator import builders
from sluice.operator.spec import parse

# A qualified name: an optional DNS-subdomain prefix and a name of at most 63 characters.
_PREFIX_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_NAME_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
# A port name (an IANA service name): at most 15 lower-case letters, digits and '-'.
_PORT_NAME_RE = re.compile(r"^(?=.*[a-z])[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$")

KEYS = [
    labels.LABEL_INFERENCESERVICE,
    labels.LABEL_COMPONENT,
    labels.LABEL_NAME,
    labels.LABEL_APP_COMPONENT,
    labels.LABEL_MANAGED_BY,
    labels.ANNOTATION_SPEC_HASH,
    labels.ANNOTATION_FINGERPRINT,
]


@pytest.mark.parametrize("key", KEYS)
def test_keys_are_qualified_names(key: str) -> None:
    prefix, _, name = key.rpartition("/")
    assert len(prefix) <= 253
    assert _PREFIX_RE.match(prefix)
    assert _NAME_RE.match(name)


def test_values_are_label_values() -> None:
    assert _NAME_RE.match(labels.PREDICTOR)
    assert _NAME_RE.match(labels.MANAGED_BY)


def test_port_names_are_service_names() -> None:
    assert _PORT_NAME_RE.match(ports.HTTP)
    assert _PORT_NAME_RE.match(ports.GRPC)


def test_the_operator_labels_its_children_with_the_contract() -> None:
    isvc = parse(
        {
            "metadata": {"name": "resnet", "namespace": "models"},
            "spec": {"model": {"uri": "https://models.example/resnet.onnx"}},
        }
    )
    for child in builders.desired_children(isvc):
        assert child["metadata"]["labels"][labels.LABEL_INFERENCESERVICE] == "resnet"
        assert child["metadata"]["labels"][labels.LABEL_MANAGED_BY] == labels.MANAGED_BY
    assert builders.selector_labels(isvc) == {
        labels.LABEL_INFERENCESERVICE: "resnet",
        labels.LABEL_COMPONENT: labels.PREDICTOR,
    }
