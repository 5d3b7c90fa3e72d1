"""Single inference requests that say which variant answered, for the traffic-split tests.

The router names the variant that answered in the ``x-sluice-variant`` response header (gRPC:
initial metadata). ``Asker`` sends one Open Inference Protocol request at a time, with the
headers (or gRPC metadata) a test chooses, over a fresh HTTP connection each (so Envoy's
choice is per request, as it is for many clients) or one gRPC channel, and returns the
variant with the answer.
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from collections.abc import Mapping

import grpc
import numpy as np
from sluice.contracts.routes import VARIANT_HEADER
from tritonclient.grpc import service_pb2, service_pb2_grpc

from e2e.inference import INPUT, OUTPUT

DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def ask_http(
    address: str, model: str, batch: np.ndarray, headers: Mapping[str, str] | None = None
) -> tuple[str, np.ndarray]:
    """(variant, output) of one JSON inference request to ``address`` (host:port)."""
    body = {
        "inputs": [
            {
                "name": INPUT,
                "shape": list(batch.shape),
                "datatype": "FP32",
                "data": batch.ravel().tolist(),
            }
        ]
    }
    request = urllib.request.Request(
        f"http://{address}/v2/models/{model}/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    with DIRECT.open(request, timeout=10) as response:
        answer = json.loads(response.read())
        variant = response.headers.get(VARIANT_HEADER, "")
    (output,) = [o for o in answer["outputs"] if o["name"] == OUTPUT]
    return variant, np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])


class GrpcAsker:
    """One gRPC channel to ``address``; ``ask`` returns the variant from the initial
    metadata with the output."""

    def __init__(self, address: str, model: str) -> None:
        self.model = model
        self._channel = grpc.insecure_channel(address, options=[("grpc.enable_http_proxy", 0)])
        self._stub = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)

    def ask(
        self, batch: np.ndarray, metadata: Mapping[str, str] | None = None
    ) -> tuple[str, np.ndarray]:
        request = service_pb2.ModelInferRequest(model_name=self.model)
        tensor = request.inputs.add()
        tensor.name = INPUT
        tensor.datatype = "FP32"
        tensor.shape.extend(batch.shape)
        request.raw_input_contents.append(batch.astype(np.float32).tobytes())
        response, call = self._stub.ModelInfer.with_call(
            request, metadata=tuple((metadata or {}).items()), timeout=10
        )
        variant = dict(call.initial_metadata()).get(VARIANT_HEADER, "")
        (index,) = [i for i, o in enumerate(response.outputs) if o.name == OUTPUT]
        shape = tuple(response.outputs[index].shape)
        data = np.frombuffer(response.raw_output_contents[index], dtype=np.float32)
        return str(variant), data.reshape(shape)

    def close(self) -> None:
        self._channel.close()


def split(address: str, model: str, batch: np.ndarray, count: int) -> Counter[str]:
    """How ``count`` HTTP requests with no routing header were split between variants."""
    return Counter(ask_http(address, model, batch)[0] for _ in range(count))
