"""The data plane: the one place that answers Open Inference Protocol requests.

The REST and gRPC adapters decode their wire format into an ``InferRequest``, call
``DataPlane.infer`` and encode what it returns; a request they cannot decode is counted
through ``DataPlane.reject``. Validation against the model, batching, readiness and the
request metrics all live here, once for both protocols.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client.metrics import Counter, Histogram
from sluice.runtime.batching import Batcher, BatchPolicy
from sluice.runtime.datatypes import datatype_of
from sluice.runtime.errors import (
    OK,
    InvalidInputError,
    ModelNotFoundError,
    ModelNotReadyError,
    status_for,
)
from sluice.runtime.metrics import RuntimeMetrics
from sluice.runtime.model import VERSION, Model, TensorSpec
from sluice.runtime.providers import choose_providers
from sluice.runtime.settings import ServedModel

SERVER_NAME = "sluice"
SERVER_VERSION = "0.1.0"
MODEL_VERSION = VERSION  # the one version each model is served under
EXTENSIONS = ("binary_tensor_data",)


@dataclass(slots=True)
class InferRequest:
    """A decoded inference request, independent of the wire protocol.

    ``id`` is the protocol's own request field, echoed in the response; the request id of
    the logs travels in ``x-request-id`` and never reaches the data plane.
    """

    inputs: dict[str, np.ndarray]
    id: str | None = None
    outputs: Sequence[str] | None = None  # requested output names; None means all


@dataclass(slots=True)
class InferResponse:
    """The outputs of one request, in the order they are to be returned."""

    model: Model
    id: str | None  # the request's ``id``
    outputs: list[tuple[TensorSpec, np.ndarray]]


class DataPlane:
    """Models, their batchers and readiness; shared by the REST and gRPC adapters."""

    def __init__(
        self,
        served: Sequence[ServedModel],
        *,
        policy: BatchPolicy,
        providers: Sequence[str],
        metrics: RuntimeMetrics,
    ) -> None:
        self._served = tuple(served)
        self._policy = policy
        self._providers = tuple(providers)
        self._metrics = metrics
        self._models: dict[str, Model] = {}
        self._batchers: dict[str, Batcher] = {}
        self._names = frozenset(model.name for model in served)
        self._durations: dict[tuple[str, str], Histogram] = {}
        self._counters: dict[tuple[str, str, int], Counter] = {}
        self._loaded = False
        self._draining = False

    # -- lifecycle -------------------------------------------------------------------------

    async def load(self) -> None:
        """Load every model and run one warm-up inference each, then turn ready."""
        providers = choose_providers(self._providers)
        for served in self._served:
            model = await asyncio.to_thread(Model, served.name, served.path, providers)
            await asyncio.to_thread(model.warm_up)
            self._models[served.name] = model
            self._batchers[served.name] = Batcher(
                model, self._policy, self._metrics.for_model(served.name)
            )
            self._metrics.model_info.labels(served.name, model.provider).set(1)
        self._loaded = True

    def start_draining(self) -> None:
        """Turn readiness false at once; requests already accepted still complete."""
        self._draining = True

    @property
    def in_flight(self) -> int:
        """Requests queued or executing, over all models."""
        return sum(batcher.in_flight for batcher in self._batchers.values())

    async def wait_idle(self, timeout_s: float, settle_s: float = 0.1) -> None:
        """Wait until no request has been queued or executing for ``settle_s`` (at most
        ``timeout_s`` in all)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        idle_since: float | None = None
        while loop.time() < deadline:
            now = loop.time()
            if self.in_flight:
                idle_since = None
            elif idle_since is None:
                idle_since = now
            elif now - idle_since >= settle_s:
                return
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        """Stop every batcher."""
        for batcher in self._batchers.values():
            await batcher.close()

    # -- health and metadata ---------------------------------------------------------------

    @property
    def live(self) -> bool:
        """The process serves requests (it may still be loading)."""
        return True

    @property
    def ready(self) -> bool:
        """All models are loaded and warmed up, and the server is not draining."""
        return self._loaded and not self._draining

    def server_metadata(self) -> dict[str, Any]:
        """v2 server metadata."""
        return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": list(EXTENSIONS)}

    def model(self, name: str) -> Model:
        """Return a loaded model, or raise ModelNotFoundError / ModelNotReadyError."""
        model = self._models.get(name)
        if model is not None:
            return model
        if name in self._names:
            raise ModelNotReadyError(f"model {name!r} is not loaded yet")
        raise ModelNotFoundError(
            f"model {name!r} is not served here; models: {sorted(self._names)}"
        )

    def model_ready(self, name: str) -> bool:
        """Whether ``name`` can take requests now; raises ModelNotFoundError for unknown names."""
        if name not in self._names:
            raise ModelNotFoundError(
                f"model {name!r} is not served here; models: {sorted(self._names)}"
            )
        return name in self._models and not self._draining

    def model_metadata(self, name: str) -> dict[str, Any]:
        """v2 model metadata, with the execution provider under ``parameters``."""
        return self.model(name).metadata

    # -- inference ---------------------------------------------------------------------------

    async def infer(self, name: str, protocol: str, request: InferRequest) -> InferResponse:
        """Validate, queue and run one request; count it whatever the outcome."""
        started = time.perf_counter()
        try:
            model = self.model(name)
            inputs, rows, signature = validate(model, request.inputs, self._policy.max_batch_size)
            selected = select_outputs(model, request.outputs)
            results = await self._batchers[name].submit(inputs, rows, signature)
        except Exception as exc:
            self.reject(name, protocol, exc)
            raise
        self._count(name, protocol, OK.http)
        duration = self._durations.get((name, protocol))
        if duration is None:
            duration = self._metrics.request_duration.labels(name, protocol)
            self._durations[(name, protocol)] = duration
        duration.observe(time.perf_counter() - started)
        return InferResponse(model, request.id, [(model.outputs[i], results[i]) for i in selected])

    def reject(self, name: str, protocol: str, exc: BaseException) -> None:
        """Count a request that failed with ``exc``, including one the adapter could not
        decode, under the status the error table gives it."""
        self._count(name if name in self._names else "", protocol, status_for(exc).http)

    def _count(self, model: str, protocol: str, code: int) -> None:
        counter = self._counters.get((model, protocol, code))
        if counter is None:
            counter = self._metrics.requests.labels(model, protocol, str(code))
            self._counters[(model, protocol, code)] = counter
        counter.inc()


def validate(
    model: Model, inputs: dict[str, np.ndarray], max_batch_size: int
) -> tuple[dict[str, np.ndarray], int, tuple[Any, ...] | None]:
    """Check ``inputs`` against the model; return them with their batch rows and signature.

    The signature (dtype and non-batch dims per input) decides which requests may share a
    batch; unbatchable models get ``None`` and rows of 1.
    """
    specs = model.inputs
    if len(inputs) != len(specs) or any(spec.name not in inputs for spec in specs):
        unknown = sorted(set(inputs) - set(model.input_by_name))
        if unknown:
            raise InvalidInputError(
                f"unknown input {unknown[0]!r} for model {model.name!r}; "
                f"inputs: {[spec.name for spec in specs]}"
            )
        missing = [spec.name for spec in specs if spec.name not in inputs]
        raise InvalidInputError(f"missing input {missing[0]!r} for model {model.name!r}")
    rows = -1
    for spec in specs:
        array = inputs[spec.name]
        if array.dtype != spec.dtype:
            raise InvalidInputError(
                f"input {spec.name!r} has datatype {datatype_of(array)}; "
                f"model {model.name!r} expects {spec.datatype}"
            )
        shape = array.shape
        if len(shape) != len(spec.shape) or any(
            want not in (-1, got) for want, got in zip(spec.shape, shape, strict=True)
        ):
            raise InvalidInputError(
                f"input {spec.name!r} has shape {list(shape)}; "
                f"model {model.name!r} expects {list(spec.shape)} (-1 is any size)"
            )
        if model.batchable:
            if rows == -1:
                rows = shape[0]
            elif shape[0] != rows:
                raise InvalidInputError(
                    f"input {spec.name!r} has batch size {shape[0]}; other inputs have {rows}"
                )
    if not model.batchable:
        return inputs, 1, None
    if rows < 1 or rows > max_batch_size:
        raise InvalidInputError(
            f"batch size {rows} is outside 1..{max_batch_size} for model {model.name!r}"
        )
    signature = tuple((spec.name, inputs[spec.name].shape[1:]) for spec in specs)
    return inputs, rows, signature


def select_outputs(model: Model, requested: Sequence[str] | None) -> list[int]:
    """Indexes of the requested outputs in the model's output order; all when None."""
    if not requested:
        return list(range(len(model.outputs)))
    index = {name: i for i, name in enumerate(model.output_names)}
    selected = []
    for name in requested:
        position = index.get(name)
        if position is None:
            raise InvalidInputError(
                f"unknown output {name!r} for model {model.name!r}; "
                f"outputs: {list(model.output_names)}"
            )
        selected.append(position)
    return selected
