"""The benchmark run: raw onnxruntime first, then every server, cell by cell, side by side.

For each model, all selected servers are started together (each on its own loopback ports)
and the cells are interleaved: for every (concurrency, client) the servers are measured one
after another, so slow drifts of a shared machine's load hit them alike. Every server is
stopped by its PID at the end, whatever happened.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.runtime import machine
from benchmarks.runtime.cpu import group_cpu_seconds
from benchmarks.runtime.models import MODELS, build_model
from benchmarks.runtime.ort import bench_raw, parse_providers, raw_to_dict
from benchmarks.runtime.results import Results, render_markdown
from benchmarks.runtime.servers import Running, ServerOptions, start_server
from benchmarks.runtime.wrk import run_wrk, write_body, wrk_available

REPO = Path(__file__).resolve().parents[2]


@dataclass
class RunConfig:
    """What to measure and for how long."""

    servers: list[str]
    models: list[str]
    concurrencies: list[int]
    clients: list[str]
    duration_s: float = 5.0
    warmup_s: float = 1.0
    repeats: int = 1
    raw_batches: list[int] = field(default_factory=lambda: [1, 32])
    request_batch: int = 1
    out_dir: Path = REPO / "benchmarks" / "runtime" / "results"
    work_dir: Path = REPO / "benchmarks" / "runtime" / "results" / "work"
    server_options: ServerOptions = field(default_factory=ServerOptions)
    command: str = ""


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_client(config: RunConfig, running: Running, model: str, client: str, conc: int,
               body: Path) -> dict[str, Any]:  # fmt: skip
    """Measure one cell with one client; return the cell result as a dictionary."""
    if client == "wrk":
        pgid = running.proc.pid
        result = run_wrk(running.http_url, model, body, conc, config.duration_s, config.warmup_s,
                         cpu_probe=lambda: group_cpu_seconds(pgid))  # fmt: skip
        return {k: v for k, v in vars(result).items() if k != "latencies_ms"}
    argv = [
        sys.executable, "-m", "benchmarks.runtime.loadgen",
        "--client", client, "--model", model,
        "--http-url", running.http_url, "--grpc-url", running.grpc_url,
        "--concurrency", str(conc), "--duration", str(config.duration_s),
        "--warmup", str(config.warmup_s), "--request-batch", str(config.request_batch),
        "--server-pgid", str(running.proc.pid),
    ]  # fmt: skip
    timeout = config.duration_s + config.warmup_s + 120
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          check=False)  # fmt: skip
    try:
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))
    except (json.JSONDecodeError, IndexError):
        return {"client": client, "requests": 0, "errors": 1,
                "error_sample": (done.stderr or done.stdout)[-300:]}  # fmt: skip


def _raw(config: RunConfig, model: str, path: Path, results: Results) -> None:
    providers = parse_providers(config.server_options.providers)
    for batch in config.raw_batches:
        raw = bench_raw(model, path, batch, config.duration_s, config.warmup_s, providers,
                        spinning=config.server_options.anchor_spinning)  # fmt: skip
        results.raw.append(raw_to_dict(raw))
        _log(f"raw onnxruntime {model} batch {batch}: {raw.inferences_per_s:,.0f} inferences/s")


def _start_all(config: RunConfig, model: str, path: Path, results: Results) -> list[Running]:
    running = []
    for server in config.servers:
        _log(f"starting {server} for {model}")
        try:
            running.append(start_server(server, model, path, config.server_options,
                                        config.work_dir / "logs"))  # fmt: skip
        except (RuntimeError, TimeoutError, OSError) as exc:
            results.failures.append({"what": f"start {server} {model}", "error": str(exc)[-800:]})
            _log(f"  {server} failed to start: {str(exc)[-400:]}")
    return running


def _bench_model(config: RunConfig, model: str, results: Results) -> None:
    path = build_model(MODELS[model], config.work_dir / "models")
    if config.raw_batches:
        _raw(config, model, path, results)
    body = write_body(model, config.work_dir, config.request_batch)
    running = _start_all(config, model, path, results)
    try:
        for _ in range(config.repeats):
            for conc in config.concurrencies:
                for client in config.clients:
                    for server in running:
                        sample = run_client(config, server, model, client, conc, body)
                        results.add((model, server.name, conc, client), sample)
                        _log(
                            f"{model} c={conc:<3} {client:<11} {server.name:<8} "
                            f"{sample.get('throughput', 0):>9,.0f} req/s  "
                            f"p50 {sample.get('p50_ms') or 0:7.1f} ms  "
                            f"p99 {sample.get('p99_ms') or 0:7.1f} ms  "
                            f"cpu {sample.get('server_cpu_cores') or 0:4.2f} cores "
                            f"{sample.get('server_cpu_ms_per_req') or 0:6.2f} ms/req  "
                            f"errors {sample.get('errors', 0)} {sample.get('error_sample', '')}"
                        )
                        if not server.proc.alive():
                            raise RuntimeError(f"{server.name} died:\n{server.proc.log_tail()}")
    finally:
        for server in running:
            server.stop()


def run(config: RunConfig) -> tuple[Results, Path, Path]:
    """Run the benchmark; return the results and the JSON and markdown files written."""
    if "wrk" in config.clients and not wrk_available():
        _log("wrk is not installed: skipping the wrk client (see `setup`)")
        config.clients = [c for c in config.clients if c != "wrk"]
    results = Results()
    results.meta = {
        "command": config.command,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine.describe_machine(),
        "load_before": machine.load_average(),
        "versions": machine.versions(REPO),
        "duration_s": config.duration_s,
        "warmup_s": config.warmup_s,
        "repeats": config.repeats,
        "request_batch": config.request_batch,
        "servers": config.servers,
        "server_options": vars(config.server_options),
        "python": sys.version.split()[0],
    }
    for model in config.models:
        try:
            _bench_model(config, model, results)
        except (RuntimeError, subprocess.SubprocessError) as exc:
            results.failures.append({"what": f"model {model}", "error": str(exc)[-800:]})
            _log(f"{model}: {exc}")
    results.meta["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    results.meta["load_after"] = machine.load_average()
    # The editable install serves whatever runtime/ holds when each server starts.
    results.meta["versions_after"] = machine.versions(REPO)
    return (results, *_write(config, results))


def _write(config: RunConfig, results: Results) -> tuple[Path, Path]:
    config.out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    json_path = config.out_dir / f"runtime-{stamp}.json"
    md_path = config.out_dir / f"runtime-{stamp}.md"
    json_path.write_text(json.dumps(results.to_dict(), indent=2))
    md_path.write_text(render_markdown(results, config.servers, config.models))
    return json_path, md_path
