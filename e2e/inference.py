"""Inference requests to a served model with NVIDIA's tritonclient, over the Open Inference
Protocol (KServe v2) on HTTP (JSON or binary tensors) and gRPC, as users send them; and the
answer onnxruntime gives for the same model file, to compare against.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

INPUT = "input"
OUTPUT = "output"


def sample_input(rows: int, features: int, seed: int = 0) -> np.ndarray:
    """A deterministic FP32 batch of ``rows`` x ``features``."""
    return np.random.default_rng(seed).standard_normal((rows, features)).astype(np.float32)


def expected(model_file: Path, batch: np.ndarray) -> np.ndarray:
    """What onnxruntime on the CPU answers for ``batch``."""
    session = onnxruntime.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    result: np.ndarray = session.run([OUTPUT], {INPUT: batch})[0]
    return result


class HttpModel:
    """One model behind an HTTP address (host:port), binary or JSON tensors both ways; the
    connection is kept between requests, as a client in production keeps it."""

    def __init__(self, address: str, model: str, *, binary: bool = True, timeout: float = 10):
        self.model = model
        self.binary = binary
        self._client = httpclient.InferenceServerClient(
            address, connection_timeout=timeout, network_timeout=timeout
        )

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """The model's output for ``batch``; raises on any error answer."""
        tensor = httpclient.InferInput(INPUT, list(batch.shape), "FP32")
        tensor.set_data_from_numpy(batch, binary_data=self.binary)
        output = httpclient.InferRequestedOutput(OUTPUT, binary_data=self.binary)
        result = self._client.infer(self.model, [tensor], outputs=[output])
        answer: np.ndarray = result.as_numpy(OUTPUT)
        return answer

    def close(self) -> None:
        """Close the connection."""
        self._client.close()


class GrpcModel:
    """One model behind a gRPC address (host:port), on one channel."""

    def __init__(self, address: str, model: str, *, timeout: float = 10):
        self.model = model
        self.timeout = timeout
        # Straight to the cluster's address, whatever proxy the environment names.
        self._client = grpcclient.InferenceServerClient(
            address, channel_args=[("grpc.enable_http_proxy", 0)]
        )

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """The model's output for ``batch``; raises on any error answer."""
        tensor = grpcclient.InferInput(INPUT, list(batch.shape), "FP32")
        tensor.set_data_from_numpy(batch)
        result = self._client.infer(self.model, [tensor], client_timeout=self.timeout)
        answer: np.ndarray = result.as_numpy(OUTPUT)
        return answer

    def close(self) -> None:
        """Close the channel."""
        self._client.close()
