"""The REST codec: JSON and binary tensors in, JSON and binary tensors out; fuzzed."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sluice.runtime.dataplane import InferResponse
from sluice.runtime.datatypes import NUMPY_DTYPES, datatype_of
from sluice.runtime.errors import InvalidInputError
from sluice.runtime.model import TensorSpec
from sluice.runtime.rest_codec import decode_request, encode_response

NUMERIC = ["BOOL", "UINT8", "INT32", "INT64", "FP16", "FP32", "FP64"]


def binary_body(
    tensors: dict[str, np.ndarray], extra: dict[str, object] | None = None
) -> tuple[bytes, int]:
    header = {
        "inputs": [
            {
                "name": name,
                "datatype": datatype_of(array),
                "shape": list(array.shape),
                "parameters": {"binary_data_size": array.nbytes},
            }
            for name, array in tensors.items()
        ],
        **(extra or {}),
    }
    head = json.dumps(header).encode()
    return head + b"".join(array.tobytes() for array in tensors.values()), len(head)


@settings(max_examples=40, deadline=None)
@given(
    datatype=st.sampled_from(NUMERIC),
    shape=st.lists(st.integers(0, 4), min_size=1, max_size=3),
    data=st.data(),
)
def test_binary_round_trip(datatype: str, shape: list[int], data: st.DataObject) -> None:
    array = data.draw(arrays(NUMPY_DTYPES[datatype], tuple(shape)))
    body, length = binary_body({"t": array})
    decoded = decode_request(body, length).request.inputs["t"]
    assert decoded.dtype == array.dtype
    np.testing.assert_array_equal(decoded, array)


@settings(max_examples=40, deadline=None)
@given(
    datatype=st.sampled_from(["INT64", "FP32", "FP64", "BOOL"]),
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    data=st.data(),
)
def test_json_round_trip(datatype: str, shape: list[int], data: st.DataObject) -> None:
    dtype = NUMPY_DTYPES[datatype]
    elements = {
        "INT64": st.integers(-(2**62), 2**62),
        "FP32": st.floats(-1e6, 1e6, width=32),
        "FP64": st.floats(allow_nan=False, allow_infinity=False),
        "BOOL": st.booleans(),
    }[datatype]
    array = data.draw(arrays(dtype, tuple(shape), elements=elements))
    body = json.dumps(
        {
            "inputs": [
                {"name": "t", "datatype": datatype, "shape": shape, "data": array.ravel().tolist()}
            ]
        }
    ).encode()
    decoded = decode_request(body, None).request.inputs["t"]
    np.testing.assert_array_equal(decoded, array)


def test_nested_json_data_and_outputs() -> None:
    body = json.dumps(
        {
            "id": "a",
            "inputs": [
                {"name": "t", "datatype": "INT64", "shape": [2, 2], "data": [[1, 2], [3, 4]]}
            ],
            "outputs": [{"name": "o", "parameters": {"binary_data": True}}, {"name": "p"}],
            "parameters": {"binary_data_output": False},
        }
    ).encode()
    decoded = decode_request(body, None)
    assert decoded.request.inputs["t"].tolist() == [[1, 2], [3, 4]]
    assert decoded.request.id == "a"
    assert decoded.request.outputs == ["o", "p"]
    assert decoded.binary_outputs == {"o": True}
    assert decoded.binary_default is False


def body_of(*inputs: dict[str, object], **top: object) -> bytes:
    """A JSON request body from input dicts and top-level fields."""
    return json.dumps({"inputs": list(inputs), **top}).encode()


A = {"name": "a", "datatype": "FP32", "shape": [1], "data": [1]}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"", "malformed JSON"),
        (b'{"inputs": [1]}', "must be an object"),
        (body_of({"datatype": "FP32", "shape": [1], "data": [1]}), "string 'name'"),
        (body_of({**A, "shape": [-1]}), "non-negative"),
        (body_of({"name": "a", "datatype": "FP32", "shape": [1]}), "neither 'data'"),
        (body_of({**A, "datatype": "INT64", "data": [1.5]}), "not INT64"),
        (body_of({**A, "shape": [2], "data": [[1], [2, 3]]}), "not FP32"),
        (body_of({**A, "datatype": "BOOL"}), "not BOOL"),
        (body_of(A, A), "appears twice"),
        (body_of(A, outputs={}), "must be a list"),
        (body_of(A, id=3), "'id'"),
        (
            body_of(A, outputs=[{"name": "o", "parameters": {"classification": 2}}]),
            "classification",
        ),
    ],
)
def test_malformed_requests_name_the_problem(body: bytes, needle: str) -> None:
    with pytest.raises(InvalidInputError, match=needle):
        decode_request(body, None)


def test_binary_size_must_match_shape_and_no_bytes_may_trail() -> None:
    array = np.ones(3, np.float32)
    body, length = binary_body({"t": array})
    with pytest.raises(InvalidInputError, match="beyond the declared inputs"):
        decode_request(body + b"\0", length)
    with pytest.raises(InvalidInputError, match="truncated"):
        decode_request(body[:-1], length)
    header = json.loads(body[:length])
    header["inputs"][0]["shape"] = [2]
    head = json.dumps(header).encode()
    with pytest.raises(InvalidInputError, match="needs 8"):
        decode_request(head + array.tobytes(), len(head))


def test_bytes_tensors_both_ways() -> None:
    items = [b"a", b"", b"xyz"]
    raw = b"".join(len(i).to_bytes(4, "little") + i for i in items)
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "s",
                    "datatype": "BYTES",
                    "shape": [3],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    ).encode()
    assert decode_request(head + raw, len(head)).request.inputs["s"].tolist() == items
    body = json.dumps(
        {"inputs": [{"name": "s", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]}]}
    ).encode()
    assert decode_request(body, None).request.inputs["s"].tolist() == [b"a", b"b"]


class _Model:
    name = "m"


def test_encode_binary_and_json_outputs() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([7, 8], dtype=np.int64)
    response = InferResponse(
        _Model(),  # type: ignore[arg-type]
        "r1",
        [(TensorSpec("a", "FP32", (-1, 3)), a), (TensorSpec("b", "INT64", (-1,)), b)],
    )
    body, length = encode_response(response, False, {"a": True})
    assert length is not None
    header = json.loads(body[:length])
    assert header["id"] == "r1"
    assert header["outputs"][0] == {
        "name": "a",
        "datatype": "FP32",
        "shape": [2, 3],
        "parameters": {"binary_data_size": 24},
    }
    assert header["outputs"][1]["data"] == [7, 8]
    assert np.frombuffer(body[length:], np.float32).tolist() == a.ravel().tolist()
    json_only, none = encode_response(response, False, {})
    assert none is None
    assert json.loads(json_only)["outputs"][0]["data"] == [0, 1, 2, 3, 4, 5]


@settings(max_examples=150, deadline=None)
@given(body=st.binary(max_size=200), header_length=st.one_of(st.none(), st.integers(-5, 250)))
def test_fuzz_bytes_only_raise_invalid_input(body: bytes, header_length: int | None) -> None:
    with contextlib.suppress(InvalidInputError):
        decode_request(body, header_length)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(
    name=st.text(max_size=3),
    datatype=st.sampled_from([*NUMPY_DTYPES, "BF16", 3]),
    shape=json_values | st.lists(st.integers(-1, 4), max_size=3),
    data=json_values,
    parameters=json_values | st.fixed_dictionaries({"binary_data_size": st.integers(-2, 40)}),
    tail=st.binary(max_size=40),
)
def test_fuzz_structured_json_only_raises_invalid_input(
    name: str, datatype: object, shape: object, data: object, parameters: object, tail: bytes
) -> None:
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "datatype": datatype,
                    "shape": shape,
                    "data": data,
                    "parameters": parameters,
                }
            ]
        }
    ).encode()
    try:
        decoded = decode_request(head + tail, len(head))
    except InvalidInputError:
        return
    array = decoded.request.inputs[name]
    assert list(array.shape) == shape
