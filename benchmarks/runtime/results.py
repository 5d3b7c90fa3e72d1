"""Results of one run: the cells, their medians over repeats, and the tables printed."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, TypedDict

CellKey = tuple[str, str, int, str]  # (model, server, concurrency, client)


class CellMedian(TypedDict):
    """One cell's medians over its repeats (None where no repeat measured the value)."""

    throughput: float | None
    p50_ms: float | None
    p99_ms: float | None
    server_cpu_cores: float | None
    server_cpu_ms_per_req: float | None
    client_cpu_cores: float | None
    errors: int
    repeats: int


class Failure(TypedDict):
    """Something that could not be measured, and why."""

    what: str
    error: str


@dataclass
class Results:
    """Everything one run measured, JSON-ready through :meth:`to_dict`."""

    meta: dict[str, Any] = field(default_factory=dict)
    raw: list[dict[str, Any]] = field(default_factory=list)
    samples: dict[CellKey, list[dict[str, Any]]] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)

    def add(self, key: CellKey, sample: dict[str, Any]) -> None:
        """Record one measurement of the cell ``key``."""
        self.samples.setdefault(key, []).append(sample)

    def cell(self, key: CellKey) -> CellMedian | None:
        """The median over repeats of throughput, p50 and p99 (None when never measured)."""
        runs = [s for s in self.samples.get(key, []) if s.get("requests")]
        if not runs:
            return None

        def median(name: str) -> float | None:
            values = [r[name] for r in runs if r.get(name) is not None]
            return statistics.median(values) if values else None

        return {
            "throughput": median("throughput"),
            "p50_ms": median("p50_ms"),
            "p99_ms": median("p99_ms"),
            "server_cpu_cores": median("server_cpu_cores"),
            "server_cpu_ms_per_req": median("server_cpu_ms_per_req"),
            "client_cpu_cores": median("client_cpu_cores"),
            "errors": sum(int(r.get("errors") or 0) for r in self.samples[key]),
            "repeats": len(runs),
        }

    def to_dict(self) -> dict[str, Any]:
        """The results as one JSON-ready dictionary (per-repeat samples and medians)."""
        cells = []
        for key in self.samples:
            model, server, concurrency, client = key
            cells.append({
                "model": model, "server": server, "concurrency": concurrency, "client": client,
                "median": self.cell(key), "samples": self.samples[key],
            })  # fmt: skip
        return {"meta": self.meta, "raw_onnxruntime": self.raw, "cells": cells,
                "failures": self.failures}  # fmt: skip


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or zero."""
    if not numerator or not denominator:
        return None
    return numerator / denominator


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def raw_table(results: Results) -> str:
    """Markdown table of the raw onnxruntime limit."""
    lines = [
        "| model | batch | providers | inferences/s | run p50 ms | run p99 ms |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for r in results.raw:
        lines.append(
            f"| {r['model']} | {r['batch']} | {','.join(r['providers'])} | "
            f"{_fmt(r['inferences_per_s'])} | {_fmt(r['p50_ms'], 2)} | {_fmt(r['p99_ms'], 2)} |"
        )
    return "\n".join(lines)


def cell_table(results: Results, model: str, servers: list[str]) -> str:
    """Markdown table for one model: a row per (concurrency, client), a column group per server."""
    head = "| conc | client |"
    rule = "|---:|---|"
    for server in servers:
        head += f" {server} req/s | p50 ms | p99 ms |"
        rule += "---:|---:|---:|"
    anchors = [s for s in servers if s != "sluice"]
    if "sluice" in servers:
        for anchor in anchors:
            head += f" sluice/{anchor} |"
            rule += "---:|"
    lines = [head, rule]
    rows = sorted({(k[2], k[3]) for k in results.samples if k[0] == model})
    for concurrency, client in rows:
        line = f"| {concurrency} | {client} |"
        medians = {s: results.cell((model, s, concurrency, client)) for s in servers}
        for server in servers:
            m = medians[server]
            if m is None:
                line += " failed | - | - |"
                continue
            line += f" {_fmt(m['throughput'])} | {_fmt(m['p50_ms'], 1)} | {_fmt(m['p99_ms'], 1)} |"
        if "sluice" in servers:
            ours = medians["sluice"]
            for anchor in anchors:
                theirs = medians[anchor]
                value = ratio(
                    None if ours is None else ours["throughput"],
                    None if theirs is None else theirs["throughput"],
                )
                line += f" {_fmt(value, 2)}x |" if value is not None else " - |"
        lines.append(line)
    return "\n".join(lines)


def cpu_table(results: Results, model: str, servers: list[str]) -> str:
    """Markdown table for one model: server CPU ms per request and cores busy, per server.

    The last column is the Python load generator's own CPU (cores): near 1.0 it is the
    bottleneck, and throughput says more about the client than about the servers.
    """
    head = "| conc | client |" + "".join(f" {s} CPU ms/req | {s} cores |" for s in servers)
    head += " client cores (max) |"
    rule = "|---:|---|" + "---:|---:|" * len(servers) + "---:|"
    lines = [head, rule]
    rows = sorted({(k[2], k[3]) for k in results.samples if k[0] == model})
    for concurrency, client in rows:
        line = f"| {concurrency} | {client} |"
        client_cores: list[float] = []
        for server in servers:
            m = results.cell((model, server, concurrency, client))
            if m is None:
                line += " - | - |"
                continue
            line += f" {_fmt(m['server_cpu_ms_per_req'], 2)} | {_fmt(m['server_cpu_cores'], 2)} |"
            if m["client_cpu_cores"] is not None:
                client_cores.append(m["client_cpu_cores"])
        line += f" {_fmt(max(client_cores), 2) if client_cores else '-'} |"
        lines.append(line)
    return "\n".join(lines)


def target_check(results: Results, model: str = "mlp", concurrency: int = 32) -> list[str]:
    """One line per client: does sluice reach 2x PyTriton, 4x KServe and PyTriton's p99?"""
    out = []
    clients = sorted({k[3] for k in results.samples if k[0] == model and k[2] == concurrency})
    for client in clients:
        ours = results.cell((model, "sluice", concurrency, client))
        tri = results.cell((model, "pytriton", concurrency, client))
        ks = results.cell((model, "kserve", concurrency, client))
        if ours is None:
            out.append(f"- {client}: sluice not measured")
            continue
        vs_tri = ratio(ours["throughput"], None if tri is None else tri["throughput"])
        vs_ks = ratio(ours["throughput"], None if ks is None else ks["throughput"])
        p99_ok = (
            tri is not None
            and ours["p99_ms"] is not None
            and tri["p99_ms"] is not None
            and (ours["p99_ms"] <= tri["p99_ms"])
        )
        verdict = vs_tri is not None and vs_ks is not None and vs_tri >= 2 and vs_ks >= 4 and p99_ok
        out.append(
            f"- {client}: {_fmt(vs_tri, 2)}x PyTriton (target 2x), {_fmt(vs_ks, 2)}x KServe "
            f"(target 4x), p99 {_fmt(ours['p99_ms'], 1)} ms vs PyTriton "
            f"{_fmt(None if tri is None else tri['p99_ms'], 1)} ms: "
            f"{'MET' if verdict else 'missed'}"
        )
    return out


def render_markdown(results: Results, servers: list[str], models: list[str]) -> str:
    """The full report: machine and command, raw limit, one table per model, target lines."""
    meta = results.meta
    parts = [
        "# sluice-runtime benchmark results",
        "",
        f"- command: `{meta.get('command', '')}`",
        f"- started: {meta.get('started', '')}, finished: {meta.get('finished', '')}",
        f"- machine: {meta.get('machine', '')}",
        f"- load average before / after: {meta.get('load_before', '')} / "
        f"{meta.get('load_after', '')}",
        f"- versions: {meta.get('versions', '')} (at the end: {meta.get('versions_after', '')})",
        f"- per cell: {meta.get('warmup_s')} s warm-up, {meta.get('duration_s')} s measured, "
        f"median of {meta.get('repeats')} repeat(s); requests of batch "
        f"{meta.get('request_batch')}",
        "",
    ]
    if results.raw:
        parts += ["## Raw onnxruntime (in-process, one thread calling session.run)", "",
                  raw_table(results), ""]  # fmt: skip
    for model in models:
        if not any(k[0] == model for k in results.samples):
            continue
        parts += [f"## {model}", "", cell_table(results, model, servers), ""]
        parts += [f"Server CPU for {model} (whole process group, measured window):", "",
                  cpu_table(results, model, servers), ""]  # fmt: skip
        if model == "mlp" and {"sluice", "pytriton", "kserve"} <= set(servers):
            checks = target_check(results, model)
            if checks:
                parts += ["Target at concurrency 32:", "", *checks, ""]
    if results.failures:
        parts += ["## Failures", ""]
        parts += [f"- {f['what']}: {f['error']}" for f in results.failures]
        parts.append("")
    return "\n".join(parts)
