"""``sluice-runtime fetch URI DEST``: put a model file in place for the server.

The operator's init container runs this before the server starts. Sources: ``file://`` or a
plain path, ``http(s)://`` (with an optional SHA-256 check) and ``s3://`` (the ``s3``
extra; boto3 is imported only when such a URI is fetched). The copy is atomic (a temporary
file in DEST's folder, renamed over DEST) and idempotent (a DEST that already matches the
checksum, or the source's content, is left alone).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlparse

CHUNK = 1 << 20


class FetchError(Exception):
    """The model could not be fetched; the message says why."""


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(uri: str, dest: Path, *, sha256: str | None = None, timeout_s: float = 60.0) -> bool:
    """Fetch ``uri`` to ``dest``; return False when ``dest`` was already up to date."""
    expected = sha256.lower() if sha256 else None
    if expected is not None and dest.is_file() and sha256_of(dest) == expected:
        return False
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme in ("", "file"):
        source = Path(unquote(parsed.path) if scheme == "file" else uri)
        if not source.is_file():
            raise FetchError(f"no file at {source}")
        if expected is None and dest.is_file() and sha256_of(dest) == sha256_of(source):
            return False
        with source.open("rb") as handle:
            _write_atomically(dest, lambda out: shutil.copyfileobj(handle, out, CHUNK), expected)
        return True
    if scheme in ("http", "https"):
        return _fetch_http(uri, dest, expected, timeout_s)
    if scheme == "s3":
        return _fetch_s3(parsed.netloc, parsed.path.lstrip("/"), dest, expected)
    raise FetchError(f"unsupported URI scheme {scheme!r} in {uri}; use file, http(s) or s3")


def _fetch_http(uri: str, dest: Path, expected: str | None, timeout_s: float) -> bool:
    try:
        with urllib.request.urlopen(uri, timeout=timeout_s) as response:
            _write_atomically(dest, lambda out: shutil.copyfileobj(response, out, CHUNK), expected)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"GET {uri} answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise FetchError(f"GET {uri} failed: {exc}") from None
    return True


def _fetch_s3(bucket: str, key: str, dest: Path, expected: str | None) -> bool:
    try:
        import boto3  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        raise FetchError(
            "s3:// URIs need boto3; install the runtime with the s3 extra (sluice[s3])"
        ) from None
    if not bucket or not key:
        raise FetchError("s3 URI must be s3://BUCKET/KEY")
    client: Any = boto3.client("s3")
    try:
        _write_atomically(dest, lambda out: client.download_fileobj(bucket, key, out), expected)
    except FetchError:
        raise
    except Exception as exc:
        raise FetchError(f"s3://{bucket}/{key} failed: {exc}") from None
    return True


def _write_atomically(
    dest: Path, fill: Callable[[IO[bytes]], object], expected: str | None
) -> None:
    """Write through ``fill`` into a temporary file beside ``dest``, check, then rename."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            fill(out)
            out.flush()
            os.fsync(out.fileno())
        if expected is not None:
            actual = sha256_of(temp)
            if actual != expected:
                raise FetchError(f"checksum mismatch: expected sha256 {expected}, got {actual}")
        temp.chmod(0o644)
        temp.replace(dest)
    finally:
        temp.unlink(missing_ok=True)
