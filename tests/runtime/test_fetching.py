"""``fetch``: local, HTTP (a real http.server on loopback), S3 (moto's S3-compatible server
on loopback) and the s3 extra's absence."""

from __future__ import annotations

import hashlib
import http.server
import sys
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


def test_unsupported_scheme(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="unsupported URI scheme 'gs'"):
        fetch("gs://bucket/model.onnx", tmp_path / "m.onnx")


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's S3-compatible server on 127.0.0.1, reached the way the runtime documents it:
    boto3's credential chain from the environment and ``AWS_ENDPOINT_URL``."""
    from moto.server import ThreadedMotoServer  # slow to import: only for the S3 tests

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        for name, value in {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "sluice-test",
            "AWS_SECRET_ACCESS_KEY": "sluice-test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        yield endpoint
    finally:
        server.stop()


def test_s3_fetch_from_an_s3_compatible_server(s3_endpoint: str, tmp_path: Path) -> None:
    import boto3

    payload = b"onnx bytes from s3" * 1000
    bucket = boto3.client("s3")
    bucket.create_bucket(Bucket="models")
    bucket.put_object(Bucket="models", Key="mlp/1/model.onnx", Body=payload)
    dest = tmp_path / "model.onnx"
    digest = hashlib.sha256(payload).hexdigest()
    assert fetch("s3://models/mlp/1/model.onnx", dest, sha256=digest) is True
    assert dest.read_bytes() == payload
    bucket.delete_object(Bucket="models", Key="mlp/1/model.onnx")
    assert fetch("s3://models/mlp/1/model.onnx", dest, sha256=digest) is False  # not asked again
    with pytest.raises(FetchError, match=r"s3://models/missing\.onnx failed"):
        fetch("s3://models/missing.onnx", tmp_path / "other.onnx")
    with pytest.raises(FetchError, match="s3://BUCKET/KEY"):
        fetch("s3://models", tmp_path / "other.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_s3_without_boto3_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # what `import boto3` meets when absent
    with pytest.raises(FetchError, match=r"sluice\[s3\]"):
        fetch("s3://bucket/model.onnx", tmp_path / "m.onnx")
