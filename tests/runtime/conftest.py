"""Fixtures for the runtime tests: real ONNX models and a real server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sluice.runtime.app import RuntimeApp
from sluice.runtime.settings import ServedModel, Settings

from e2e.models import build_mlp
from tests.runtime.models import build_fixed, build_multi_io, build_sequence
from tests.runtime.serving import LoopThread, running_app


@dataclass(frozen=True)
class ModelFiles:
    """Paths of the test models."""

    mlp: Path
    multi: Path
    fixed: Path
    sequence: Path


@pytest.fixture(scope="session")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> ModelFiles:
    """Build every test model once per session."""
    root = tmp_path_factory.mktemp("models")
    folder = root / "multi"
    folder.mkdir()
    return ModelFiles(
        mlp=build_mlp(root / "mlp.onnx", sizes=(32, 64, 8)),
        multi=build_multi_io(folder / "model.onnx").parent,  # a folder holding model.onnx
        fixed=build_fixed(root / "fixed.onnx"),
        sequence=build_sequence(root / "sequence.onnx"),
    )


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    """The event loop that in-process servers run on."""
    loop = LoopThread()
    yield loop
    loop.close()


def settings_for(files: ModelFiles, **overrides: object) -> Settings:
    """Settings serving every test model on loopback with kernel-chosen ports."""
    values: dict[str, object] = {
        "models": (
            ServedModel("mlp", files.mlp),
            ServedModel("multi", files.multi),
            ServedModel("fixed", files.fixed),
            ServedModel("sequence", files.sequence),
        ),
        "host": "127.0.0.1",
        "http_port": 0,
        "grpc_port": 0,
        "max_batch_size": 8,
        "max_queue_delay_us": 5000,
        "max_body_bytes": 1 << 20,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def server(loop_thread: LoopThread, model_files: ModelFiles) -> Iterator[RuntimeApp]:
    """One server with every test model, shared by the protocol tests."""
    with running_app(loop_thread, settings_for(model_files)) as app:
        yield app
