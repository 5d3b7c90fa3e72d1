"""The gRPC adapter: ``inference.GRPCInferenceService`` on a ``grpc.aio`` server.

Messages and the service stub come from the modules ``tritonclient`` ships, so the wire
format is exactly the one ``tritonclient.grpc`` speaks. Inputs may arrive as
``raw_input_contents`` or typed contents; outputs always go back as
``raw_output_contents``, which is what ``tritonclient.grpc`` reads. RPCs not overridden here
are answered UNIMPLEMENTED by the generated base class.
"""

from __future__ import annotations

import math
from typing import Any, NoReturn

import grpc
import numpy as np
from sluice.runtime.dataplane import MODEL_VERSION, DataPlane, InferRequest
from sluice.runtime.datatypes import NUMPY_DTYPES, deserialize_bytes, serialize_bytes
from sluice.runtime.errors import InvalidInputError, message_for, status_for
from tritonclient.grpc import service_pb2, service_pb2_grpc

# Which InferTensorContents field carries each datatype when contents are typed.
TYPED_FIELDS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def decode_request(request: Any) -> InferRequest:
    """Turn a ModelInferRequest into an InferRequest; raise InvalidInputError naming the problem."""
    raw_contents = request.raw_input_contents
    if raw_contents and len(raw_contents) != len(request.inputs):
        raise InvalidInputError(
            f"{len(raw_contents)} raw_input_contents for {len(request.inputs)} inputs"
        )
    if not request.inputs:
        raise InvalidInputError("request has no inputs")
    inputs: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(request.inputs):
        name = tensor.name
        dtype = NUMPY_DTYPES.get(tensor.datatype)
        if dtype is None:
            raise InvalidInputError(f"input {name!r} has unknown datatype {tensor.datatype!r}")
        shape = list(tensor.shape)
        if any(dim < 0 for dim in shape):
            raise InvalidInputError(f"input {name!r} has a negative dimension in {shape}")
        count = math.prod(shape)
        if raw_contents:
            array = _from_raw(name, tensor.datatype, dtype, raw_contents[index], count)
        else:
            array = _from_typed(name, tensor, dtype, count)
        if name in inputs:
            raise InvalidInputError(f"input {name!r} appears twice")
        inputs[name] = array.reshape(shape)
    requested = [output.name for output in request.outputs] or None
    return InferRequest(inputs, request.id or None, requested)


def _from_raw(name: str, datatype: str, dtype: np.dtype[Any], raw: bytes, count: int) -> np.ndarray:
    if datatype == "BYTES":
        try:
            return deserialize_bytes(raw, count)
        except ValueError as exc:
            raise InvalidInputError(f"input {name!r}: {exc}") from None
    if len(raw) != count * dtype.itemsize:
        raise InvalidInputError(
            f"input {name!r} has {len(raw)} raw bytes; {count} values of {datatype} "
            f"need {count * dtype.itemsize}"
        )
    return np.frombuffer(raw, dtype=dtype)


def _from_typed(name: str, tensor: Any, dtype: np.dtype[Any], count: int) -> np.ndarray:
    field = TYPED_FIELDS.get(tensor.datatype)
    if field is None:
        raise InvalidInputError(f"input {name!r} of {tensor.datatype} must use raw_input_contents")
    values = getattr(tensor.contents, field)
    if len(values) != count:
        raise InvalidInputError(f"input {name!r} has {len(values)} values; shape needs {count}")
    if field == "bytes_contents":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array
    return np.asarray(values, dtype=dtype)


def _tensor_metadata(entries: list[dict[str, Any]]) -> list[Any]:
    return [
        service_pb2.ModelMetadataResponse.TensorMetadata(
            name=entry["name"], datatype=entry["datatype"], shape=entry["shape"]
        )
        for entry in entries
    ]


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """The v2 gRPC service over the shared data plane."""

    def __init__(self, dataplane: DataPlane) -> None:
        self._dataplane = dataplane

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        """Liveness."""
        return service_pb2.ServerLiveResponse(live=self._dataplane.live)

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        """Readiness: models loaded and warmed up, not draining."""
        return service_pb2.ServerReadyResponse(ready=self._dataplane.ready)

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        """Readiness of one model."""
        try:
            ready = self._dataplane.model_ready(request.name)
        except Exception as exc:
            await _abort(context, exc)
        return service_pb2.ModelReadyResponse(ready=ready)

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        """Server name, version and extensions."""
        meta = self._dataplane.server_metadata()
        return service_pb2.ServerMetadataResponse(
            name=meta["name"], version=meta["version"], extensions=meta["extensions"]
        )

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        """Model metadata from the ONNX graph."""
        try:
            meta = self._dataplane.model_metadata(request.name)
        except Exception as exc:
            await _abort(context, exc)
        return service_pb2.ModelMetadataResponse(
            name=meta["name"],
            versions=meta["versions"],
            platform=meta["platform"],
            inputs=_tensor_metadata(meta["inputs"]),
            outputs=_tensor_metadata(meta["outputs"]),
        )

    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        """One inference; outputs as raw_output_contents."""
        try:
            result = await self._dataplane.infer(
                request.model_name, "grpc", lambda: decode_request(request)
            )
        except Exception as exc:
            await _abort(context, exc)
        response = service_pb2.ModelInferResponse(
            model_name=result.model.name, model_version=MODEL_VERSION, id=request.id
        )
        for spec, array in result.outputs:
            response.outputs.add(name=spec.name, datatype=spec.datatype, shape=array.shape)
            response.raw_output_contents.append(
                serialize_bytes(array) if spec.datatype == "BYTES" else array.tobytes()
            )
        return response


async def _unimplemented(self: Any, request: Any, context: grpc.aio.ServicerContext) -> NoReturn:
    """Answer an RPC this server does not offer (shared memory, repository, statistics ...)."""
    await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this RPC is not implemented by sluice")
    raise AssertionError("context.abort returned")


# Every RPC of the generated servicer that is not overridden above answers UNIMPLEMENTED
# without the generated code's NotImplementedError traceback.
for _rpc in service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods_by_name:
    if _rpc not in vars(InferenceServicer):
        setattr(InferenceServicer, _rpc, _unimplemented)


async def _abort(context: grpc.aio.ServicerContext, exc: BaseException) -> NoReturn:
    await context.abort(status_for(exc).grpc, message_for(exc))
    raise AssertionError("context.abort returned")  # abort always raises


def create_grpc_server(dataplane: DataPlane, max_message_bytes: int) -> grpc.aio.Server:
    """A grpc.aio server with the inference service added; ports are added by the caller."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
    )
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
        InferenceServicer(dataplane), server
    )
    return server
