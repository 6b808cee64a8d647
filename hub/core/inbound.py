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
        return cls(
            topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            value=rec.value,
            key=rec.key,
            headers=tuple((k, v or b"") for k, v in (rec.headers or ())),
            timestamp_ms=rec.timestamp or 0,
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
