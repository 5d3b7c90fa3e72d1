"""Real ONNX models for the runtime tests, built with the onnx helper API."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper
from sluice.runtime.model import Model

from e2e.models import save


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
    return save(graph, path)


def build_fixed(path: Path) -> Path:
    """Input x FP32 [2, 3] with a fixed first dim (never batched); output y = relu(x)."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    return save(graph, path)


def build_sequence(path: Path) -> Path:
    """Input x FP32 [batch, length] (both dynamic); output y = 3x, same shape."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "three"], ["y"])],
        "sequence",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "length"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "length"])],
        [numpy_helper.from_array(np.array(3.0, dtype=np.float32), "three")],
    )
    return save(graph, path)


def build_broadcast(path: Path) -> Path:
    """Inputs a and b FP32 [2, n] with independent n (never batched); output a + b. It loads,
    warms up and serves equal widths, and fails inside onnxruntime on unequal ones: a real
    internal error for the server to report."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"])],
        "broadcast",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, "n"]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [2, "m"]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, "k"])],
    )
    return save(graph, path)


def build_slow(path: Path, *, base_iterations: int = 0, size: int = 256) -> Path:
    """Input n INT64 [1] (never batched); output y FP32 [1, 1]. One run multiplies a
    ``size`` x ``size`` matrix by a weight matrix n + ``base_iterations`` times (a Loop), so a
    request chooses how long the worker stays busy, and ``base_iterations`` makes even the
    warm-up (n = 0) take a while: real compute, with no sleeping anywhere."""
    rng = np.random.default_rng(11)
    weight = (rng.standard_normal((size, size)) / np.sqrt(size)).astype(np.float32)
    matrix = helper.make_tensor_value_info
    body = helper.make_graph(
        [
            helper.make_node("MatMul", ["state_in", "weight"], ["product"]),
            helper.make_node("Tanh", ["product"], ["state_out"]),  # keeps values bounded
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        "step",
        [
            matrix("i", TensorProto.INT64, []),
            matrix("cond_in", TensorProto.BOOL, []),
            matrix("state_in", TensorProto.FLOAT, [size, size]),
        ],
        [
            matrix("cond_out", TensorProto.BOOL, []),
            matrix("state_out", TensorProto.FLOAT, [size, size]),
        ],
    )
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["n", "base"], ["count"]),
            helper.make_node("Squeeze", ["count"], ["trips"]),
            helper.make_node("Loop", ["trips", "true", "start"], ["state"], body=body),
            helper.make_node("ReduceSum", ["state"], ["y"], keepdims=1),
        ],
        "slow",
        [matrix("n", TensorProto.INT64, [1])],
        [matrix("y", TensorProto.FLOAT, [1, 1])],
        [
            numpy_helper.from_array(weight, "weight"),
            numpy_helper.from_array(np.array([base_iterations], dtype=np.int64), "base"),
            numpy_helper.from_array(np.array(True), "true"),
            numpy_helper.from_array(np.eye(size, dtype=np.float32), "start"),
        ],
    )
    return save(graph, path)


def iterations_lasting(path: Path, seconds: float) -> int:
    """How many iterations make one run of the ``build_slow`` model at ``path`` last at least
    about ``seconds`` here, measured with the runtime's own session settings. The fastest of
    a few short runs sets the rate, so a busy machine only makes the run last longer."""
    model = Model("slow", path, ["CPUExecutionProvider"])
    probe = 50
    fastest = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        model.run({"n": np.array([probe], dtype=np.int64)})
        fastest = min(fastest, time.perf_counter() - started)
    return max(probe, math.ceil(seconds / fastest * probe))
