"""``python -m benchmarks.router {setup,run}``: see docs/router-performance.md."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from benchmarks.runtime.environment import REPO

DEFAULT_OUT = REPO / "benchmarks" / "router" / "results"


def build_parser() -> argparse.ArgumentParser:
    """The command line: setup and run."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.router", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help="install wrk, nginx and HAProxy from Debian (when missing)")
    run = sub.add_parser("run", help="benchmark the proxies side by side with direct calls")
    run.add_argument("--proxies", default="sluice-router,nginx,haproxy")
    run.add_argument("--duration", type=float, default=5.0, help="measured seconds per cell")
    run.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per cell")
    run.add_argument("--repeats", type=int, default=3, help="rounds; tables show medians")
    run.add_argument("--rate", type=int, default=1000, help="paced run's target req/s")
    run.add_argument("--paced-connections", type=int, default=16)
    run.add_argument("--max-connections", type=int, default=64)
    run.add_argument("--changes", type=int, default=5, help="weight changes timed (0: none)")
    run.add_argument("--proxy-cpu", type=int, default=0, help="the CPU the proxies run on")
    run.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    if args.command == "setup":
        from benchmarks.router.proxies import DEBIAN_PACKAGES
        from benchmarks.runtime.environment import ensure_debian_packages

        return 0 if ensure_debian_packages(DEBIAN_PACKAGES) else 1
    from benchmarks.router.report import render_markdown
    from benchmarks.router.runner import RunConfig, run

    config = RunConfig(
        proxies=[p.strip() for p in args.proxies.split(",") if p.strip()],
        duration_s=args.duration,
        warmup_s=args.warmup,
        repeats=args.repeats,
        rate=args.rate,
        paced_connections=args.paced_connections,
        max_connections=args.max_connections,
        changes=args.changes,
        proxy_cpu=args.proxy_cpu,
        out_dir=args.out,
        work_dir=args.out / "work",
        command=shlex.join(["python", "-m", "benchmarks.router", *sys.argv[1:]]),
    )
    results, json_path, md_path = run(config)
    print(render_markdown(results))
    print(f"written: {json_path}\n         {md_path}")
    return 1 if results.cells.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
