"""The runtime's settings: one frozen value built by ``__main__`` from flags and environment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model to serve: ``NAME=PATH`` on the command line."""

    name: str
    path: Path

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        """Parse ``NAME=PATH``; raise ValueError when either side is missing."""
        name, sep, path = text.partition("=")
        if not sep or not name or not path or "/" in name:
            raise ValueError(f"model must be NAME=PATH, got {text!r}")
        return cls(name, Path(path))


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything ``create_app`` needs to build a server."""

    models: tuple[ModelSpec, ...]
    host: str = "0.0.0.0"
    http_port: int = 8080
    grpc_port: int = 8081
    max_batch_size: int = 32
    max_queue_delay_us: int = 2000
    max_queue_size: int = 1024
    request_timeout_s: float = 30.0
    max_body_bytes: int = 64 * 1024 * 1024
    providers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("at least one model is needed")
        names = [spec.name for spec in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique, got {names}")
        for field in ("max_batch_size", "max_queue_size", "max_body_bytes"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be at least 1")
        if self.max_queue_delay_us < 0 or self.request_timeout_s <= 0:
            raise ValueError("max_queue_delay_us must be >= 0 and request_timeout_s > 0")
