"""PyTriton anchor: the bundled Triton server, dynamic batching on, around one ORT session.

Run as ``python -m benchmarks.runtime.serve_pytriton --model NAME=PATH --http-port P
--grpc-port Q``; it serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import numpy as np

from benchmarks.runtime.models import INPUT_NAME, MODELS, OUTPUT_NAME
from benchmarks.runtime.ort import make_session, parse_providers


def serve(name: str, path: str, args: argparse.Namespace) -> None:
    """Bind ``name`` to a batched onnxruntime call and serve it on loopback."""
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    spec = MODELS[name]
    session = make_session(path, parse_providers(args.providers))

    @batch  # type: ignore[untyped-decorator]
    def infer(**inputs: np.ndarray) -> dict[str, Any]:
        (out,) = session.run([OUTPUT_NAME], {INPUT_NAME: inputs[INPUT_NAME]})
        return {OUTPUT_NAME: out}

    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=args.http_port,
        grpc_address="127.0.0.1",
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        metrics_address="127.0.0.1",
    )
    with Triton(config=config) as triton:
        triton.bind(
            model_name=name,
            infer_func=infer,
            inputs=[Tensor(name=INPUT_NAME, dtype=np.float32, shape=(spec.in_features,))],
            outputs=[Tensor(name=OUTPUT_NAME, dtype=np.float32, shape=(spec.out_features,))],
            config=ModelConfig(
                max_batch_size=args.max_batch_size,
                batcher=DynamicBatcher(max_queue_delay_microseconds=args.max_queue_delay_us),
            ),
            strict=False,
        )
        triton.serve()


def main(argv: list[str] | None = None) -> None:
    """Command line entry."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="NAME=PATH")
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-queue-delay-us", type=int, default=2000)
    parser.add_argument("--providers", default="")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    name, _, path = args.model.partition("=")
    serve(name, path, args)


if __name__ == "__main__":
    main()
