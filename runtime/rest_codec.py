"""The REST wire format of the Open Inference Protocol: JSON tensors and the binary extension.

``decode_request`` turns a request body (a JSON header, optionally followed by raw tensor
bytes as ``tritonclient.http`` sends them with ``Inference-Header-Content-Length``) into an
``InferRequest``; ``encode_response`` does the reverse for the outputs, honouring
``binary_data_output`` and each output's ``binary_data`` parameter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from sluice.runtime.dataplane import MODEL_VERSION, InferRequest, InferResponse
from sluice.runtime.datatypes import NUMPY_DTYPES, decode_raw, encode_raw
from sluice.runtime.errors import InvalidInputError


@dataclass(slots=True)
class RestRequest:
    """A decoded request plus how its outputs are to be encoded."""

    request: InferRequest
    binary_default: bool
    binary_outputs: dict[str, bool]


def decode_request(body: bytes, header_length: int | None) -> RestRequest:
    """Parse an infer request body; raise InvalidInputError naming what is wrong."""
    if header_length is None:
        header_bytes: bytes | memoryview = body
        binary = memoryview(b"")
    else:
        if header_length < 0 or header_length > len(body):
            raise InvalidInputError(
                f"Inference-Header-Content-Length {header_length} is outside the body "
                f"of {len(body)} bytes"
            )
        view = memoryview(body)
        header_bytes = view[:header_length]
        binary = view[header_length:]
    try:
        header = orjson.loads(header_bytes)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"malformed JSON in request: {exc}") from None
    if not isinstance(header, dict):
        raise InvalidInputError("request JSON must be an object")
    raw_inputs = header.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInputError("request JSON needs a non-empty 'inputs' list")
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for raw in raw_inputs:
        name, array, used = _decode_input(raw, binary, offset)
        if name in inputs:
            raise InvalidInputError(f"input {name!r} appears twice")
        inputs[name] = array
        offset += used
    if offset != len(binary):
        raise InvalidInputError(
            f"binary payload has {len(binary) - offset} bytes beyond the declared inputs"
        )
    parameters = _parameters(header, "request")
    binary_default = bool(parameters.get("binary_data_output", False))
    if "classification" in parameters:
        raise InvalidInputError("the classification extension is not supported")
    requested: list[str] | None = None
    binary_outputs: dict[str, bool] = {}
    raw_outputs = header.get("outputs")
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise InvalidInputError("'outputs' must be a list")
        requested = []
        for raw in raw_outputs:
            if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
                raise InvalidInputError("each requested output needs a string 'name'")
            out_params = _parameters(raw, f"output {raw['name']!r}")
            if out_params.get("classification"):
                raise InvalidInputError("the classification extension is not supported")
            requested.append(raw["name"])
            if "binary_data" in out_params:
                binary_outputs[raw["name"]] = bool(out_params["binary_data"])
    inference_id = header.get("id")
    if inference_id is not None and not isinstance(inference_id, str):
        raise InvalidInputError("'id' must be a string")
    return RestRequest(
        InferRequest(inputs, inference_id, requested), binary_default, binary_outputs
    )


def _parameters(obj: dict[str, Any], where: str) -> dict[str, Any]:
    parameters = obj.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise InvalidInputError(f"'parameters' of {where} must be an object")
    return parameters


def _decode_input(raw: Any, binary: memoryview, offset: int) -> tuple[str, np.ndarray, int]:
    """Decode one input; return its name, array and the binary bytes it used."""
    if not isinstance(raw, dict):
        raise InvalidInputError("each input must be an object")
    name = raw.get("name")
    if not isinstance(name, str):
        raise InvalidInputError("each input needs a string 'name'")
    datatype = raw.get("datatype")
    if not isinstance(datatype, str) or datatype not in NUMPY_DTYPES:
        raise InvalidInputError(f"input {name!r} has unknown datatype {datatype!r}")
    shape = raw.get("shape")
    if (
        not isinstance(shape, list)
        or not all(type(dim) is int and dim >= 0 for dim in shape)
        or len(shape) > 16
    ):
        raise InvalidInputError(f"input {name!r} needs 'shape', a list of non-negative integers")
    size = _parameters(raw, f"input {name!r}").get("binary_data_size")
    if size is not None:
        if type(size) is not int or size < 0:
            raise InvalidInputError(f"input {name!r} has invalid binary_data_size {size!r}")
        if offset + size > len(binary):
            raise InvalidInputError(
                f"input {name!r} declares {size} binary bytes but the payload is truncated "
                f"({len(binary) - offset} left)"
            )
        return name, decode_raw(name, datatype, binary[offset : offset + size], shape), size
    if "data" not in raw:
        raise InvalidInputError(f"input {name!r} has neither 'data' nor binary_data_size")
    count = math.prod(shape)
    return name, _from_json(name, datatype, NUMPY_DTYPES[datatype], raw["data"], shape, count), 0


def _from_json(
    name: str, datatype: str, dtype: np.dtype[Any], data: Any, shape: list[int], count: int
) -> np.ndarray:
    if not isinstance(data, list):
        data = [data]
    try:
        if datatype == "BYTES":
            array = np.empty(count, dtype=object)
            flat = np.asarray(data, dtype=object).ravel()
            if flat.size != count or not all(isinstance(item, str) for item in flat):
                raise ValueError("BYTES data must be strings")
            array[:] = [item.encode() for item in flat]
        else:
            array = np.asarray(data)
            kind = array.dtype.kind
            if (
                kind not in "biuf"
                or (kind == "f" and dtype.kind in "biu")
                or (kind != "b" and dtype.kind == "b")
            ):
                raise ValueError(f"values do not fit {datatype}")
            array = array.astype(dtype, copy=False)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInputError(f"input {name!r} has data that is not {datatype}: {exc}") from None
    if array.size != count:
        raise InvalidInputError(
            f"input {name!r} has {array.size} values; shape {shape} needs {count}"
        )
    return array.reshape(shape)


def encode_response(
    response: InferResponse, binary_default: bool, binary_outputs: dict[str, bool]
) -> tuple[bytes, int | None]:
    """Return the response body and, when binary outputs follow the JSON, the JSON length."""
    outputs = []
    chunks: list[bytes] = []
    for spec, array in response.outputs:
        entry: dict[str, Any] = {
            "name": spec.name,
            "datatype": spec.datatype,
            "shape": array.shape,
        }
        if binary_outputs.get(spec.name, binary_default):
            raw = encode_raw(spec.datatype, array)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        elif spec.datatype == "BYTES":
            entry["data"] = [
                item.decode(errors="replace") if isinstance(item, bytes) else str(item)
                for item in array.ravel()
            ]
        else:
            entry["data"] = np.ascontiguousarray(array).ravel()
        outputs.append(entry)
    body: dict[str, Any] = {
        "model_name": response.model.name,
        "model_version": MODEL_VERSION,
        "outputs": outputs,
    }
    if response.id is not None:
        body["id"] = response.id
    header = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)
