"""``python -m benchmarks.runtime {setup,run,profile}``: see docs/runtime-performance.md."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.runtime.environment import REPO, VENV, bench_python

if TYPE_CHECKING:
    from benchmarks.runtime.servers import ServerOptions

DEFAULT_OUT = REPO / "benchmarks" / "runtime" / "results"


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _ints(text: str) -> list[int]:
    return [int(part) for part in _csv(text)]


def _server_options(args: argparse.Namespace) -> ServerOptions:
    from benchmarks.runtime.servers import ServerOptions

    return ServerOptions(
        max_batch_size=args.max_batch_size,
        max_queue_delay_us=args.max_queue_delay_us,
        providers=args.providers,
        sluice_bin=args.sluice_bin,
        sluice_args=shlex.split(args.sluice_args),
        anchor_spinning=args.anchor_spinning,
    )


def _add_server_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-queue-delay-us", type=int, default=2000)
    parser.add_argument(
        "--providers", default="",
        help="comma-separated onnxruntime execution providers for every server and the raw "
        "limit, e.g. CUDAExecutionProvider,CPUExecutionProvider (default: onnxruntime's)",
    )  # fmt: skip
    parser.add_argument("--sluice-bin", default="", help="sluice-runtime executable to run")
    parser.add_argument("--sluice-args", default="", help="extra sluice-runtime serve arguments")
    parser.add_argument(
        "--anchor-spinning", action="store_true",
        help="let onnxruntime thread pools spin in the anchors and the raw limit (onnxruntime's "
        "default); by default they match sluice-runtime, which turns spinning off",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")


def build_parser() -> argparse.ArgumentParser:
    """The command line: setup, run and profile."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.runtime", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    setup = sub.add_parser("setup", help="create .venv-bench and install wrk (idempotent)")
    setup.add_argument("--gpu", action="store_true", help="install onnxruntime-gpu")
    setup.add_argument("--force", action="store_true", help="reinstall the requirements")
    setup.add_argument("--no-wrk", action="store_true", help="do not install wrk")

    run = sub.add_parser("run", help="benchmark the servers side by side")
    run.add_argument("--servers", default="sluice,pytriton,kserve")
    run.add_argument("--models", default="mlp,tiny", help="from: mlp, tiny, wide")
    run.add_argument("--concurrency", default="1,8,32")
    run.add_argument("--clients", default="http-json,http-binary,grpc,wrk")
    run.add_argument("--duration", type=float, default=5.0, help="measured seconds per cell")
    run.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per cell")
    run.add_argument("--repeats", type=int, default=1, help="rounds; tables show medians")
    run.add_argument("--raw-batches", default="1,32", help="raw session.run batches ('' = none)")
    run.add_argument("--request-batch", type=int, default=1, help="rows per request")
    run.add_argument(
        "--quick",
        action="store_true",
        help="mlp only, concurrency 32, http-json and wrk, 3 s per cell",
    )
    _add_server_flags(run)

    prof = sub.add_parser("profile", help="py-spy profile of sluice-runtime under load")
    prof.add_argument("--model", default="mlp")
    prof.add_argument("--client", default="wrk")
    prof.add_argument("--concurrency", type=int, default=32)
    prof.add_argument("--duration", type=float, default=10.0)
    prof.add_argument("--rate", type=int, default=250, help="samples per second")
    prof.add_argument("--native", action="store_true", help="include native frames")
    _add_server_flags(prof)
    return parser


def _reexec_in_bench_venv() -> None:
    """Run ``run`` and ``profile`` in .venv-bench, where the anchors are installed."""
    python = bench_python()
    if Path(sys.prefix).resolve() == VENV.resolve() or not python.exists():
        return
    os.execv(str(python), [str(python), "-m", "benchmarks.runtime", *sys.argv[1:]])


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    if args.command == "setup":
        from benchmarks.runtime.environment import setup

        return setup(gpu=args.gpu, force=args.force, with_wrk=not args.no_wrk)
    if argv is None:
        _reexec_in_bench_venv()
    if args.command == "profile":
        from benchmarks.runtime.profiling import profile

        options = _server_options(args)
        summary = profile(args.model, args.client, args.concurrency, args.duration,
                          args.out / "profile", options, args.rate, args.native)  # fmt: skip
        print(summary.read_text())
        print(f"\nwritten to {summary.parent}")
        return 0
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    from benchmarks.runtime.results import render_markdown
    from benchmarks.runtime.runner import RunConfig, run

    if args.quick:
        args.models, args.concurrency, args.clients = "mlp", "32", "http-json,wrk"
        args.duration, args.warmup = 3.0, 0.5
    command = shlex.join(["python", "-m", "benchmarks.runtime", *sys.argv[1:]])
    config = RunConfig(
        servers=_csv(args.servers),
        models=_csv(args.models),
        concurrencies=_ints(args.concurrency),
        clients=_csv(args.clients),
        duration_s=args.duration,
        warmup_s=args.warmup,
        repeats=args.repeats,
        raw_batches=_ints(args.raw_batches),
        request_batch=args.request_batch,
        out_dir=args.out,
        work_dir=args.out / "work",
        server_options=_server_options(args),
        command=command,
    )
    results, json_path, md_path = run(config)
    print(render_markdown(results, config.servers, config.models))
    print(f"written: {json_path}\n         {md_path}")
    return 1 if results.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
