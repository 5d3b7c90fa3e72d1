"""``fetch``: local, HTTP (a real http.server on loopback) and the s3 extra's absence."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from sluice.runtime.fetching import FetchError, fetch


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static file server on 127.0.0.1 serving a folder; stopped at the end."""
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_http_fetch_with_checksum_is_atomic_and_idempotent(
    http_root: tuple[str, Path], tmp_path: Path
) -> None:
    url, root = http_root
    payload = b"onnx bytes" * 1000
    (root / "model.onnx").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    dest = tmp_path / "models" / "m" / "model.onnx"
    assert fetch(f"{url}/model.onnx", dest, sha256=digest) is True
    assert dest.read_bytes() == payload
    (root / "model.onnx").unlink()  # a second fetch must not even ask the server
    assert fetch(f"{url}/model.onnx", dest, sha256=digest.upper()) is False
    assert [p.name for p in dest.parent.iterdir()] == ["model.onnx"]


def test_http_checksum_mismatch_leaves_nothing(http_root: tuple[str, Path], tmp_path: Path) -> None:
    url, root = http_root
    (root / "model.onnx").write_bytes(b"abc")
    dest = tmp_path / "model.onnx"
    with pytest.raises(FetchError, match="checksum mismatch"):
        fetch(f"{url}/model.onnx", dest, sha256="0" * 64)
    assert list(tmp_path.iterdir()) == [tmp_path / "www"]


def test_http_errors(http_root: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = http_root
    with pytest.raises(FetchError, match="404"):
        fetch(f"{url}/missing.onnx", tmp_path / "m.onnx")
    with pytest.raises(FetchError, match="failed"):
        fetch("http://127.0.0.1:1/model.onnx", tmp_path / "m.onnx", timeout_s=5)


def test_local_copy_replaces_changed_content(tmp_path: Path) -> None:
    source = tmp_path / "a.onnx"
    dest = tmp_path / "b.onnx"
    source.write_bytes(b"one")
    assert fetch(str(source), dest) is True
    assert fetch(f"file://{source}", dest) is False
    source.write_bytes(b"two")
    assert fetch(str(source), dest) is True
    assert dest.read_bytes() == b"two"


def test_unsupported_scheme_and_missing_boto3(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="unsupported URI scheme 'gs'"):
        fetch("gs://bucket/model.onnx", tmp_path / "m.onnx")
    try:
        import boto3  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
    except ImportError:
        with pytest.raises(FetchError, match="s3 extra"):
            fetch("s3://bucket/model.onnx", tmp_path / "m.onnx")
