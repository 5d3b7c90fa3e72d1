"""The runtime's command line: its commands, its options, their variables and defaults.

``sluice-runtime serve`` builds its argument parser from ``SERVE_FLAGS`` and its settings'
defaults from each flag's ``default`` (``sluice.runtime.__main__``, ``sluice.runtime.settings``);
the operator renders the same flags into the pod's command with ``serve_command`` and
``fetch_command`` (``sluice.operator.pods``), and applies the same batching defaults to
specs (``sluice.operator.spec``; the CRD repeats them, and a test holds them equal). Every
serve option can also be set by the environment variable ``env_name(flag)``; names starting
with ``ENV_PREFIX`` are therefore kept out of user-supplied environments. docs/runtime.md
documents each flag.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from sluice.contracts import ports

PROGRAM: Final = "sluice-runtime"
SERVE: Final = "serve"
FETCH: Final = "fetch"
ENV_PREFIX: Final = "SLUICE_"

# Options that are not a single value: repeatable NAME=PATH pairs, a list of providers, and
# the fetch command's checksum. Each has an environment variable too (``env_name``).
MODEL: Final = "model"
PROVIDERS: Final = "providers"
SHA256: Final = "sha256"

T = TypeVar("T", int, float, str)


def env_name(flag: str) -> str:
    """The environment variable of a flag: ``max-batch-size`` -> ``SLUICE_MAX_BATCH_SIZE``."""
    return ENV_PREFIX + flag.upper().replace("-", "_")


@dataclass(frozen=True)
class Flag(Generic[T]):
    """One single-valued ``serve`` option: ``--NAME VALUE``, or ``env_name(NAME)``."""

    name: str
    parse: Callable[[str], T]
    default: T
    help: str

    @property
    def option(self) -> str:
        """The option as written on the command line: ``--NAME``."""
        return f"--{self.name}"

    @property
    def env(self) -> str:
        """The environment variable that sets the option when the command line does not."""
        return env_name(self.name)

    def arg(self, value: T) -> tuple[str, str]:
        """The option and its value, as two command-line words."""
        return (self.option, str(value))


HOST: Final = Flag("host", str, "0.0.0.0", "address both servers listen on")
HTTP_PORT: Final = Flag("http-port", int, ports.HTTP_PORT, "HTTP port (v2 REST, health, metrics)")
GRPC_PORT: Final = Flag("grpc-port", int, ports.GRPC_PORT, "gRPC port (v2 GRPCInferenceService)")
MAX_BATCH_SIZE: Final = Flag(
    "max-batch-size", int, 32, "most rows merged into one model run; 1 turns batching off"
)
MAX_QUEUE_DELAY_US: Final = Flag(
    "max-queue-delay-us", int, 2000, "longest wait, in microseconds, for a batch to fill"
)
MAX_QUEUE_SIZE: Final = Flag(
    "max-queue-size", int, 1024, "requests that may wait per model before 503 / UNAVAILABLE"
)
REQUEST_TIMEOUT_S: Final = Flag(
    "request-timeout-s", float, 30.0, "bound on queueing plus compute, and on draining"
)
MAX_BODY_BYTES: Final = Flag(
    "max-body-bytes", int, 64 * 1024 * 1024, "largest HTTP body (decompressed) or gRPC message"
)

SERVE_FLAGS: Final[tuple[Flag[Any], ...]] = (
    HOST,
    HTTP_PORT,
    GRPC_PORT,
    MAX_BATCH_SIZE,
    MAX_QUEUE_DELAY_US,
    MAX_QUEUE_SIZE,
    REQUEST_TIMEOUT_S,
    MAX_BODY_BYTES,
)


def serve_command(models: Mapping[str, str], options: Iterable[tuple[str, str]]) -> list[str]:
    """``sluice-runtime serve`` with ``--model NAME=PATH`` per model, then ``options``
    (pairs from ``Flag.arg``)."""
    command = [PROGRAM, SERVE]
    for name, path in models.items():
        command += [f"--{MODEL}", f"{name}={path}"]
    for option in options:
        command += option
    return command


def fetch_command(uri: str, dest: str) -> list[str]:
    """``sluice-runtime fetch URI DEST``: download or copy one model file to ``dest``."""
    return [PROGRAM, FETCH, uri, dest]
