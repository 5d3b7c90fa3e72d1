"""The data plane on its own: readiness, not-yet-loaded models, validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from sluice.runtime.batching import BatchPolicy
from sluice.runtime.dataplane import DataPlane, select_outputs, validate
from sluice.runtime.errors import InvalidInputError, ModelNotFoundError, ModelNotReadyError
from sluice.runtime.metrics import RuntimeMetrics
from sluice.runtime.model import Model
from sluice.runtime.settings import ServedModel

from tests.runtime.conftest import ModelFiles
from tests.runtime.serving import LoopThread

POLICY = BatchPolicy(
    max_batch_size=4, max_queue_delay_s=0.001, max_queue_size=8, request_timeout_s=5
)


def dataplane(path: Path) -> DataPlane:
    return DataPlane(
        [ServedModel("m", path)],
        policy=POLICY,
        providers=("CPUExecutionProvider",),
        metrics=RuntimeMetrics(CollectorRegistry()),
    )


def test_models_are_not_ready_before_load(model_files: ModelFiles) -> None:
    plane = dataplane(model_files.multi)
    assert plane.live
    assert not plane.ready
    assert plane.model_ready("m") is False
    with pytest.raises(ModelNotReadyError, match="not loaded yet"):
        plane.model_metadata("m")
    with pytest.raises(ModelNotFoundError, match="'x' is not served"):
        plane.model_ready("x")


def test_ready_after_load_and_not_ready_when_draining(
    loop_thread: LoopThread, model_files: ModelFiles
) -> None:
    plane = dataplane(model_files.multi)

    async def scenario() -> tuple[bool, bool, bool]:
        await plane.load()
        loaded = plane.ready and plane.model_ready("m")
        plane.start_draining()
        result = (loaded, plane.ready, plane.model_ready("m"))
        await plane.close()
        return result

    assert loop_thread.run(scenario()) == (True, False, False)


def test_validate_returns_rows_and_signature(model_files: ModelFiles) -> None:
    model = Model("multi", model_files.multi, ["CPUExecutionProvider"])
    inputs = {"x": np.zeros((2, 4), np.float32), "ids": np.zeros((2, 3), np.int64)}
    _, rows, signature = validate(model, inputs, 4)
    assert rows == 2
    assert signature == (("x", (4,)), ("ids", (3,)))
    with pytest.raises(InvalidInputError, match=r"outside 1\.\.4"):
        validate(model, {"x": np.zeros((5, 4), np.float32), "ids": np.zeros((5, 3), np.int64)}, 4)
    with pytest.raises(InvalidInputError, match=r"outside 1\.\.4"):
        validate(model, {"x": np.zeros((0, 4), np.float32), "ids": np.zeros((0, 3), np.int64)}, 4)


def test_select_outputs(model_files: ModelFiles) -> None:
    model = Model("multi", model_files.multi, ["CPUExecutionProvider"])
    assert select_outputs(model, None) == [0, 1, 2]
    assert select_outputs(model, ["total", "scaled"]) == [2, 0]
    with pytest.raises(InvalidInputError, match="unknown output 'nope'"):
        select_outputs(model, ["nope"])
