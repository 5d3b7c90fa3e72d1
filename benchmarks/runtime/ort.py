"""The onnxruntime session every anchor wraps, and the in-process limit (raw session.run)."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.runtime.models import INPUT_NAME, MODELS, sample_input


def parse_providers(text: str | None) -> list[str] | None:
    """Split a comma-separated provider list; ``None`` or empty means onnxruntime's default."""
    if not text:
        return None
    return [p.strip() for p in text.split(",") if p.strip()]


SPIN_ENV = "BENCH_ORT_SPINNING"


def spinning_from_env() -> bool:
    """Whether anchors let onnxruntime's thread pools spin (set by the runner for its servers)."""
    return os.environ.get(SPIN_ENV, "0") == "1"


def make_session(
    path: Path | str, providers: list[str] | None = None, spinning: bool | None = None
) -> Any:
    """Return an ``onnxruntime.InferenceSession`` configured like sluice-runtime's.

    sluice-runtime turns thread-pool spinning off (idle workers would steal the cores its
    event loop needs); the anchors do the same unless ``spinning`` (or the
    ``BENCH_ORT_SPINNING=1`` environment) asks for onnxruntime's default.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not (spinning_from_env() if spinning is None else spinning):
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=options, providers=providers)


@dataclass
class RawResult:
    """Throughput of ``session.run`` at one batch size, in one thread."""

    model: str
    batch: int
    providers: list[str]
    runs: int
    inferences_per_s: float
    p50_ms: float
    p99_ms: float


def bench_raw(
    model: str,
    path: Path,
    batch: int,
    duration_s: float,
    warmup_s: float,
    providers: list[str] | None = None,
    spinning: bool = False,
) -> RawResult:
    """Call ``session.run`` back to back for ``duration_s`` after ``warmup_s`` of warm-up."""
    session = make_session(path, providers, spinning)
    feed = {INPUT_NAME: sample_input(MODELS[model], batch)}
    warm_end = time.perf_counter() + warmup_s
    while time.perf_counter() < warm_end:
        session.run(None, feed)
    latencies: list[float] = []
    start = time.perf_counter()
    end = start + duration_s
    now = start
    while now < end:
        session.run(None, feed)
        later = time.perf_counter()
        latencies.append(later - now)
        now = later
    elapsed = now - start
    lat = np.asarray(latencies) * 1e3
    return RawResult(
        model=model,
        batch=batch,
        providers=list(session.get_providers()),
        runs=len(latencies),
        inferences_per_s=len(latencies) * batch / elapsed,
        p50_ms=float(np.percentile(lat, 50)),
        p99_ms=float(np.percentile(lat, 99)),
    )


def raw_to_dict(result: RawResult) -> dict[str, Any]:
    """The result as a JSON-ready dictionary."""
    return asdict(result)
