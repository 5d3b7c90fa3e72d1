"""Unit tests for sluice.contracts.flags: the runtime's command line, seen by both sides."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from sluice.contracts import flags, ports

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "inferenceservices.serving.sluice.dev.yaml"


@pytest.fixture(scope="module")
def crd_spec() -> dict[str, Any]:
    """The CRD's schema of ``spec``."""
    crd = yaml.safe_load(CRD_FILE.read_text())
    (version,) = crd["spec"]["versions"]
    found: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return found


def test_every_flag_has_an_option_and_a_variable() -> None:
    assert flags.MAX_QUEUE_DELAY_US.option == "--max-queue-delay-us"
    assert flags.MAX_QUEUE_DELAY_US.env == "SLUICE_MAX_QUEUE_DELAY_US"
    assert flags.env_name(flags.MODEL) == "SLUICE_MODEL"
    names = [flag.name for flag in flags.SERVE_FLAGS]
    assert len(set(names)) == len(names)
    assert not {flags.MODEL, flags.PROVIDERS} & set(names)
    assert all(flag.env.startswith(flags.ENV_PREFIX) for flag in flags.SERVE_FLAGS)


@pytest.mark.parametrize("flag", flags.SERVE_FLAGS, ids=lambda flag: flag.name)
def test_a_rendered_default_parses_back_to_itself(flag: flags.Flag[Any]) -> None:
    """The operator writes ``str(value)``; the runtime reads it back with ``flag.parse``."""
    option, text = flag.arg(flag.default)
    assert option == flag.option
    assert flag.parse(text) == flag.default


def test_the_ports_are_the_runtime_defaults() -> None:
    assert (flags.HTTP_PORT.default, flags.GRPC_PORT.default) == (ports.HTTP_PORT, ports.GRPC_PORT)


def test_serve_command() -> None:
    command = flags.serve_command(
        {"resnet": "/models/resnet", "bert": "/models/bert.onnx"},
        [flags.MAX_BATCH_SIZE.arg(8), flags.REQUEST_TIMEOUT_S.arg(2.5)],
    )
    assert command == [
        "sluice-runtime", "serve",
        "--model", "resnet=/models/resnet", "--model", "bert=/models/bert.onnx",
        "--max-batch-size", "8", "--request-timeout-s", "2.5",
    ]  # fmt: skip


def test_fetch_command() -> None:
    assert flags.fetch_command("s3://b/k.onnx", "/models/m/model.onnx") == [
        "sluice-runtime",
        "fetch",
        "s3://b/k.onnx",
        "/models/m/model.onnx",
    ]


def test_the_crd_defaults_are_the_runtime_defaults(crd_spec: dict[str, Any]) -> None:
    batching = crd_spec["properties"]["runtime"]["properties"]["batching"]["properties"]
    assert batching["maxBatchSize"]["default"] == flags.MAX_BATCH_SIZE.default
    assert batching["maxQueueDelayMicroseconds"]["default"] == flags.MAX_QUEUE_DELAY_US.default


def test_the_crd_reserves_the_runtime_variables(crd_spec: dict[str, Any]) -> None:
    env = crd_spec["properties"]["runtime"]["properties"]["env"]
    (rule,) = env["items"]["properties"]["name"]["x-kubernetes-validations"]
    assert rule["rule"].strip() == f"!self.startsWith('{flags.ENV_PREFIX}')"


def test_the_runtime_docs_list_every_flag_with_its_variable_and_default() -> None:
    rows = {
        match["option"]: (match["env"], match["default"])
        for match in re.finditer(
            r"^\| `(?P<option>--[a-z0-9-]+)` \| `(?P<env>\w+)` \| `(?P<default>[^`]+)` \|",
            (REPO / "docs" / "runtime.md").read_text(),
            re.MULTILINE,
        )
    }
    for flag in flags.SERVE_FLAGS:
        env, default = rows[flag.option]
        assert env == flag.env
        assert flag.parse(default) == flag.default
