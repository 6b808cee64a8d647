"""A pass of the unparker that fails (the store busy) is retried on the next tick. It used to
mark the cross-references as seen before the pass, so after a failure it waited for the next
full pass (30 s) while the released order sat parked."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from flows.sync.config import load_config
from hub.store.delivery_models import Xref
from hub.store.sync_models import Parked
from hub.sync_unparker import Unparker


def parked_order(now: datetime) -> Parked:
    """CRM order SO1, parked until ERP knows customer KH1."""
    return Parked(
        flow="sync.orders",
        target="erp",
        entity="order",
        key="crm:SO1",
        message_id="m1",
        envelope="{}",
        waiting_on=["customer:crm:KH1"],
        reason="",
        parked_at=now,
        checked_at=now,
        checks=0,
    )


async def test_failed_pass_is_retried_at_once(sessions: Any, monkeypatch: Any) -> None:
    now = datetime.now(UTC)
    async with sessions() as s, s.begin():
        s.add(parked_order(now))
        s.add(Xref(entity="customer", key="G-1", system="erp", local_id="K1", updated_at=now))
    unparker = Unparker(sessions, load_config())
    calls: list[int] = []

    async def release(ctx: Any, limit: int, at: datetime, after_id: int = 0) -> tuple[int, int]:
        calls.append(after_id)
        if len(calls) == 1:
            raise RuntimeError("database is locked")
        return 0, after_id

    [router] = unparker.routers  # the order router only, by default
    monkeypatch.setattr(router, "release", release)
    with pytest.raises(RuntimeError):
        await unparker.pass_once()
    await unparker.pass_once()  # nothing changed in the cross-references meanwhile
    assert len(calls) == 2
    await unparker.pass_once()  # now seen: no pass until something changes
    assert len(calls) == 2
