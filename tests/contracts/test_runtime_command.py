"""The operator's rendered runtime commands, read by the runtime's own argument parser.

Each command the operator writes into a pod (the serving container's ``sluice-runtime
serve``, and the ``sluice-runtime fetch`` init container of both engines) goes through
``build_parser`` and ``settings_from`` of ``sluice.runtime.__main__``, exactly as the console
script would read it in the pod, and what the runtime understood is compared with the spec.
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from sluice.contracts import flags, ports
from sluice.operator import builders, pods
from sluice.operator.spec import InferenceService, parse
from sluice.runtime.__main__ import build_parser, settings_from
from sluice.runtime.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SAMPLES = sorted((REPO / "manifests" / "samples").glob("*.yaml"))


def make_isvc(spec: dict[str, Any]) -> InferenceService:
    return parse(
        {
            "apiVersion": "serving.sluice.dev/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": "resnet", "namespace": "models", "uid": "u", "generation": 1},
            "spec": spec,
        }
    )


def containers(isvc: InferenceService) -> dict[str, dict[str, Any]]:
    """The rendered main model's pod's containers and init containers, by name."""
    (deployment,) = [
        c
        for c in builders.desired_children(isvc)
        if c["kind"] == "Deployment" and c["metadata"]["name"] == builders.deployment_name(isvc)
    ]
    pod = deployment["spec"]["template"]["spec"]
    return {c["name"]: c for c in [*pod.get("initContainers", []), *pod["containers"]]}


def runtime_reads(command: list[str]) -> argparse.Namespace:
    """What the ``sluice-runtime`` console script parses from a container's command."""
    program, *argv = command
    assert program == flags.PROGRAM
    return build_parser({}).parse_args(argv)


def served(command: list[str]) -> Settings:
    args = runtime_reads(command)
    assert args.command == flags.SERVE
    return settings_from(args)


def test_the_program_is_the_runtime_console_script() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[flags.PROGRAM] == "sluice.runtime.__main__:main"


def test_the_serving_command_carries_the_spec() -> None:
    isvc = make_isvc(
        {
            "model": {"uri": "https://models.example/resnet.onnx"},
            "runtime": {"batching": {"maxBatchSize": 16, "maxQueueDelayMicroseconds": 500}},
        }
    )
    runtime = containers(isvc)[pods.RUNTIME_CONTAINER]
    settings = served(runtime["command"])
    assert [(m.name, m.path) for m in settings.models] == [("resnet", Path("/models/resnet"))]
    assert (settings.max_batch_size, settings.max_queue_delay_us) == (16, 500)
    by_name = {p["name"]: p["containerPort"] for p in runtime["ports"]}
    assert (settings.http_port, settings.grpc_port) == (by_name["http"], by_name["grpc"])
    assert (settings.http_port, settings.grpc_port) == (ports.HTTP_PORT, ports.GRPC_PORT)
    # What the spec does not set is the runtime's own default.
    assert settings.max_queue_size == flags.MAX_QUEUE_SIZE.default
    assert settings.request_timeout_s == flags.REQUEST_TIMEOUT_S.default


def test_spec_defaults_reach_the_runtime_unchanged() -> None:
    settings = served(
        containers(make_isvc({"model": {"uri": "/opt/m.onnx"}}))[pods.RUNTIME_CONTAINER]["command"]
    )
    assert settings.max_batch_size == flags.MAX_BATCH_SIZE.default
    assert settings.max_queue_delay_us == flags.MAX_QUEUE_DELAY_US.default
    assert [(m.name, m.path) for m in settings.models] == [("resnet", Path("/opt/m.onnx"))]


def test_runtime_args_are_read_after_the_rendered_flags() -> None:
    isvc = make_isvc(
        {
            "model": {"uri": "pvc://store/resnet/model.onnx", "name": "rn50"},
            "runtime": {
                "args": [
                    "--max-queue-size",
                    "8",
                    "--request-timeout-s",
                    "2.5",
                    "--max-batch-size",
                    "4",
                ]
            },
        }
    )
    settings = served(containers(isvc)[pods.RUNTIME_CONTAINER]["command"])
    assert (settings.max_queue_size, settings.request_timeout_s) == (8, 2.5)
    # A flag given twice: the last one, the user's, wins.
    assert settings.max_batch_size == 4
    assert [(m.name, m.path) for m in settings.models] == [("rn50", Path("/models/rn50"))]


@pytest.mark.parametrize("uri", ["https://models.example/resnet.onnx", "s3://bucket/resnet.onnx"])
def test_the_fetch_step_writes_the_file_the_runtime_serves(uri: str) -> None:
    found = containers(make_isvc({"model": {"uri": uri}}))
    args = runtime_reads(found[pods.FETCH_CONTAINER]["command"])
    assert (args.command, args.uri, args.sha256) == (flags.FETCH, uri, None)
    (model,) = served(found[pods.RUNTIME_CONTAINER]["command"]).models
    # A served folder holds model.onnx: the runtime loads the file the fetch step wrote.
    assert args.dest == model.path / "model.onnx"


@pytest.mark.parametrize(
    ("uri", "source", "dest"),
    [
        ("s3://bucket/bert.plan", "s3://bucket/bert.plan", "/models/bert/1/model.plan"),
        (
            "pvc://store/bert/model.plan",
            "file:///mnt/model-source/bert/model.plan",
            "/models/bert/1/model.plan",
        ),
    ],
)
def test_the_triton_fetch_step_is_read_by_the_runtime(uri: str, source: str, dest: str) -> None:
    isvc = make_isvc(
        {
            "model": {"uri": uri, "name": "bert", "format": "tensorrt"},
            "runtime": {"engine": "triton"},
        }
    )
    found = containers(isvc)
    args = runtime_reads(found[pods.FETCH_CONTAINER]["command"])
    assert (args.command, args.uri, args.dest) == (flags.FETCH, source, Path(dest))
    serving = found[pods.RUNTIME_CONTAINER]["command"]
    assert serving[0] == "tritonserver"
    assert f"--http-port={ports.HTTP_PORT}" in serving
    assert f"--grpc-port={ports.GRPC_PORT}" in serving


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda path: path.stem)
def test_every_sample_renders_commands_the_runtime_reads(sample: Path) -> None:
    body = yaml.safe_load(sample.read_text())
    isvc = parse({**body, "metadata": {**body["metadata"], "namespace": "default"}})
    found = containers(isvc)
    fetch = found.get(pods.FETCH_CONTAINER)
    if fetch is not None:
        assert runtime_reads(fetch["command"]).command == flags.FETCH
    if isvc.runtime.engine == "sluice":
        settings = served(found[pods.RUNTIME_CONTAINER]["command"])
        assert settings.max_batch_size == isvc.runtime.batching.max_batch_size
        assert settings.max_queue_delay_us == isvc.runtime.batching.max_queue_delay_us
        assert [m.name for m in settings.models] == [isvc.model.name]
