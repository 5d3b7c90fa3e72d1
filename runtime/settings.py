"""The runtime's settings: one frozen value built by ``__main__`` from flags and environment.

The defaults are the flags' own (``sluice.contracts.flags``), so a server built in code and
one started from the command line agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sluice.contracts import flags


@dataclass(frozen=True, slots=True)
class ServedModel:
    """A model this server serves: the name clients use, and the .onnx file or the folder
    holding ``model.onnx``; ``NAME=PATH`` on the command line."""

    name: str
    path: Path

    @classmethod
    def parse(cls, text: str) -> ServedModel:
        """Parse ``NAME=PATH``; raise ValueError when either side is missing."""
        name, sep, path = text.partition("=")
        if not sep or not name or not path or "/" in name:
            raise ValueError(f"model must be NAME=PATH, got {text!r}")
        return cls(name, Path(path))


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything ``create_app`` needs to build a server."""

    models: tuple[ServedModel, ...]
    host: str = flags.HOST.default
    http_port: int = flags.HTTP_PORT.default
    grpc_port: int = flags.GRPC_PORT.default
    max_batch_size: int = flags.MAX_BATCH_SIZE.default
    max_queue_delay_us: int = flags.MAX_QUEUE_DELAY_US.default
    max_queue_size: int = flags.MAX_QUEUE_SIZE.default
    request_timeout_s: float = flags.REQUEST_TIMEOUT_S.default
    max_body_bytes: int = flags.MAX_BODY_BYTES.default
    providers: tuple[str, ...] = ()
    access_log: bool = False

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("at least one model is needed")
        names = [model.name for model in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique, got {names}")
        for field in ("max_batch_size", "max_queue_size", "max_body_bytes"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be at least 1")
        if self.max_queue_delay_us < 0 or self.request_timeout_s <= 0:
            raise ValueError("max_queue_delay_us must be >= 0 and request_timeout_s > 0")
