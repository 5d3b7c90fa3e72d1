"""Lifecycle of a real ``sluice-runtime serve`` subprocess: readiness, SIGTERM drain under load."""

from __future__ import annotations

import http.client
import threading
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from sluice.runtime.app import create_app

from tests.runtime.conftest import ModelFiles, settings_for
from tests.runtime.serving import LoopThread, ServerProcess, model_arg


def test_drain_on_sigterm_under_load_drops_nothing(model_files: ModelFiles) -> None:
    server = ServerProcess(
        model_arg("mlp", model_files.mlp),
        extra=("--max-queue-delay-us", "500000", "--max-batch-size", "64"),
    )
    try:
        server.wait_ready()
        stop = threading.Event()
        lock = threading.Lock()
        outcomes = {"ok": 0, "failed": 0}
        errors: list[str] = []
        x = np.random.default_rng(5).standard_normal((1, 32), dtype=np.float32)

        def http_load() -> None:
            client = httpclient.InferenceServerClient(server.http_url, network_timeout=30)
            item = httpclient.InferInput("input", [1, 32], "FP32")
            item.set_data_from_numpy(x)
            deadline = time.monotonic() + 20
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    client.infer("mlp", [item])
                    key = "ok"
                except Exception as exc:
                    key = "failed"
                    errors.append(f"{exc!r} {exc}")
                with lock:
                    outcomes[key] += 1

        def grpc_load() -> None:
            client = grpcclient.InferenceServerClient(server.grpc_url)
            item = grpcclient.InferInput("input", [1, 32], "FP32")
            item.set_data_from_numpy(x)
            deadline = time.monotonic() + 20
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    client.infer("mlp", [item], client_timeout=30)
                    key = "ok"
                except Exception as exc:
                    key = "failed"
                    errors.append(f"{exc!r} {exc}")
                with lock:
                    outcomes[key] += 1

        threads = [threading.Thread(target=http_load) for _ in range(12)]
        threads += [threading.Thread(target=grpc_load) for _ in range(4)]
        for thread in threads:
            thread.start()
        probe = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
        probe.request("GET", "/v2/health/ready")
        assert probe.getresponse().read() == b'{"ready":true}'
        time.sleep(1.0)
        stop.set()
        server.terminate()
        # Requests are still in the 500 ms batching window: the server is draining, and an
        # open connection sees readiness false.
        answers = []
        for _ in range(20):
            probe.request("GET", "/v2/health/ready")
            response = probe.getresponse()
            answers.append((response.status, response.read()))
            if response.status != 200:
                break
            time.sleep(0.01)
        assert answers[-1] == (503, b'{"ready":false}')
        probe.close()
        for thread in threads:
            thread.join(30)
        assert server.wait(30) == 0
        assert outcomes["failed"] == 0, errors[:3]
        assert outcomes["ok"] > 16
    finally:
        server.stop()


def test_models_load_after_listening_and_env_configures(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    server = ServerProcess(
        env={"SLUICE_MODEL": f"multi={model_files.multi} fixed={model_files.fixed}"}
    )
    try:
        server.wait_ready()
        client = httpclient.InferenceServerClient(server.http_url)
        assert client.is_model_ready("multi")
        assert client.is_model_ready("fixed")
        client.close()
        server.terminate()
        assert server.wait(30) == 0
    finally:
        server.stop()


def test_a_model_that_fails_to_load_exits_non_zero(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    server = ServerProcess(model_arg("broken", broken))
    try:
        assert server.wait(60) != 0
        assert "broken" in server.output()
    finally:
        server.stop()


def test_not_ready_until_loaded(loop_thread: LoopThread, model_files: ModelFiles) -> None:
    app = create_app(settings_for(model_files))
    assert not app.dataplane.ready
    assert app.dataplane.live

    async def lifecycle() -> tuple[bool, bool]:
        await app.start()
        ready = app.dataplane.ready
        await app.drain()
        return ready, app.dataplane.ready

    assert loop_thread.run(lifecycle()) == (True, False)
