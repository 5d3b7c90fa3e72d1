"""The router benchmark run: direct calls, then each proxy, side by side, round by round.

Two sluice-runtime backends serve the tiny model; each proxy splits 90/10 between them and
is pinned to one CPU, while the backends, wrk and this process share the others. Each round
measures, for every target in turn (direct first), a paced run near ``rate`` requests per
second (latency) and an unpaced run with many connections (throughput and CPU per request),
so that drifts of a shared machine's load hit all targets alike. Then sluice-router's weight
changes are timed. Every process is stopped by its PID at the end, whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.router import weight_change
from benchmarks.router.proxies import (
    Target,
    proxy_versions,
    routes_file,
    start_backends,
    start_proxy,
)
from benchmarks.router.report import DIRECT, MODEL, RouterResults, render_markdown
from benchmarks.runtime import machine
from benchmarks.runtime.models import MODELS, build_model
from benchmarks.runtime.wrk import SCRIPT, run_wrk, write_body

REPO = Path(__file__).resolve().parents[2]
PACED_SCRIPT = Path(__file__).with_name("paced_infer.lua")


@dataclass
class RunConfig:
    """What to measure and for how long."""

    proxies: list[str]
    duration_s: float = 5.0
    warmup_s: float = 1.0
    repeats: int = 3
    rate: int = 1000
    paced_connections: int = 16
    max_connections: int = 64
    changes: int = 5
    proxy_cpu: int = 0
    out_dir: Path = REPO / "benchmarks" / "router" / "results"
    work_dir: Path = REPO / "benchmarks" / "router" / "results" / "work"
    command: str = ""


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _pinned_away_from(cpu: int) -> Iterator[int | None]:
    """Keep this process, and so the backends and wrk it starts, off ``cpu``; yield the CPU
    left to the proxies (None on a one-CPU machine, where nothing is pinned)."""
    allowed = os.sched_getaffinity(0)
    rest = allowed - {cpu}
    if cpu not in allowed or not rest:
        _log(f"cannot give CPU {cpu} to the proxies alone (allowed: {sorted(allowed)})")
        yield None
        return
    os.sched_setaffinity(0, rest)
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, allowed)


def _measure(config: RunConfig, target: Target, body: Path, paced: bool) -> dict[str, Any]:
    """One wrk run against ``target``: paced near ``config.rate`` or flat out."""
    connections = config.paced_connections if paced else config.max_connections
    script_env = {}
    if paced:
        delay_ms = round(connections * 1000 / config.rate)
        script_env = {"BENCH_POST_SCRIPT": str(SCRIPT), "BENCH_DELAY_MS": str(delay_ms)}
    result = run_wrk(
        target.address, MODEL, body, connections, config.duration_s, config.warmup_s,
        cpu_probe=target.cpu_seconds, script=PACED_SCRIPT if paced else SCRIPT,
        script_env=script_env,
    )  # fmt: skip
    return {k: v for k, v in vars(result).items() if k != "latencies_ms"}


def _rounds(config: RunConfig, targets: list[Target], body: Path, results: RouterResults) -> None:
    for round_ in range(config.repeats):
        for paced in (True, False):
            for target in targets:
                sample = _measure(config, target, body, paced)
                connections = config.paced_connections if paced else config.max_connections
                results.cells.add((MODEL, target.name, connections, _kind(paced)), sample)
                _log(
                    f"round {round_ + 1} {_kind(paced):<5} {target.name:<13} "
                    f"{sample['throughput']:>8,.0f} req/s  p50 {sample['p50_ms'] or 0:6.2f} ms  "
                    f"p99 {sample['p99_ms'] or 0:6.2f} ms  proxy "
                    f"{sample['server_cpu_cores'] or 0:4.2f} cores "
                    f"{1e3 * (sample['server_cpu_ms_per_req'] or 0):5.0f} us/req  "
                    f"errors {sample['errors']} {sample['error_sample']}"
                )
                if not target.alive():
                    raise RuntimeError(f"{target.name} died: {target.procs[0].log_tail()}")


def _kind(paced: bool) -> str:
    return "paced" if paced else "max"


def _bench(config: RunConfig, results: RouterResults, proxy_cpu: int | None) -> None:
    path = build_model(MODELS[MODEL], config.work_dir / "models")
    body = write_body(MODEL, config.work_dir)
    backends = start_backends(MODEL, path, config.work_dir / "logs")
    upstreams = [upstream for upstream, _ in backends]
    targets = [Target(DIRECT, upstreams[0].http_port)]
    try:
        for name in config.proxies:
            _log(f"starting {name}")
            try:
                targets.append(start_proxy(name, upstreams, proxy_cpu, config.work_dir))
            except (RuntimeError, TimeoutError, OSError) as exc:
                results.cells.failures.append({"what": f"start {name}", "error": str(exc)[-800:]})
                _log(f"  {name} failed to start: {str(exc)[-400:]}")
        _rounds(config, targets, body, results)
        router = next((t for t in targets if t.name == "sluice-router"), None)
        if router is not None and config.changes:
            results.weight_change_s = weight_change.measure(
                router.port, routes_file(config.work_dir), upstreams,
                f"/v2/models/{MODEL}/infer", body.read_bytes(), config.changes,
            )  # fmt: skip
            _log("weight changes in effect after " +
                 ", ".join(f"{s * 1e3:.0f} ms" for s in results.weight_change_s))  # fmt: skip
    finally:
        for target in targets:
            target.stop()
        for _, running in backends:
            running.stop()


def run(config: RunConfig) -> tuple[RouterResults, Path, Path]:
    """Run the benchmark; return the results and the JSON and markdown files written."""
    results = RouterResults()
    results.cells.meta = {
        "command": config.command,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine.describe_machine(),
        "load_before": machine.load_average(),
        "versions": machine.versions(REPO),
        "proxies": proxy_versions(),
        "duration_s": config.duration_s,
        "warmup_s": config.warmup_s,
        "repeats": config.repeats,
        "rate": config.rate,
        "paced_connections": config.paced_connections,
        "max_connections": config.max_connections,
        "python": sys.version.split()[0],
    }
    with _pinned_away_from(config.proxy_cpu) as proxy_cpu:
        results.cells.meta["proxy_cpu"] = proxy_cpu
        results.cells.meta["other_cpus"] = sorted(os.sched_getaffinity(0))
        try:
            _bench(config, results, proxy_cpu)
        except (RuntimeError, TimeoutError, OSError, subprocess.SubprocessError) as exc:
            results.cells.failures.append({"what": "run", "error": str(exc)[-800:]})
            _log(f"run failed: {exc}")
    results.cells.meta["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    results.cells.meta["load_after"] = machine.load_average()
    return (results, *_write(config, results))


def _write(config: RunConfig, results: RouterResults) -> tuple[Path, Path]:
    config.out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    json_path = config.out_dir / f"router-{stamp}.json"
    md_path = config.out_dir / f"router-{stamp}.md"
    json_path.write_text(json.dumps(results.to_dict(), indent=2))
    md_path.write_text(render_markdown(results))
    return json_path, md_path
