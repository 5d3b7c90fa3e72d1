"""One loaded ONNX model: its onnxruntime session, its tensor signature and its metadata.

The data plane owns ``Model`` objects; the batcher calls ``Model.run``. Everything a request
needs to be validated (names, datatypes, fixed dims) is computed here once at load time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from sluice.runtime.datatypes import NUMPY_DTYPES, ONNX_TO_DATATYPE

VERSION = "1"
PLATFORM = "onnxruntime_onnx"


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A model input or output: name, protocol datatype, and shape with -1 for dynamic dims."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    @property
    def dtype(self) -> np.dtype[Any]:
        """The numpy dtype that carries this tensor."""
        return NUMPY_DTYPES[self.datatype]

    def metadata(self) -> dict[str, Any]:
        """The tensor's entry in v2 model metadata."""
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def resolve_model_file(path: Path) -> Path:
    """Return the .onnx file for ``path``: the file itself, or ``model.onnx`` inside a folder."""
    candidate = path / "model.onnx" if path.is_dir() else path
    if not candidate.is_file():
        raise FileNotFoundError(f"no ONNX model at {candidate}")
    return candidate


def _spec(arg: Any) -> TensorSpec:
    datatype = ONNX_TO_DATATYPE.get(arg.type)
    if datatype is None:
        raise ValueError(f"tensor {arg.name!r} has unsupported type {arg.type}")
    shape = tuple(dim if isinstance(dim, int) and dim >= 0 else -1 for dim in arg.shape)
    return TensorSpec(name=arg.name, datatype=datatype, shape=shape)


class Model:
    """An onnxruntime session plus what the server needs to know about it.

    ``batchable`` is true when every input and output has a dynamic first dimension, so
    requests can be concatenated along dim 0 and the outputs split back.
    """

    def __init__(self, name: str, path: Path, providers: list[str]) -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Leave one core to the event loop that parses and answers requests (measured on two
        # cores: more compute threads than that slowed the whole server down).
        options.intra_op_num_threads = max(1, len(os.sched_getaffinity(0)) - 1)
        # Spinning worker threads would take the cores the event loop needs between batches.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.name = name
        self.session = ort.InferenceSession(
            str(resolve_model_file(path)), sess_options=options, providers=providers
        )
        self.provider: str = self.session.get_providers()[0]
        # A failed run raises, and the server logs that with its traceback and request id;
        # onnxruntime's own copy of the error would be a second, unstructured stderr line.
        self._run_options = ort.RunOptions()
        self._run_options.log_severity_level = 4  # fatal only
        self.inputs: tuple[TensorSpec, ...] = tuple(_spec(a) for a in self.session.get_inputs())
        self.outputs: tuple[TensorSpec, ...] = tuple(_spec(a) for a in self.session.get_outputs())
        self.input_by_name = {spec.name: spec for spec in self.inputs}
        self.output_names: tuple[str, ...] = tuple(spec.name for spec in self.outputs)
        self.batchable = all(
            len(spec.shape) > 0 and spec.shape[0] == -1 for spec in self.inputs + self.outputs
        )
        self.metadata: dict[str, Any] = {
            "name": name,
            "versions": [VERSION],
            "platform": PLATFORM,
            "inputs": [spec.metadata() for spec in self.inputs],
            "outputs": [spec.metadata() for spec in self.outputs],
            "parameters": {"execution_provider": self.provider, "batchable": self.batchable},
        }

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run the session (in the caller's thread; onnxruntime releases the GIL)."""
        outputs: list[np.ndarray] = self.session.run(self.output_names, inputs, self._run_options)
        return outputs

    def warm_up(self) -> None:
        """Run one inference on synthesized inputs (dynamic dims = 1) so the first client
        request does not pay for lazy initialisation."""
        self.run({spec.name: synthesize(spec) for spec in self.inputs})


def synthesize(spec: TensorSpec) -> np.ndarray:
    """A zero-filled tensor matching ``spec`` with every dynamic dim set to 1."""
    shape = tuple(1 if dim < 0 else dim for dim in spec.shape)
    if spec.datatype == "BYTES":
        array = np.empty(shape, dtype=object)
        array.fill(b"")
        return array
    return np.zeros(shape, dtype=spec.dtype)
