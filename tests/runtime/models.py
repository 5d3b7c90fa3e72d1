"""Real ONNX models for the runtime tests, built with the onnx helper API."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 17)]


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=OPSET)
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def build_mlp(path: Path, sizes: tuple[int, ...] = (256, 1024, 1024, 1024, 16)) -> Path:
    """An MLP (Gemm + Relu layers) over FP32 input [batch, sizes[0]], output [batch, sizes[-1]]."""
    rng = np.random.default_rng(7)
    nodes = []
    inits = []
    current = "input"
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        weight = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32)
        bias = (rng.standard_normal(n_out) * 0.1).astype(np.float32)
        inits += [numpy_helper.from_array(weight, f"w{i}"), numpy_helper.from_array(bias, f"b{i}")]
        out = f"h{i}" if i < len(sizes) - 2 else "output"
        nodes.append(helper.make_node("Gemm", [current, f"w{i}", f"b{i}"], [f"g{i}"]))
        if out == "output":
            nodes.append(helper.make_node("Identity", [f"g{i}"], [out]))
        else:
            nodes.append(helper.make_node("Relu", [f"g{i}"], [out]))
        current = out
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", sizes[0]])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", sizes[-1]])],
        inits,
    )
    return _save(graph, path)


def build_multi_io(path: Path) -> Path:
    """Inputs x FP32 [batch, 4] and ids INT64 [batch, 3]; outputs scaled = 2x (FP32),
    shifted = ids + 1 (INT64), total = row sums of x (FP32 [batch])."""
    nodes = [
        helper.make_node("Mul", ["x", "two"], ["scaled"]),
        helper.make_node("Add", ["ids", "one"], ["shifted"]),
        helper.make_node("ReduceSum", ["x", "axes"], ["total"], keepdims=0),
    ]
    inits = [
        numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two"),
        numpy_helper.from_array(np.array(1, dtype=np.int64), "one"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
    ]
    graph = helper.make_graph(
        nodes,
        "multi_io",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 3]),
        ],
        [
            helper.make_tensor_value_info("scaled", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("shifted", TensorProto.INT64, ["batch", 3]),
            helper.make_tensor_value_info("total", TensorProto.FLOAT, ["batch"]),
        ],
        inits,
    )
    return _save(graph, path)


def build_fixed(path: Path) -> Path:
    """Input x FP32 [2, 3] with a fixed first dim (never batched); output y = relu(x)."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    return _save(graph, path)


def build_sequence(path: Path) -> Path:
    """Input x FP32 [batch, length] (both dynamic); output y = 3x, same shape."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "three"], ["y"])],
        "sequence",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "length"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "length"])],
        [numpy_helper.from_array(np.array(3.0, dtype=np.float32), "three")],
    )
    return _save(graph, path)
