"""``profile``: sample sluice-runtime with py-spy while a load generator drives it.

Writes the raw collapsed stacks (flamegraph input), a speedscope file, a ``py-spy dump``
taken mid-load, and a summary of where the samples fall (self and inclusive time per
function, and per thread) into the output folder.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

from benchmarks.runtime.models import MODELS, build_model
from benchmarks.runtime.runner import RunConfig, run_client
from benchmarks.runtime.servers import ServerOptions, start_server
from benchmarks.runtime.wrk import write_body


def py_spy() -> str:
    """The py-spy executable next to this interpreter, or on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else (shutil.which("py-spy") or "py-spy")


def summarize(collapsed: Path, top: int = 25) -> str:
    """Self and inclusive sample shares per function from py-spy's raw (collapsed) output."""
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    thread_counts: Counter[str] = Counter()
    total = 0
    if not collapsed.exists():
        return f"no profile written ({collapsed.name} is missing)"
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        # With --subprocesses and --threads a stack starts "process ...;thread (0x..)".
        head = 2 if len(frames) > 1 and frames[1].startswith("thread ") else 1
        thread_counts[frames[head - 1]] += count
        self_counts[frames[-1]] += count
        for frame in set(frames[head:]):
            incl_counts[frame] += count
    if not total:
        return "no samples"

    def block(title: str, counter: Counter[str]) -> list[str]:
        rows = [f"{title} ({total} samples)"]
        rows += [f"  {100 * n / total:5.1f}%  {name}" for name, n in counter.most_common(top)]
        return rows

    lines = [*block("by thread", thread_counts), ""]
    lines += [*block("self time (innermost frame)", self_counts), ""]
    lines += block("inclusive time (frame anywhere in the stack)", incl_counts)
    return "\n".join(lines)


def histogram_means(url: str) -> str:
    """Mean of every histogram the server exports (batch size, queue and compute time)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
    except OSError as exc:
        return f"metrics not read: {exc}"
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, _, value = line.rpartition(" ")
        if name.split("{")[0].endswith("_sum"):
            sums[name.replace("_sum", "", 1)] = float(value)
        elif name.split("{")[0].endswith("_count"):
            counts[name.replace("_count", "", 1)] = float(value)
    rows = [f"  {key}: mean {sums[key] / n:.4g} over {n:.0f}"
            for key, n in counts.items() if n and key in sums]  # fmt: skip
    return "server histograms (whole run, warm-up included):\n" + "\n".join(rows)


def profile(
    model: str,
    client: str,
    concurrency: int,
    duration_s: float,
    out_dir: Path,
    options: ServerOptions,
    rate: int = 250,
    native: bool = False,
) -> Path:
    """Profile sluice-runtime serving ``model`` under load; return the summary file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / "work"
    path = build_model(MODELS[model], work / "models")
    body = write_body(model, work)
    config = RunConfig(servers=["sluice"], models=[model], concurrencies=[concurrency],
                       clients=[client], duration_s=duration_s + 3, warmup_s=0.0)  # fmt: skip
    stem = out_dir / f"sluice-{model}-{client}-c{concurrency}"
    server = start_server("sluice", model, path, options, work / "logs")
    outcome: dict[str, object] = {}
    try:
        load = threading.Thread(
            target=lambda: outcome.update(
                run_client(config, server, model, client, concurrency, body)
            ),
            daemon=True,
        )
        load.start()
        time.sleep(1.5)
        record = [py_spy(), "record", "-p", str(server.proc.pid), "-d", str(int(duration_s)),
                  "-r", str(rate), "--subprocesses", "--threads",
                  "-f", "raw", "-o", f"{stem}.collapsed.txt"]  # fmt: skip
        # Native frames need py-spy to pause the process; Python-only sampling does not.
        record.append("--native" if native else "--nonblocking")
        subprocess.run(record, check=False, timeout=duration_s + 60)
        dump = subprocess.run([py_spy(), "dump", "-p", str(server.proc.pid)], capture_output=True,
                              text=True, timeout=60, check=False)  # fmt: skip
        Path(f"{stem}.dump.txt").write_text(dump.stdout + dump.stderr)
        load.join(timeout=duration_s + 180)
        histograms = histogram_means(f"http://{server.http_url}/metrics")
    finally:
        server.stop()
    summary = Path(f"{stem}.summary.txt")
    head = (f"load: {client} c={concurrency}: {outcome.get('throughput', 0):,.0f} req/s, "
            f"p50 {outcome.get('p50_ms')} ms, p99 {outcome.get('p99_ms')} ms\n\n")  # fmt: skip
    summary.write_text(head + histograms + "\n\n" + summarize(Path(f"{stem}.collapsed.txt")))
    return summary
