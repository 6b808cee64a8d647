"""A consumed record, independent of the Kafka client that fetched it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class InboundRecord:
    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_kafka(cls, rec: Any) -> InboundRecord:
        # Positional, and a list made then frozen: made for every record consumed, where the
        # keyword call and a generator cost ~1 us more (3.6-4.0 against 1.9-3.4 us).
        headers = rec.headers
        return cls(
            rec.topic,
            rec.partition,
            rec.offset,
            rec.value,
            rec.key,
            tuple([(k, v or b"") for k, v in headers]) if headers else (),
            rec.timestamp or 0,
        )

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v.decode("utf-8", "replace")
        return None


def headers_to_json(headers: tuple[tuple[str, bytes], ...] | list[tuple[str, bytes]]) -> list[Any]:
    return [[k, v.decode("latin-1")] for k, v in headers]


def headers_from_json(data: list[Any]) -> list[tuple[str, bytes]]:
    return [(str(k), str(v).encode("latin-1")) for k, v in data]
