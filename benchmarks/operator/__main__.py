"""``python -m benchmarks.operator --count N``: time N InferenceServices to Ready.

Starts its own local cluster (``e2e.cluster``) with fake GPU nodes, runs the operator as its
ServiceAccount, and prints one table row per count. The time to all Deployments is the
operator's own (it writes them); the time from there to all Ready is mostly the cluster's
(ReplicaSets, pods, scheduling, kwok), plus the operator's status writes.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from .runner import Result, run


def _table(results: list[Result]) -> str:
    header = (
        "| InferenceServices | nodes | s to all Deployments (operator) "
        "| s from there to all Ready (cluster) | s to all Ready "
        "| operator requests (writes / reads) "
        f"| idle requests in {results[0].idle_seconds:.0f}s | peak RSS MiB | operator CPU s |"
    )
    lines = [header, "|" + "---|" * 9]
    for r in results:
        lines.append(
            f"| {r.count} | {r.nodes} | {r.seconds_to_children:.1f} "
            f"| {r.seconds_to_ready - r.seconds_to_children:.1f} | {r.seconds_to_ready:.1f} "
            f"| {r.requests['writes']:.0f} / {r.requests['reads']:.0f} "
            f"| {r.idle_requests['writes']:.0f} / {r.idle_requests['reads']:.0f} "
            f"| {r.peak_rss_mib:.0f} | {r.cpu_seconds:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run each count on a fresh cluster, print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.operator")
    parser.add_argument("--count", type=int, action="append", help="InferenceServices (repeatable)")
    parser.add_argument("--nodes", type=int, default=100, help="fake GPU nodes (default 100)")
    parser.add_argument("--gpus-per-node", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for Ready")
    parser.add_argument("--settle", type=float, default=60, help="seconds to wait after Ready")
    parser.add_argument("--idle", type=float, default=30, help="seconds to watch an idle operator")
    parser.add_argument("--workdir", type=Path, default=None, help="cluster folder (default: temp)")
    args = parser.parse_args(argv)
    results = []
    for count in args.count or [100]:
        with tempfile.TemporaryDirectory(prefix="sluice-bench-") as scratch:
            workdir = args.workdir / f"n{count}" if args.workdir else Path(scratch)
            result = run(
                count=count,
                nodes=args.nodes,
                gpus_per_node=args.gpus_per_node,
                workdir=workdir,
                timeout=args.timeout,
                settle=args.settle,
                idle=args.idle,
            )
        results.append(result)
        print(_table([result]), flush=True)
    print(_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
