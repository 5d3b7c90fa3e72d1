"""What a pod needs to run NVIDIA Triton Inference Server for an InferenceService.

Pure functions used by ``pods.py`` when ``spec.runtime.engine`` is ``triton``. Triton serves
a model repository: ``REPO/NAME/1/model.<ext>`` plus ``REPO/NAME/config.pbtxt``. The model
file is downloaded by the same ``sluice-runtime fetch`` step as for Sluice's own runtime; the
configuration is rendered here, from the spec, and written by a second init container that runs
the Triton image's shell, so the repository needs nothing from the runtime beyond ``fetch``.
"""

from __future__ import annotations

from sluice.operator.spec import InferenceService, ModelFormat

IMAGE = "nvcr.io/nvidia/tritonserver:24.08-py3"
METRICS_PORT = 8002
CONFIG_CONTAINER = "triton-config"

# Triton's platform name and its expected model file name, per model format.
_PLATFORMS: dict[ModelFormat, tuple[str, str]] = {
    "onnx": ("onnxruntime_onnx", "model.onnx"),
    "tensorrt": ("tensorrt_plan", "model.plan"),
}


def model_file(isvc: InferenceService, repository: str) -> str:
    """Where the model file goes in the repository: ``REPO/NAME/1/model.<ext>``."""
    return f"{repository}/{isvc.model.name}/1/{_PLATFORMS[isvc.model.format][1]}"


def config_file(isvc: InferenceService, repository: str) -> str:
    """Where the model configuration goes: ``REPO/NAME/config.pbtxt``."""
    return f"{repository}/{isvc.model.name}/config.pbtxt"


def model_config(isvc: InferenceService) -> str:
    """The model's ``config.pbtxt``: platform and dynamic batching from ``spec.runtime.batching``.

    Inputs and outputs are left out: Triton completes them from the model file. The model's
    first dimension must be its batch dimension, as with any batching Triton model.
    """
    batching = isvc.runtime.batching
    return (
        f'name: "{isvc.model.name}"\n'
        f'platform: "{_PLATFORMS[isvc.model.format][0]}"\n'
        f"max_batch_size: {batching.max_batch_size}\n"
        "dynamic_batching {\n"
        f"  max_queue_delay_microseconds: {batching.max_queue_delay_us}\n"
        "}\n"
    )


def config_command(isvc: InferenceService, repository: str) -> list[str]:
    """The command that writes ``model_config`` into the repository.

    The text travels as a positional argument, never through the shell's parser.
    """
    return [
        "sh",
        "-c",
        'printf "%s" "$1" > "$2"',
        "write-config",
        model_config(isvc),
        config_file(isvc, repository),
    ]


def serve_command(repository: str, http_port: int, grpc_port: int) -> list[str]:
    """``tritonserver`` serving ``repository`` on the given ports and ``METRICS_PORT``."""
    return [
        "tritonserver",
        f"--model-repository={repository}",
        f"--http-port={http_port}",
        f"--grpc-port={grpc_port}",
        f"--metrics-port={METRICS_PORT}",
    ]
