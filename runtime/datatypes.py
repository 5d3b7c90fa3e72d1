"""Tensor datatypes: the Open Inference Protocol names, numpy dtypes and ONNX type strings,
and the raw byte layout of a tensor.

Used by the model loader (ONNX type -> protocol name) and by both codecs: the REST binary
extension and gRPC's ``raw_input_contents`` / ``raw_output_contents`` share one raw layout,
coded here once by ``decode_raw`` and ``encode_raw``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import numpy as np
from sluice.runtime.errors import InvalidInputError

# Protocol datatype -> numpy dtype, explicitly little-endian as the binary extension requires.
NUMPY_DTYPES: Final[dict[str, np.dtype[np.generic]]] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}

# onnxruntime's NodeArg.type strings -> protocol datatype.
ONNX_TO_DATATYPE: Final[dict[str, str]] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}

_KIND_TO_DATATYPE: Final[dict[tuple[str, int], str]] = {
    (dtype.kind, dtype.itemsize): name for name, dtype in NUMPY_DTYPES.items() if name != "BYTES"
}


def datatype_of(array: np.ndarray) -> str:
    """Return the protocol datatype name of a numpy array (object and str arrays are BYTES)."""
    kind = array.dtype.kind
    if kind in "OSU":
        return "BYTES"
    return _KIND_TO_DATATYPE[(kind, array.dtype.itemsize)]


def serialize_bytes(array: np.ndarray) -> bytes:
    """Encode a BYTES tensor as the binary extension does: 4-byte LE length, then the bytes."""
    parts: list[bytes] = []
    for item in array.ravel():
        raw = item if isinstance(item, bytes) else str(item).encode()
        parts.append(len(raw).to_bytes(4, "little"))
        parts.append(raw)
    return b"".join(parts)


def deserialize_bytes(raw: bytes | memoryview, count: int) -> np.ndarray:
    """Decode ``count`` length-prefixed elements; raise ValueError if the buffer disagrees."""
    view = memoryview(raw)
    items: list[bytes] = []
    offset = 0
    for _ in range(count):
        if offset + 4 > len(view):
            raise ValueError("BYTES payload ends inside an element length")
        size = int.from_bytes(view[offset : offset + 4], "little")
        offset += 4
        if offset + size > len(view):
            raise ValueError("BYTES payload ends inside an element")
        items.append(bytes(view[offset : offset + size]))
        offset += size
    if offset != len(view):
        raise ValueError(f"BYTES payload has {len(view) - offset} bytes after {count} elements")
    array = np.empty(count, dtype=object)
    array[:] = items
    return array


def decode_raw(
    name: str, datatype: str, raw: bytes | memoryview, shape: Sequence[int]
) -> np.ndarray:
    """Decode input ``name`` from its raw bytes: little-endian values, or length-prefixed
    elements for BYTES; raise InvalidInputError when the bytes do not fill ``shape``."""
    count = math.prod(shape)
    if datatype == "BYTES":
        try:
            array = deserialize_bytes(raw, count)
        except ValueError as exc:
            raise InvalidInputError(f"input {name!r}: {exc}") from None
    else:
        dtype = NUMPY_DTYPES[datatype]
        if len(raw) != count * dtype.itemsize:
            raise InvalidInputError(
                f"input {name!r} has {len(raw)} raw bytes; shape {list(shape)} of {datatype} "
                f"needs {count * dtype.itemsize}"
            )
        array = np.frombuffer(raw, dtype=dtype)
    return array.reshape(shape)


def encode_raw(datatype: str, array: np.ndarray) -> bytes:
    """The raw bytes of an output tensor, in the layout ``decode_raw`` reads."""
    if datatype == "BYTES":
        return serialize_bytes(array)
    return array.tobytes()
