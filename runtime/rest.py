"""The HTTP/1.1 adapter: an asyncio protocol on httptools that routes v2 paths to the data plane.

Chosen over uvicorn + ASGI by measurement (docs/runtime.md): the infer path parses the body
once and writes one response buffer, with no ASGI message dicts in between. Requests on one
connection are answered in order; while one is in progress the connection stops reading,
which is the backpressure. The adapter only translates: every status comes from
``errors.answer_for``. Every response carries the request's ``x-request-id`` (the client's,
or a new one), and with the access log on each request gets one line in it.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, cast

import httptools
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sluice.runtime.dataplane import DataPlane
from sluice.runtime.errors import InvalidInputError, PayloadTooLargeError, answer_for
from sluice.runtime.logs import REQUEST_ID_HEADER, log_access, request_id_for
from sluice.runtime.metrics import RuntimeMetrics
from sluice.runtime.rest_codec import RestRequest, decode_request, encode_response

JSON = b"application/json"
OCTETS = b"application/octet-stream"
_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


@dataclass(slots=True)
class Request:
    """One parsed HTTP request, with its id and when it began to arrive."""

    method: bytes
    path: str
    headers: dict[bytes, bytes]
    body: bytes
    keep_alive: bool
    request_id: str
    started: float


@dataclass(slots=True)
class Response:
    """One HTTP response before framing."""

    status: int
    body: bytes
    content_type: bytes = JSON
    header_length: int | None = None


def json_response(status: int, payload: Any) -> Response:
    """A JSON response."""
    return Response(status, orjson.dumps(payload))


def error_response(exc: BaseException, request: Request) -> Response:
    """The ``{"error": ...}`` response for ``exc``, with the status from the error table
    (an internal error is logged there under the request's id)."""
    where = f"{request.method.decode()} {request.path}"
    status, message = answer_for(exc, request.request_id, where)
    return json_response(status.http, {"error": message})


class RestApi:
    """Routes v2 paths to the data plane; knows nothing of sockets."""

    def __init__(self, dataplane: DataPlane, metrics: RuntimeMetrics, max_body_bytes: int) -> None:
        self.dataplane = dataplane
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    def route(self, request: Request) -> Response | Callable[[], Coroutine[Any, Any, Response]]:
        """Answer a GET at once, or return the coroutine function that answers an infer."""
        parts = request.path.split("?", 1)[0].strip("/").split("/")
        try:
            if parts[0] == "metrics" and len(parts) == 1:
                self._require(request, b"GET")
                return Response(
                    200, generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST.encode()
                )
            if parts[0] != "v2":
                raise _NotFoundError(f"no route for {request.path}")
            if len(parts) == 1:
                self._require(request, b"GET")
                return json_response(200, self.dataplane.server_metadata())
            if parts[1] == "health" and len(parts) == 3 and parts[2] in ("live", "ready"):
                self._require(request, b"GET")
                state = self.dataplane.live if parts[2] == "live" else self.dataplane.ready
                return json_response(200 if state else 503, {parts[2]: state})
            if parts[1] == "models" and len(parts) >= 3:
                return self._model_route(request, parts[2], parts[3:])
            raise _NotFoundError(f"no route for {request.path}")
        except _HttpError as exc:
            return json_response(exc.status, {"error": str(exc)})
        except Exception as exc:
            return error_response(exc, request)

    def _model_route(
        self, request: Request, name: str, rest: list[str]
    ) -> Response | Callable[[], Coroutine[Any, Any, Response]]:
        if len(rest) >= 2 and rest[0] == "versions":
            rest = rest[2:]  # a single version is served; any version names it
        if not rest:
            self._require(request, b"GET")
            return json_response(200, self.dataplane.model_metadata(name))
        if rest == ["ready"]:
            self._require(request, b"GET")
            ready = self.dataplane.model_ready(name)
            return json_response(200 if ready else 503, {"name": name, "ready": ready})
        if rest == ["infer"]:
            self._require(request, b"POST")
            return lambda: self.infer(name, request)
        raise _NotFoundError(f"no route for {request.path}")

    @staticmethod
    def _require(request: Request, method: bytes) -> None:
        if request.method != method:
            raise _HttpError(405, f"{request.path} takes {method.decode()}")

    async def infer(self, name: str, request: Request) -> Response:
        """Decode, infer and encode one v2 infer request."""
        try:
            decoded = _decode(request, self.max_body_bytes)
        except Exception as exc:
            self.dataplane.reject(name, "http", exc)
            return error_response(exc, request)
        try:
            response = await self.dataplane.infer(name, "http", decoded.request)
            body, header_length = encode_response(
                response, decoded.binary_default, decoded.binary_outputs
            )
        except Exception as exc:
            return error_response(exc, request)
        if header_length is None:
            return Response(200, body)
        return Response(200, body, OCTETS, header_length)


def _decode(request: Request, limit: int) -> RestRequest:
    body = _decompress(request, limit)
    raw_length = request.headers.get(b"inference-header-content-length")
    header_length = None
    if raw_length is not None:
        try:
            header_length = int(raw_length)
        except ValueError:
            raise InvalidInputError("Inference-Header-Content-Length is not a number") from None
    return decode_request(body, header_length)


class _HttpError(Exception):
    """A routing error that is not an inference error (404 path, 405 method)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _NotFoundError(_HttpError):
    def __init__(self, message: str) -> None:
        super().__init__(404, message)


def _decompress(request: Request, limit: int) -> bytes:
    encoding = request.headers.get(b"content-encoding", b"identity").lower()
    if encoding == b"identity":
        return request.body
    if encoding not in (b"gzip", b"deflate"):
        raise InvalidInputError(f"unsupported Content-Encoding {encoding.decode(errors='replace')}")
    wbits = 16 + zlib.MAX_WBITS if encoding == b"gzip" else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        body = inflater.decompress(request.body, limit + 1)
    except zlib.error as exc:
        raise InvalidInputError(f"body is not valid {encoding.decode()}: {exc}") from None
    if len(body) > limit:
        raise PayloadTooLargeError(f"decompressed body is over the limit of {limit} bytes")
    if not inflater.eof:
        raise InvalidInputError(f"{encoding.decode()} body is truncated")
    return body


_REQUEST_ID = REQUEST_ID_HEADER.encode()
_KEPT_HEADERS = frozenset(
    (
        b"content-length",
        b"inference-header-content-length",
        b"content-encoding",
        b"expect",
        _REQUEST_ID,
    )
)


class HttpConnection(asyncio.Protocol):
    """One client connection: parse with httptools, answer in order, keep alive."""

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._api = server.api
        self._limit = server.api.max_body_bytes
        self._access_log = server.access_log
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        self._body_size = 0
        self._started = 0.0
        self._queue: deque[Request] = deque()
        self._busy = False
        self._closing = False
        self._rejected = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if not self._closing:
                response = json_response(400, {"error": f"malformed HTTP request: {exc}"})
                self._write(response, request_id_for(None), keep_alive=False)

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = []
        self._body_size = 0
        self._started = time.perf_counter()

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in _KEPT_HEADERS:
            self._headers[name] = value

    def on_headers_complete(self) -> None:
        length = self._headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self._limit:
            self._reject_too_large()
        elif self._headers.get(b"expect", b"").lower() == b"100-continue" and self._transport:
            # curl and others wait for this before sending a body over 1 KiB.
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._rejected:
            # Read and drop the rest of an oversized body so the client can read the 413;
            # give up on a client that keeps sending far past the limit.
            if self._body_size > 4 * self._limit and self._transport is not None:
                self._transport.close()
            return
        if self._closing:
            return
        if self._body_size > self._limit:
            self._reject_too_large()
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._rejected and self._transport is not None:
            self._transport.close()
        if self._closing:
            return
        request = Request(
            self._parser.get_method(),
            self._url.decode("latin-1"),
            self._headers,
            b"".join(self._body),
            self._parser.should_keep_alive(),
            self._request_id(),
            self._started,
        )
        if self._busy:
            self._queue.append(request)
        else:
            self._handle(request)

    # answering

    def _request_id(self) -> str:
        raw = self._headers.get(_REQUEST_ID)
        return request_id_for(raw.decode("latin-1") if raw is not None else None)

    def _reject_too_large(self) -> None:
        """Answer 413 at once, then drop the body; the connection closes when it ends."""
        exc = PayloadTooLargeError(f"request body is over the limit of {self._limit} bytes")
        request = Request(
            self._parser.get_method(),
            self._url.decode("latin-1"),
            self._headers,
            b"",
            False,
            self._request_id(),
            self._started,
        )
        self._answer(request, error_response(exc, request), close=False)
        self._rejected = True

    def _handle(self, request: Request) -> None:
        answer = self._api.route(request)
        if isinstance(answer, Response):
            self._answer(request, answer)
            return
        self._busy = True
        if self._transport is not None:
            self._transport.pause_reading()
        task = asyncio.get_running_loop().create_task(answer())
        task.add_done_callback(lambda done: self._finish(done, request))

    def _answer(self, request: Request, response: Response, close: bool = True) -> None:
        # The access-log line goes first: a client holding its answer finds its line there.
        if self._access_log:
            log_access(
                protocol="http",
                method=request.method.decode(),
                path=request.path,
                model=_model_of(request.path),
                status=response.status,
                duration_s=time.perf_counter() - request.started,
                bytes_in=len(request.body),
                bytes_out=len(response.body),
                request_id=request.request_id,
            )
        self._write(response, request.request_id, request.keep_alive, close)

    def _finish(self, task: asyncio.Task[Response], request: Request) -> None:
        self._busy = False
        self._answer(request, task.result())
        if self._transport is None or self._closing:
            return
        self._transport.resume_reading()
        while self._queue and not self._busy and not self._closing:
            self._handle(self._queue.popleft())

    def _write(
        self, response: Response, request_id: str, keep_alive: bool, close: bool = True
    ) -> None:
        transport = self._transport
        if transport is None or self._closing:
            return
        keep_alive = keep_alive and not self._server.draining
        head = [
            b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\nx-request-id: %s\r\n"
            % (
                response.status,
                _REASONS.get(response.status, b""),
                response.content_type,
                len(response.body),
                request_id.encode("latin-1"),
            ),
        ]
        if response.header_length is not None:
            head.append(b"inference-header-content-length: %d\r\n" % response.header_length)
        if not keep_alive:
            head.append(b"connection: close\r\n")
        head.append(b"\r\n")
        head.append(response.body)
        transport.write(b"".join(head))
        if not keep_alive:
            self._closing = True
            if close:
                transport.close()

    def close_if_idle(self) -> None:
        """Close the connection unless a request is being answered (used when draining)."""
        if not self._busy and not self._queue and self._transport is not None:
            self._closing = True
            self._transport.close()


class HttpServer:
    """The listening socket and its connections."""

    def __init__(self, api: RestApi, *, access_log: bool = False) -> None:
        self.api = api
        self.access_log = access_log
        self.connections: set[HttpConnection] = set()
        self.draining = False
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` and return the bound port (useful with port 0)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: HttpConnection(self), host, port, reuse_address=True, backlog=1024
        )
        sockname: tuple[str, int] = self._server.sockets[0].getsockname()
        return sockname[1]

    def stop_accepting(self) -> None:
        """Close the listening socket; open connections keep being served."""
        self.draining = True
        if self._server is not None:
            self._server.close()

    async def close(self) -> None:
        """Close idle connections and wait for the listener to be gone."""
        for connection in list(self.connections):
            connection.close_if_idle()
        if self._server is not None:
            await self._server.wait_closed()


def _model_of(path: str) -> str:
    """The model a v2 path names, or "" (for the access log)."""
    parts = path.split("?", 1)[0].strip("/").split("/")
    return parts[2] if len(parts) > 2 and parts[:2] == ["v2", "models"] else ""
