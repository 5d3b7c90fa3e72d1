"""The gRPC adapter: ``inference.GRPCInferenceService`` on a ``grpc.aio`` server.

Messages and the service stub come from the modules ``tritonclient`` ships, so the wire
format is exactly the one ``tritonclient.grpc`` speaks. Inputs may arrive as
``raw_input_contents`` or typed contents; outputs always go back as
``raw_output_contents``, which is what ``tritonclient.grpc`` reads. RPCs of the service
that are not written here (shared memory, repository, statistics ...) answer UNIMPLEMENTED.

Every RPC goes through ``_rpc``: it takes the request id from the ``x-request-id`` metadata
(or makes one), answers an exception with the status from the error table, returns the id in
the trailing metadata and, with the access log on, writes the request's line.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import grpc
import numpy as np
from sluice.runtime.dataplane import MODEL_VERSION, DataPlane, InferRequest
from sluice.runtime.datatypes import NUMPY_DTYPES, decode_raw, encode_raw
from sluice.runtime.errors import OK, InvalidInputError, answer_for
from sluice.runtime.logs import REQUEST_ID_HEADER, log_access, request_id_for
from tritonclient.grpc import service_pb2, service_pb2_grpc

SERVICE = "inference.GRPCInferenceService"

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
        if raw_contents:
            array = decode_raw(name, tensor.datatype, raw_contents[index], shape)
        else:
            array = _from_typed(name, tensor, dtype, shape)
        if name in inputs:
            raise InvalidInputError(f"input {name!r} appears twice")
        inputs[name] = array
    requested = [output.name for output in request.outputs] or None
    return InferRequest(inputs, request.id or None, requested)


def _from_typed(name: str, tensor: Any, dtype: np.dtype[Any], shape: list[int]) -> np.ndarray:
    field = TYPED_FIELDS.get(tensor.datatype)
    if field is None:
        raise InvalidInputError(f"input {name!r} of {tensor.datatype} must use raw_input_contents")
    values = getattr(tensor.contents, field)
    count = math.prod(shape)
    if len(values) != count:
        raise InvalidInputError(f"input {name!r} has {len(values)} values; shape needs {count}")
    if field == "bytes_contents":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array.reshape(shape)
    return np.asarray(values, dtype=dtype).reshape(shape)


def _tensor_metadata(entries: list[dict[str, Any]]) -> list[Any]:
    return [
        service_pb2.ModelMetadataResponse.TensorMetadata(
            name=entry["name"], datatype=entry["datatype"], shape=entry["shape"]
        )
        for entry in entries
    ]


def _request_id(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_HEADER:
            return request_id_for(value if isinstance(value, str) else None)
    return request_id_for(None)


def _model_of(request: Any) -> str:
    """The model an RPC's request names, or "" (for the access log)."""
    return getattr(request, "model_name", "") or getattr(request, "name", "")


RpcBody = Callable[["InferenceServicer", Any], Awaitable[Any]]
Rpc = Callable[["InferenceServicer", Any, grpc.aio.ServicerContext], Awaitable[Any]]


def _rpc(body: RpcBody) -> Rpc:
    """Answer an RPC with ``body``'s response, or its exception with the status from the
    error table; the request id travels back in the trailing metadata, which goes out with
    the status at no cost (initial metadata, sent on its own, measured 10% slower per call).
    """
    path = f"/{SERVICE}/{body.__name__}"

    @functools.wraps(body)
    async def rpc(self: InferenceServicer, request: Any, context: grpc.aio.ServicerContext) -> Any:
        request_id = _request_id(context)
        trailer = ((REQUEST_ID_HEADER, request_id),)
        started = time.perf_counter()
        try:
            response = await body(self, request)
        except Exception as exc:
            status, message = answer_for(exc, request_id, path)
            if self.access_log:
                _log_access(path, request, status.http, started, 0, request_id)
            await context.abort(status.grpc, message, trailer)
            raise AssertionError("context.abort returned") from None  # abort always raises
        context.set_trailing_metadata(trailer)
        if self.access_log:
            _log_access(path, request, OK.http, started, response.ByteSize(), request_id)
        return response

    return rpc


def _log_access(
    path: str, request: Any, status: int, started: float, bytes_out: int, request_id: str
) -> None:
    log_access(
        protocol="grpc",
        method="POST",
        path=path,
        model=_model_of(request),
        status=status,
        duration_s=time.perf_counter() - started,
        bytes_in=request.ByteSize(),
        bytes_out=bytes_out,
        request_id=request_id,
    )


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """The v2 gRPC service over the shared data plane."""

    def __init__(self, dataplane: DataPlane, *, access_log: bool = False) -> None:
        self._dataplane = dataplane
        self.access_log = access_log

    @_rpc
    async def ServerLive(self, request: Any) -> Any:  # noqa: N802
        """Liveness."""
        return service_pb2.ServerLiveResponse(live=self._dataplane.live)

    @_rpc
    async def ServerReady(self, request: Any) -> Any:  # noqa: N802
        """Readiness: models loaded and warmed up, not draining."""
        return service_pb2.ServerReadyResponse(ready=self._dataplane.ready)

    @_rpc
    async def ModelReady(self, request: Any) -> Any:  # noqa: N802
        """Readiness of one model."""
        return service_pb2.ModelReadyResponse(ready=self._dataplane.model_ready(request.name))

    @_rpc
    async def ServerMetadata(self, request: Any) -> Any:  # noqa: N802
        """Server name, version and extensions."""
        meta = self._dataplane.server_metadata()
        return service_pb2.ServerMetadataResponse(
            name=meta["name"], version=meta["version"], extensions=meta["extensions"]
        )

    @_rpc
    async def ModelMetadata(self, request: Any) -> Any:  # noqa: N802
        """Model metadata from the ONNX graph."""
        meta = self._dataplane.model_metadata(request.name)
        return service_pb2.ModelMetadataResponse(
            name=meta["name"],
            versions=meta["versions"],
            platform=meta["platform"],
            inputs=_tensor_metadata(meta["inputs"]),
            outputs=_tensor_metadata(meta["outputs"]),
        )

    @_rpc
    async def ModelInfer(self, request: Any) -> Any:  # noqa: N802
        """One inference; outputs as raw_output_contents."""
        try:
            decoded = decode_request(request)
        except Exception as exc:
            self._dataplane.reject(request.model_name, "grpc", exc)
            raise
        result = await self._dataplane.infer(request.model_name, "grpc", decoded)
        response = service_pb2.ModelInferResponse(
            model_name=result.model.name, model_version=MODEL_VERSION, id=request.id
        )
        for spec, array in result.outputs:
            response.outputs.add(name=spec.name, datatype=spec.datatype, shape=array.shape)
            response.raw_output_contents.append(encode_raw(spec.datatype, array))
        return response


async def _unimplemented(self: Any, request: Any, context: grpc.aio.ServicerContext) -> NoReturn:
    """Answer an RPC this server does not offer (shared memory, repository, statistics ...)."""
    await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this RPC is not implemented by sluice")
    raise AssertionError("context.abort returned")


# Every RPC of the generated servicer that is not written above answers UNIMPLEMENTED
# without the generated code's NotImplementedError traceback.
for _rpc_name in service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods_by_name:
    if _rpc_name not in vars(InferenceServicer):
        setattr(InferenceServicer, _rpc_name, _unimplemented)


def create_grpc_server(
    dataplane: DataPlane, max_message_bytes: int, *, access_log: bool = False
) -> grpc.aio.Server:
    """A grpc.aio server with the inference service added; ports are added by the caller."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
    )
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
        InferenceServicer(dataplane, access_log=access_log), server
    )
    return server
