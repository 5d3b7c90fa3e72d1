"""Real ONNX models the project builds, for the runtime's tests and for the pods the local
cluster serves.

The models are small but real: onnx graphs checked by ``onnx.checker`` and run by
onnxruntime exactly as a user's model is. Weights come from a seeded generator, so one seed
always gives the same model, and two seeds give two versions whose answers differ (what a
rollout test needs to tell them apart).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 17)]


def save(graph: onnx.GraphProto, path: Path) -> Path:
    """Write ``graph`` as a checked model file at ``path``."""
    model = helper.make_model(graph, opset_imports=OPSET)
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def build_mlp(
    path: Path, sizes: tuple[int, ...] = (256, 1024, 1024, 1024, 16), *, seed: int = 7
) -> Path:
    """An MLP (Gemm + Relu layers) over FP32 input [batch, sizes[0]], output [batch, sizes[-1]]."""
    rng = np.random.default_rng(seed)
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
    return save(graph, path)


def build_faulty(path: Path, sizes: tuple[int, int] = (16, 4)) -> Path:
    """A model with the sample MLP's signature (FP32 [batch, sizes[0]] in, [batch, sizes[1]]
    out) that answers all-zero inputs, so it loads and warms up like any other, and fails at
    run time on any other input: a regression that only real traffic shows."""
    n_in, n_out = sizes
    flag = [
        helper.make_node("Abs", ["input"], ["abs"]),
        helper.make_node("ReduceMax", ["abs"], ["peak"], keepdims=0),
        helper.make_node("Greater", ["peak", "zero"], ["nonzero"]),
        helper.make_node("Cast", ["nonzero"], ["extra"], to=TensorProto.INT64),
    ]
    # Reshape [batch, n_out] to [batch, n_out + extra]: impossible whenever extra is 1.
    shape = [
        helper.make_node("Shape", ["input"], ["in_shape"], start=0, end=1),
        helper.make_node("Add", ["width", "extra"], ["wide"]),
        helper.make_node("Unsqueeze", ["wide", "axis0"], ["wide1"]),
        helper.make_node("Concat", ["in_shape", "wide1"], ["target"], axis=0),
    ]
    body = [
        helper.make_node("Slice", ["input", "starts", "ends", "axes"], ["cut"]),
        helper.make_node("Reshape", ["cut", "target"], ["output"]),
    ]
    inits = [
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
        numpy_helper.from_array(np.array(n_out, dtype=np.int64), "width"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "axis0"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "starts"),
        numpy_helper.from_array(np.array([n_out], dtype=np.int64), "ends"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
    ]
    graph = helper.make_graph(
        [*flag, *shape, *body],
        "faulty",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", n_in])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", n_out])],
        inits,
    )
    return save(graph, path)


def build_slow(path: Path, sizes: tuple[int, int] = (16, 4), *, rounds: int = 6000) -> Path:
    """A model with the sample MLP's signature whose every run takes long: ``rounds``
    dependent 256 x 256 matrix products (about 0.7 s on one core of a current server CPU) on
    a state seeded from the input, so nothing can be folded away at load, added to its answer
    times zero. A canary slower than its latency bound, whatever the batching does."""
    n_in, n_out = sizes
    width = 256
    rng = np.random.default_rng(3)
    weight = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
    body = helper.make_graph(
        [
            helper.make_node("MatMul", ["state_in", "w"], ["product"]),
            helper.make_node("Tanh", ["product"], ["state_out"]),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        "round",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("state_in", TensorProto.FLOAT, [width, width]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("state_out", TensorProto.FLOAT, [width, width]),
        ],
        [numpy_helper.from_array(weight, "w")],
    )
    nodes = [
        helper.make_node("ReduceSum", ["input"], ["total"], keepdims=0),
        helper.make_node("Expand", ["total", "square"], ["seed"]),
        helper.make_node("Loop", ["rounds", "true", "seed"], ["state"], body=body),
        helper.make_node("ReduceSum", ["state"], ["spent"], keepdims=0),
        helper.make_node("Mul", ["spent", "zero"], ["nothing"]),
        helper.make_node("Slice", ["input", "starts", "ends", "axes"], ["cut"]),
        helper.make_node("Add", ["cut", "nothing"], ["output"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([width, width], dtype=np.int64), "square"),
        numpy_helper.from_array(np.array(rounds, dtype=np.int64), "rounds"),
        numpy_helper.from_array(np.array(True), "true"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "starts"),
        numpy_helper.from_array(np.array([n_out], dtype=np.int64), "ends"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
    ]
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", n_in])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", n_out])],
        inits,
    )
    return save(graph, path)
