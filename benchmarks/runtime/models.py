"""Benchmark models, built with the ``onnx`` helper API at run time.

Every model has one float32 input named ``input`` with a dynamic batch dimension and one
float32 output named ``output``, so each server and load generator addresses them alike.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from onnx import GraphProto

INPUT_NAME = "input"
OUTPUT_NAME = "output"


@dataclass(frozen=True)
class ModelSpec:
    """A benchmark model: its name, feature widths and hidden layer widths."""

    name: str
    in_features: int
    out_features: int
    hidden: tuple[int, ...]
    description: str

    @property
    def is_identity_like(self) -> bool:
        """True for the tiny model (one Add, no layers)."""
        return not self.hidden and self.in_features == self.out_features


MODELS: dict[str, ModelSpec] = {
    "mlp": ModelSpec("mlp", 256, 16, (1024, 1024, 1024), "MLP 256 -> 3 x 1024 -> 16, ReLU"),
    "tiny": ModelSpec("tiny", 4, 4, (), "single Add on a [-1, 4] input"),
    "wide": ModelSpec("wide", 4096, 4096, (8192,) * 4, "wide MLP 4096 -> 4 x 8192 -> 4096"),
}


def _mlp_graph(spec: ModelSpec, seed: int) -> GraphProto:
    """Return the ONNX graph of an MLP: MatMul + Add per layer, ReLU between layers."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    widths = [spec.in_features, *spec.hidden, spec.out_features]
    nodes, inits = [], []
    current = INPUT_NAME
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
        weight = (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32)
        bias = np.zeros(fan_out, dtype=np.float32)
        inits += [numpy_helper.from_array(weight, f"w{i}"), numpy_helper.from_array(bias, f"b{i}")]
        last = i == len(widths) - 2
        matmul, added = f"mm{i}", OUTPUT_NAME if last else f"add{i}"
        nodes.append(helper.make_node("MatMul", [current, f"w{i}"], [matmul]))
        nodes.append(helper.make_node("Add", [matmul, f"b{i}"], [added]))
        current = added
        if not last:
            nodes.append(helper.make_node("Relu", [added], [f"relu{i}"]))
            current = f"relu{i}"
    x = helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", spec.in_features])
    y = helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", spec.out_features])
    return helper.make_graph(nodes, spec.name, [x], [y], inits)


def _tiny_graph(spec: ModelSpec) -> GraphProto:
    """Return the ONNX graph of ``output = input + 1``."""
    from onnx import TensorProto, helper, numpy_helper

    one = numpy_helper.from_array(np.ones(spec.in_features, dtype=np.float32), "one")
    node = helper.make_node("Add", [INPUT_NAME, "one"], [OUTPUT_NAME])
    x = helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", spec.in_features])
    y = helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", spec.out_features])
    return helper.make_graph([node], spec.name, [x], [y], [one])


def build_model(spec: ModelSpec, directory: Path, seed: int = 0) -> Path:
    """Write ``spec`` as ``<directory>/<name>.onnx`` (reusing an existing file) and return it."""
    import onnx
    from onnx import helper

    path = directory / f"{spec.name}.onnx"
    if path.exists():
        return path
    directory.mkdir(parents=True, exist_ok=True)
    graph = _tiny_graph(spec) if spec.is_identity_like else _mlp_graph(spec, seed)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    tmp = path.with_suffix(".onnx.tmp")
    onnx.save_model(model, str(tmp))
    tmp.rename(path)
    return path


def sample_input(spec: ModelSpec, batch: int = 1, seed: int = 1) -> np.ndarray:
    """Return a deterministic float32 input of shape ``[batch, in_features]``."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, spec.in_features)).astype(np.float32)
