"""Load with ``wrk`` (C, event loop): POST a v2 JSON infer request with a Lua script."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

from benchmarks.runtime.loadgen import CellResult
from benchmarks.runtime.models import INPUT_NAME, MODELS, OUTPUT_NAME, sample_input

SCRIPT = Path(__file__).with_name("post_infer.lua")


def wrk_available() -> bool:
    """True when the ``wrk`` binary is on PATH."""
    return shutil.which("wrk") is not None


def write_body(model: str, directory: Path, request_batch: int = 1) -> Path:
    """Write the v2 JSON infer request body for ``model`` and return its path."""
    spec = MODELS[model]
    data = sample_input(spec, request_batch)
    body = {
        "inputs": [
            {
                "name": INPUT_NAME,
                "shape": list(data.shape),
                "datatype": "FP32",
                "data": [round(float(v), 6) for v in data.ravel()],
            }
        ],
        "outputs": [{"name": OUTPUT_NAME}],
    }
    path = directory / f"body-{model}-{request_batch}.json"
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body))
    return path


def run_wrk(
    http_url: str,
    model: str,
    body_path: Path,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    threads: int = 2,
    cpu_probe: Callable[[], float | None] | None = None,
    script: Path = SCRIPT,
    script_env: Mapping[str, str] | None = None,
) -> CellResult:
    """Warm up, then run wrk with ``concurrency`` connections and parse its summary.

    ``script`` is the Lua script (one that prints post_infer.lua's summary line) and
    ``script_env`` the environment it reads besides the body file.
    """
    url = f"http://{http_url}/v2/models/{model}/infer"
    env_extra = {**(script_env or {}), "BENCH_BODY_FILE": str(body_path)}
    nthreads = max(1, min(threads, concurrency))
    base = [
        "wrk",
        "-t",
        str(nthreads),
        "-c",
        str(concurrency),
        "--timeout",
        "10s",
        "-s",
        str(script),
        "--latency",
    ]
    result = CellResult("wrk", concurrency, duration_s)
    if warmup_s > 0:
        _run([*base, "-d", f"{max(1, round(warmup_s))}s", url], env_extra, warmup_s + 30)
    cpu0 = cpu_probe() if cpu_probe else None
    out = _run([*base, "-d", f"{max(1, round(duration_s))}s", url], env_extra, duration_s + 30)
    cpu1 = cpu_probe() if cpu_probe else None
    line = next((ln for ln in out.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        result.errors = 1
        result.error_sample = out[-300:]
        return result
    summary = json.loads(line.removeprefix("WRK_JSON "))
    seconds = summary["duration_us"] / 1e6
    errors = summary["status_errors"] + summary["socket_errors"]
    result.duration_s = seconds
    result.requests = summary["requests"] - summary["status_errors"]
    result.errors = errors
    result.throughput = result.requests / seconds if seconds else 0.0
    if cpu0 is not None and cpu1 is not None and seconds:
        result.server_cpu_cores = (cpu1 - cpu0) / seconds
        if result.throughput:
            result.server_cpu_ms_per_req = 1e3 * result.server_cpu_cores / result.throughput
    if summary["requests"]:
        result.p50_ms = summary["p50_us"] / 1e3
        result.p99_ms = summary["p99_us"] / 1e3
        result.mean_ms = summary["mean_us"] / 1e3
    if errors:
        result.error_sample = (
            f"{summary['status_errors']} non-2xx, {summary['socket_errors']} socket"
        )
    return result


def _run(argv: list[str], env_extra: dict[str, str], timeout_s: float) -> str:
    import os

    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, **env_extra},
        check=False,
    )
    return done.stdout + done.stderr
