"""What a router benchmark run measured, and the report: tables, ratios and the goals.

Cells are keyed as in the runtime benchmark's ``Results``: (model, target, connections,
run), the run being ``paced`` (near the target rate: latency) or ``max`` (flat out:
throughput and the proxy's CPU per request). Medians over the rounds fill the tables.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from benchmarks.runtime.results import CellMedian, Results, ratio

MODEL = "tiny"
ROUTER = "sluice-router"
ANCHOR = "nginx"
DIRECT = "direct"
# The goals the benchmark checks.
ADDED_P99_MS = 0.3
THROUGHPUT_VS_NGINX = 0.8
WEIGHT_CHANGE_S = 1.0


@dataclass
class RouterResults:
    """The wrk cells and the weight-change samples of one run, JSON-ready via ``to_dict``."""

    cells: Results = field(default_factory=Results)
    weight_change_s: list[float] = field(default_factory=list)

    def targets(self) -> list[str]:
        """The targets measured, in the order they ran (direct first)."""
        return list(dict.fromkeys(key[1] for key in self.cells.samples))

    def median(self, target: str, run: str) -> CellMedian | None:
        """The medians of ``target``'s ``run`` cell (None when never measured)."""
        key = next((k for k in self.cells.samples if k[1] == target and k[3] == run), None)
        return None if key is None else self.cells.cell(key)

    def to_dict(self) -> dict[str, Any]:
        """Everything as one JSON-ready dictionary."""
        found = self.cells.to_dict()
        return {
            "meta": found["meta"],
            "cells": found["cells"],
            "weight_change_s": self.weight_change_s,
            "failures": found["failures"],
        }


def _fmt(value: float | None, digits: int = 0, unit: str = "") -> str:
    return "-" if value is None else f"{value:,.{digits}f}{unit}"


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _us(ms: float | None) -> float | None:
    return None if ms is None else ms * 1e3


def _capacity(m: CellMedian | None) -> float | None:
    """Requests per second one core could proxy at the measured CPU cost per request."""
    if m is None or not m["server_cpu_ms_per_req"]:
        return None
    return 1e3 / m["server_cpu_ms_per_req"]


def paced_table(results: RouterResults) -> str:
    """Latency near the target rate, and what each proxy adds to the direct call."""
    direct = results.median(DIRECT, "paced")
    lines = [
        "| target | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | proxy CPU µs/req |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for target in results.targets():
        m = results.median(target, "paced")
        if m is None:
            lines.append(f"| {target} | failed | - | - | - | - | - |")
            continue
        added50 = (
            None if target == DIRECT or direct is None else _minus(m["p50_ms"], direct["p50_ms"])
        )
        added99 = (
            None if target == DIRECT or direct is None else _minus(m["p99_ms"], direct["p99_ms"])
        )
        lines.append(
            f"| {target} | {_fmt(m['throughput'])} | {_fmt(m['p50_ms'], 2)} "
            f"| {_fmt(m['p99_ms'], 2)} | {_fmt(added50, 2)} | {_fmt(added99, 2)} "
            f"| {_fmt(_us(m['server_cpu_ms_per_req']))} |"
        )
    return "\n".join(lines)


def max_table(results: RouterResults) -> str:
    """Throughput flat out with the proxy on one core, its CPU per request, and both as
    ratios to nginx; capacity is what one core would proxy at that CPU cost."""
    nginx = results.median(ANCHOR, "max")
    lines = [
        "| target | req/s | p99 ms | proxy cores busy | proxy CPU µs/req | one-core capacity "
        "req/s | req/s vs nginx | capacity vs nginx |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for target in results.targets():
        m = results.median(target, "max")
        if m is None:
            lines.append(f"| {target} | failed | - | - | - | - | - | - |")
            continue
        vs_req = ratio(m["throughput"], None if nginx is None else nginx["throughput"])
        vs_cap = ratio(_capacity(m), _capacity(nginx))
        lines.append(
            f"| {target} | {_fmt(m['throughput'])} | {_fmt(m['p99_ms'], 2)} "
            f"| {_fmt(m['server_cpu_cores'], 2)} | {_fmt(_us(m['server_cpu_ms_per_req']))} "
            f"| {_fmt(_capacity(m))} | {_fmt(vs_req, 2, 'x')} | {_fmt(vs_cap, 2, 'x')} |"
        )
    return "\n".join(lines)


def goals(results: RouterResults) -> list[str]:
    """One line per goal: the figure measured and whether it is met."""
    direct, ours = results.median(DIRECT, "paced"), results.median(ROUTER, "paced")
    added = None if ours is None or direct is None else _minus(ours["p99_ms"], direct["p99_ms"])
    ours_max, nginx_max = results.median(ROUTER, "max"), results.median(ANCHOR, "max")
    vs_req = ratio(
        None if ours_max is None else ours_max["throughput"],
        None if nginx_max is None else nginx_max["throughput"],
    )
    vs_cap = ratio(_capacity(ours_max), _capacity(nginx_max))
    change = statistics.median(results.weight_change_s) if results.weight_change_s else None

    def verdict(ok: bool) -> str:
        return "met" if ok else "missed"

    rate = ours["throughput"] if ours else None
    return [
        f"- added p99 at {_fmt(rate)} req/s: {_fmt(added, 2)} ms (goal at most "
        f"{ADDED_P99_MS} ms): {verdict(added is not None and added <= ADDED_P99_MS)}",
        f"- throughput on one core vs nginx: {_fmt(vs_req, 2, 'x')} measured, "
        f"{_fmt(vs_cap, 2, 'x')} by CPU per request (goal at least {THROUGHPUT_VS_NGINX}x): "
        + verdict(
            vs_req is not None and vs_cap is not None and min(vs_req, vs_cap) >= THROUGHPUT_VS_NGINX
        ),
        f"- weight change in effect (median of {len(results.weight_change_s)}): "
        f"{_fmt(None if change is None else change * 1e3, 0, ' ms')} (goal at most "
        f"{WEIGHT_CHANGE_S:.0f} s): {verdict(change is not None and change <= WEIGHT_CHANGE_S)}",
    ]


def render_markdown(results: RouterResults) -> str:
    """The full report: machine and command, both tables, weight changes, goals, failures."""
    meta = results.cells.meta
    parts = [
        "# sluice-router benchmark results",
        "",
        f"- command: `{meta.get('command', '')}`",
        f"- started: {meta.get('started', '')}, finished: {meta.get('finished', '')}",
        f"- machine: {meta.get('machine', '')}",
        f"- load average before / after: {meta.get('load_before', '')} / "
        f"{meta.get('load_after', '')}",
        f"- versions: {meta.get('versions', '')}; {meta.get('proxies', '')}",
        f"- CPUs: proxy on {meta.get('proxy_cpu')}, backends, wrk and the runner on "
        f"{meta.get('other_cpus')}",
        f"- per cell: {meta.get('warmup_s')} s warm-up, {meta.get('duration_s')} s measured, "
        f"median of {meta.get('repeats')} round(s); model {MODEL}, v2 JSON over HTTP/1.1",
        "",
        f"## Near {meta.get('rate')} req/s ({meta.get('paced_connections')} connections, paced)",
        "",
        paced_table(results),
        "",
        f"## Flat out ({meta.get('max_connections')} connections), proxy on one core",
        "",
        max_table(results),
        "",
        "## Weight change (sluice-router, routes file rewritten)",
        "",
        "- in effect after: "
        + (", ".join(f"{s * 1e3:.0f} ms" for s in results.weight_change_s) or "not measured"),
        "",
        "## Goals",
        "",
        *goals(results),
        "",
    ]
    if results.cells.failures:
        parts += ["## Failures", ""]
        parts += [f"- {f['what']}: {f['error']}" for f in results.cells.failures]
        parts.append("")
    return "\n".join(parts)
