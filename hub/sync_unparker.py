"""Releases parked messages when what they wait for arrives.

A loop, like the relay: each pass looks at the parked rows page by page (after a change in
the cross-reference table, or every ``FULL_PASS_S`` regardless) and, in one transaction per
page, routes what can go now and deletes those rows in the same commit that writes their
outbox rows. On PostgreSQL the page is locked with SKIP LOCKED, so workers share the work.

Each flow that parks has a router (``ROUTERS``, by the flow's name, which is ``parked.flow``);
a pass runs every router of the flows this hub runs, each over its own parked rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flows.sync import bom_routing, inventory_flow, routing
from flows.sync.config import SyncConfig
from flows.sync.routing import Router
from hub.core.processor import DirectRoute, FlowContext
from hub.store import db
from hub.store.delivery_models import Xref
from hub.store.sync_models import Parked

log = logging.getLogger(__name__)

PAGE = 500
FULL_PASS_S = 30.0

# parked.flow -> the router that releases that flow's parked messages
ROUTERS: dict[str, Callable[[SyncConfig], Router]] = {
    routing.NAME: routing.OrderRouter,
    bom_routing.NAME: bom_routing.BomRouter,
    bom_routing.CODES: bom_routing.CodeWriteback,
    inventory_flow.NAME: inventory_flow.InventoryRouter,
}


class Unparker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        config: SyncConfig,
        *,
        flows: Sequence[str] = (routing.NAME,),
        on_committed: Any = None,
        route: DirectRoute | None = None,
    ) -> None:
        self.sessions = sessions
        # the order flow's path for a key: a released order and the next version the flow
        # routes must reach the delivery queue the same way, or they could swap places
        self.route = route
        self.routers = [ROUTERS[name](config) for name in flows]
        self.interval_s = config.parking.check_interval_ms / 1000
        self.on_committed = on_committed
        self.released = 0
        self._seen: tuple[Any, ...] | None = None
        self._full_at = 0.0
        self._stop = asyncio.Event()
        self._readers = db.read_sessionmaker(sessions)

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.pass_once()
            except Exception as exc:  # the store is down: try again next time
                log.warning("unparker: pass failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval_s)

    async def pass_once(self, force: bool = False) -> int:
        # read-only: on SQLite this look every second takes no write lock
        async with self._readers() as s:
            parked = await s.scalar(select(func.count()).select_from(Parked))
            mark = tuple(
                await s.execute(select(func.max(Xref.updated_at), func.count()).select_from(Xref))
            )
        if not parked:
            return 0
        due = time.monotonic() - self._full_at > FULL_PASS_S
        if not force and not due and mark == self._seen:
            return 0
        released = 0
        for router in self.routers:
            released += await self._release(router)
        # only a pass that went through counts as having seen this state of the
        # cross-references: after a failed one (SQLite busy, say) the next pass retries at
        # once instead of waiting FULL_PASS_S for the next full pass
        self._seen = mark
        self._full_at = time.monotonic()
        self.released += released
        if released:
            log.info("unparker: released %d parked message(s)", released)
        return released

    async def _release(self, router: Router) -> int:
        released = 0
        after = 0
        while True:
            async with self.sessions() as s, s.begin():
                ctx = FlowContext(session=s, flow="sync.unpark", route=self.route)
                n, last = await router.release(ctx, PAGE, datetime.now(UTC), after)
                await ctx.write_out()
            released += n
            if n and self.on_committed is not None:
                self.on_committed()
            if last == after:
                break
            after = last
        return released
