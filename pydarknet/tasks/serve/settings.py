"""The server's settings: one value, one home for each default and its check (the command line and the Python API
build it alike)."""
from dataclasses import dataclass

from ...files.config import DarknetError

UNITS = {"k": 2**10, "m": 2**20, "g": 2**30}


@dataclass(frozen=True)
class ServeSettings:
    """`host`: the address listened on (127.0.0.1: nothing is exposed unless asked); `port` (0: a free one, which
    the ready line names). Dynamic batching as Triton's: images waiting for one model join a forward pass of at
    most `max_batch`, the first waiting at most `max_delay_ms` for more (0: a pass takes what is waiting when the
    worker is free, which batches under load and adds no latency alone). `max_queue`: images waiting for a model
    before a request is refused (503 with Retry-After); `timeout`: seconds a request may wait for its answer
    (then 504); `exit_timeout`: seconds a stop signal waits for the requests in flight. `max_body`: bytes of a
    request body (413 past it); `max_pixels`: pixels an image may declare (400 past it, before it is decoded).
    `api_key`: every route but health needs `Authorization: Bearer KEY`. `log_requests`: one line per request on
    stderr."""
    host: str = "127.0.0.1"
    port: int = 8080
    max_batch: int = 8
    max_delay_ms: float = 0.0
    max_queue: int = 64
    timeout: float = 30.0
    exit_timeout: float = 30.0
    max_body: int = 32 * 2**20
    max_pixels: int = 40_000_000
    api_key: str = None
    log_requests: bool = True

    def __post_init__(self):
        for name, least in (("port", 0), ("max_batch", 1), ("max_queue", 1), ("max_body", 1), ("max_pixels", 1)):
            if getattr(self, name) < least:
                raise DarknetError(f"--{name.replace('_', '-')} {getattr(self, name)}: give at least {least}")
        if self.port > 65535:
            raise DarknetError(f"--port {self.port}: give a port from 0 to 65535")
        for name in ("max_delay_ms", "timeout", "exit_timeout"):
            if not getattr(self, name) >= 0:
                raise DarknetError(f"--{name.replace('_', '-')} {getattr(self, name)}: give a time from 0")
        if self.api_key is not None and not self.api_key.strip():
            raise DarknetError("--api-key is empty: give the key clients send as `Authorization: Bearer KEY`")

    @classmethod
    def given(cls, **values):
        """The settings with the values given (None: the default)."""
        return cls(**{name: value for name, value in values.items() if value is not None})


def byte_size(text, option):
    """Bytes of a size given as a number, or with K, M or G (32M); None for None."""
    if text is None:
        return None
    lowered = str(text).strip().lower().removesuffix("b")
    scale = UNITS.get(lowered[-1:], 1)
    try:
        return int(float(lowered[:-1] if scale > 1 else lowered) * scale)
    except ValueError:
        raise DarknetError(f"{option} {text}: give bytes, or a size with K, M or G (32M)") from None
