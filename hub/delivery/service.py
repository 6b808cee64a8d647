"""Delivery for every configured target: one flow and one deliverer per system."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from connectors.common.base import Connector
from connectors.common.sink import Sink
from hub.core.processor import FlowSpec
from hub.delivery import flow, queue
from hub.delivery.config import DeliveryConfig
from hub.delivery.deliverer import Deliverer, set_gauges
from hub.store import db


class DeliveryService:
    """Build it before the store is open (``flows()`` go to the runners), ``start`` it with
    the sessions, ``stop`` it with the other tasks, then ``aclose``."""

    def __init__(
        self,
        config: DeliveryConfig,
        *,
        connectors: Mapping[str, Connector] | None = None,
        clients: Mapping[str, httpx.AsyncClient] | None = None,
        second_copy: queue.SecondCopy | None = None,
    ) -> None:
        if connectors is None:
            from connectors.registry import CONNECTORS

            connectors = CONNECTORS
        missing = set(config.targets) - set(connectors)
        if missing:
            raise ValueError(f"delivery targets without a connector: {', '.join(sorted(missing))}")
        self.config = config
        self.connectors = connectors
        self.clients = dict(clients or {})
        self.second_copy = second_copy
        self.deliverers: dict[str, Deliverer] = {}
        self.sessions: async_sessionmaker[AsyncSession] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def from_settings(cls, settings: Any, **kw: Any) -> DeliveryService:
        return cls(DeliveryConfig.from_settings(settings), **kw)

    @property
    def systems(self) -> list[str]:
        return sorted(self.config.targets)

    def flows(self) -> list[FlowSpec]:
        return [flow.spec(s, on_enqueued=functools.partial(self.wake, s)) for s in self.systems]

    def route(self) -> flow.DirectDelivery | None:
        """The flows' messages to these systems, queued in their own transactions (decision
        54); None when ``EAI_DELIVERY_DIRECT`` is off: everything crosses ``outbound.<system>``."""
        if not self.config.direct or not self.systems:
            return None
        return flow.DirectDelivery(self.systems, self.wake)

    def wake(self, system: str) -> None:
        d = self.deliverers.get(system)
        if d is not None:
            d.wake()

    def start(self, sessions: async_sessionmaker[AsyncSession]) -> list[asyncio.Task[None]]:
        """Start a deliverer per system; returns the tasks (the hub watches them)."""
        self.sessions = sessions
        for system in self.systems:
            sink = Sink(
                self.connectors[system],
                self.config.targets[system],
                client=self.clients.get(system),  # None: the sink owns a client of its own
                timeout=self.config.timeout_s,
            )
            d = Deliverer(system, sink, sessions, self.config, second_copy=self.second_copy)
            self.deliverers[system] = d
            self._tasks.append(asyncio.create_task(d.run(), name=f"deliver-{system}"))
        return list(self._tasks)

    def stop(self) -> None:
        for d in self.deliverers.values():
            d.stop()

    async def aclose(self, timeout_s: float = 10.0) -> None:
        """Stop, wait for the deliverers (they give unfinished rows back), close clients."""
        self.stop()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout_s)
            for t in pending:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for d in self.deliverers.values():
            with contextlib.suppress(Exception):
                await d.sink.aclose()

    async def status(self) -> list[dict[str, Any]]:
        """Per target: durable queue counts from the store and this process's counters."""
        if self.sessions is None:
            return [{"system": s, "url": self.config.targets[s]} for s in self.systems]
        return await delivery_status(
            self.sessions,
            self.systems,
            urls=self.config.targets,
            counters={s: d.counters.as_dict() for s, d in self.deliverers.items()},
        )


async def delivery_status(
    sessions: async_sessionmaker[AsyncSession],
    systems: list[str] | None = None,
    *,
    urls: Mapping[str, str] | None = None,
    counters: Mapping[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """What the admin API shows per target system.

    ``delivered``, ``dead``, ``pending``, ``retrying`` (pending and failed before),
    ``suppressed`` (echoes) and ``oldest_pending_age_s`` are durable, from the store, for all
    workers; ``failed`` (failed attempts) and ``process`` are this process's counters.
    """
    async with db.read_sessionmaker(sessions)() as s, s.begin():
        found = await queue.counts(s, systems)
    now = datetime.now(UTC)
    out = []
    for system in sorted(found):
        c = found[system]
        set_gauges(system, c)
        mine = dict((counters or {}).get(system, {}))
        age = (now - c.oldest_pending_at).total_seconds() if c.oldest_pending_at else None
        last_at = mine.get("last_error_at")
        out.append(
            {
                "system": system,
                "url": (urls or {}).get(system),
                "delivered": c.delivered,
                "failed": mine.get("failed", 0),
                "retrying": c.retrying,
                "dead": c.dead,
                "pending": c.pending,
                "suppressed": c.suppressed,
                "oldest_pending_age_s": round(age, 3) if age is not None else None,
                "last_error": mine.get("last_error"),
                "last_error_age_s": round(time.time() - last_at, 3) if last_at else None,
                "process": mine,
            }
        )
    return out
