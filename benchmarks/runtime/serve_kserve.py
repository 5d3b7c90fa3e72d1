"""KServe anchor: the ``kserve`` Python model server (v2 protocol) around one ORT session.

Run as ``python -m benchmarks.runtime.serve_kserve --model NAME=PATH --http-port P
--grpc-port Q``. KServe hard-codes the wildcard address; this wrapper binds loopback only.
KServe has no dynamic batcher in its Python server: each request is one ``session.run``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from benchmarks.runtime.models import INPUT_NAME, OUTPUT_NAME
from benchmarks.runtime.ort import make_session, parse_providers


def _bind_loopback() -> None:
    """Make KServe's uvicorn and gRPC servers listen on 127.0.0.1 instead of every address."""
    import grpc.aio
    import uvicorn

    class LoopbackConfig(uvicorn.Config):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["host"] = "127.0.0.1"
            super().__init__(*args, **kwargs)

    uvicorn.Config = LoopbackConfig  # type: ignore[misc]
    make_server = grpc.aio.server

    def loopback_server(*args: Any, **kwargs: Any) -> Any:
        server = make_server(*args, **kwargs)
        add_port = server.add_insecure_port
        server.add_insecure_port = lambda addr: add_port("127.0.0.1:" + addr.rsplit(":", 1)[1])
        return server

    grpc.aio.server = loopback_server


def build_model(name: str, path: str, providers: list[str] | None) -> Any:
    """Return a ready ``kserve.Model`` that runs the ONNX model at ``path``."""
    from kserve import InferOutput, InferRequest, InferResponse, Model

    class OrtModel(Model):  # type: ignore[misc]
        """One onnxruntime session behind KServe's v2 data plane."""

        def __init__(self) -> None:
            super().__init__(name)
            self.session = make_session(path, providers)
            self.ready = True

        async def predict(
            self,
            payload: InferRequest,
            headers: dict[str, str] | None = None,
            response_headers: dict[str, str] | None = None,
        ) -> InferResponse:
            x = payload.inputs[0].as_numpy()
            (y,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: x})
            output = InferOutput(name=OUTPUT_NAME, shape=list(y.shape), datatype="FP32")
            if payload.from_grpc:
                output.set_data_from_numpy(y, binary_data=True)
            else:
                output.data = y
            return InferResponse(
                response_id=payload.id or "",
                model_name=self.name,
                infer_outputs=[output],
                from_grpc=payload.from_grpc,
                use_binary_outputs=payload.use_binary_outputs,
                requested_outputs=payload.request_outputs,
            )

    return OrtModel()


def main(argv: list[str] | None = None) -> None:
    """Command line entry."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="NAME=PATH")
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--providers", default="")
    args, _ = parser.parse_known_args(argv)
    # KServe parses sys.argv when imported; leave it nothing of ours to misread.
    sys.argv = sys.argv[:1]
    _bind_loopback()
    from kserve import ModelServer

    name, _, path = args.model.partition("=")
    model = build_model(name, path, parse_providers(args.providers))
    server = ModelServer(
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        workers=1,
        enable_grpc=True,
        enable_latency_logging=False,
    )
    # Two log lines per request (timing trace, access log) cost the server CPU in every
    # cell and no other server writes them; keep warnings only. Set after ModelServer(),
    # which configures logging itself.
    for logger_name in ("kserve.trace", "uvicorn.access"):
        logging.getLogger(logger_name).setLevel(logging.WARNING)
    # Its gRPC interceptor logs every call at INFO on the main logger: drop just those lines.
    logging.getLogger("kserve").addFilter(
        lambda record: not str(record.msg).startswith("grpc method:")
    )
    server.start([model])


if __name__ == "__main__":
    main()
