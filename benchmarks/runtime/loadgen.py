"""Closed-loop load generator on the ``tritonclient`` Python clients.

Run as its own process (``python -m benchmarks.runtime.loadgen ...``) so the client never
shares an interpreter with a server: N concurrent workers on one asyncio loop, each with its
own connection, each sending the next request when the previous answer arrives. Prints one
JSON object: completed requests, errors, throughput and latency percentiles over the
measured window (after the warm-up).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Protocol, cast

import numpy as np

from benchmarks.runtime.models import INPUT_NAME, MODELS, OUTPUT_NAME, sample_input

CLIENTS = ("http-json", "http-binary", "grpc")


@dataclass
class CellResult:
    """What one load generator run measured."""

    client: str
    concurrency: int
    duration_s: float
    requests: int = 0
    errors: int = 0
    throughput: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    error_sample: str = ""
    server_cpu_cores: float | None = None
    server_cpu_ms_per_req: float | None = None
    client_cpu_cores: float | None = None
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    def finish(self) -> CellResult:
        """Fill throughput and percentiles from the collected latencies."""
        self.requests = len(self.latencies_ms)
        self.throughput = self.requests / self.duration_s if self.duration_s else 0.0
        if self.latencies_ms:
            lat = np.asarray(self.latencies_ms)
            self.p50_ms = float(np.percentile(lat, 50))
            self.p99_ms = float(np.percentile(lat, 99))
            self.mean_ms = float(lat.mean())
        if self.server_cpu_cores is not None and self.throughput:
            self.server_cpu_ms_per_req = 1e3 * self.server_cpu_cores / self.throughput
        return self


# One request; None when the answer lacks the output tensor.
InferCall = Callable[[], Awaitable[np.ndarray | None]]


class AsyncClient(Protocol):
    """The part of a ``tritonclient`` asyncio client the workers need besides ``infer``."""

    async def close(self) -> None:
        """Close the client's connection."""


# A worker's client (closed at the end) and its request call.
Caller = tuple[AsyncClient, InferCall]


async def _http_caller(url: str, model: str, data: np.ndarray, binary: bool) -> Caller:
    """Return (client, call) for the HTTP client in JSON or binary-tensor mode."""
    import tritonclient.http as http
    import tritonclient.http.aio as http_aio

    client = http_aio.InferenceServerClient(url=url, conn_limit=1)
    infer_input = http.InferInput(INPUT_NAME, list(data.shape), "FP32")
    infer_input.set_data_from_numpy(data, binary_data=binary)
    outputs = [http.InferRequestedOutput(OUTPUT_NAME, binary_data=binary)]
    # Without this header KServe reads a JSON body as binary; other servers do not mind it.
    headers = None if binary else {"Content-Type": "application/json"}

    async def call() -> np.ndarray | None:
        result = await client.infer(model, [infer_input], outputs=outputs, headers=headers)
        return cast("np.ndarray | None", result.as_numpy(OUTPUT_NAME))

    return client, call


async def _grpc_caller(url: str, model: str, data: np.ndarray) -> Caller:
    """Return (client, call) for the gRPC client."""
    import tritonclient.grpc as grpc
    import tritonclient.grpc.aio as grpc_aio

    client = grpc_aio.InferenceServerClient(url=url)
    infer_input = grpc.InferInput(INPUT_NAME, list(data.shape), "FP32")
    infer_input.set_data_from_numpy(data)
    outputs = [grpc.InferRequestedOutput(OUTPUT_NAME)]

    async def call() -> np.ndarray | None:
        result = await client.infer(model, [infer_input], outputs=outputs)
        return cast("np.ndarray | None", result.as_numpy(OUTPUT_NAME))

    return client, call


async def _make_caller(
    client_kind: str, http_url: str, grpc_url: str, model: str, data: np.ndarray
) -> Caller:
    if client_kind == "grpc":
        return await _grpc_caller(grpc_url, model, data)
    return await _http_caller(http_url, model, data, binary=client_kind == "http-binary")


async def run_cell(
    client_kind: str,
    http_url: str,
    grpc_url: str,
    model: str,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    request_batch: int = 1,
    server_pgid: int | None = None,
) -> CellResult:
    """Drive ``concurrency`` closed-loop workers for ``warmup_s + duration_s`` seconds."""
    spec = MODELS[model]
    data = sample_input(spec, request_batch)
    result = CellResult(client_kind, concurrency, duration_s)
    callers: list[Caller] = []
    try:
        for _ in range(concurrency):
            callers.append(await _make_caller(client_kind, http_url, grpc_url, model, data))
        await _drive(callers, result, spec.out_features, request_batch, duration_s, warmup_s,
                     server_pgid)  # fmt: skip
    finally:
        for client, _ in callers:
            await client.close()
    return result.finish()


def describe(exc: BaseException) -> str:
    """A short one-line description of a client failure."""
    return f"{type(exc).__name__}: {exc}"[:300]


async def _drive(
    callers: list[Caller],
    result: CellResult,
    out_features: int,
    request_batch: int,
    duration_s: float,
    warmup_s: float,
    server_pgid: int | None = None,
) -> None:
    # One checked request first: a wrong answer must fail loudly, not count as throughput.
    out = await callers[0][1]()
    if out is None or tuple(out.shape) != (request_batch, out_features):
        raise RuntimeError(f"unexpected output {None if out is None else out.shape}")
    start = time.perf_counter() + warmup_s
    end = start + duration_s

    async def worker(call: InferCall) -> None:
        while True:
            t0 = time.perf_counter()
            if t0 >= end:
                return
            try:
                await call()
            except Exception as exc:
                if t0 >= start:
                    result.errors += 1
                    result.error_sample = result.error_sample or describe(exc)
                await asyncio.sleep(0.01)
                continue
            t1 = time.perf_counter()
            if t0 >= start and t1 <= end:
                result.latencies_ms.append((t1 - t0) * 1e3)

    async def cpu_window() -> None:
        """Server and client CPU over exactly the measured window."""
        await asyncio.sleep(max(0.0, start - time.perf_counter()))
        server0, client0 = _server_cpu(server_pgid), time.process_time()
        await asyncio.sleep(max(0.0, end - time.perf_counter()))
        server1, client1 = _server_cpu(server_pgid), time.process_time()
        result.client_cpu_cores = (client1 - client0) / duration_s
        if server0 is not None and server1 is not None:
            result.server_cpu_cores = (server1 - server0) / duration_s

    await asyncio.gather(cpu_window(), *(worker(call) for _, call in callers))


def _server_cpu(pgid: int | None) -> float | None:
    if pgid is None:
        return None
    from benchmarks.runtime.cpu import group_cpu_seconds

    return group_cpu_seconds(pgid)


def main(argv: list[str] | None = None) -> int:
    """Command line entry: run one cell and print its result as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--client", choices=CLIENTS, required=True)
    parser.add_argument("--http-url", default="127.0.0.1:8000", help="host:port")
    parser.add_argument("--grpc-url", default="127.0.0.1:8001", help="host:port")
    parser.add_argument("--model", choices=sorted(MODELS), required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--request-batch", type=int, default=1)
    parser.add_argument("--server-pgid", type=int, help="measure this process group's CPU")
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        result = asyncio.run(
            run_cell(
                args.client,
                args.http_url,
                args.grpc_url,
                args.model,
                args.concurrency,
                args.duration,
                args.warmup,
                args.request_batch,
                args.server_pgid,
            )
        )
    except Exception as exc:
        result = CellResult(
            args.client, args.concurrency, args.duration, errors=1, error_sample=describe(exc)
        )
    payload = asdict(result)
    payload.pop("latencies_ms")
    json.dump(payload, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
