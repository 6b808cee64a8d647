"""Issue 6 end to end: an ERP purchase requisition above 5,000 CNY reaches OA, goes unanswered,
is urged up the ladder and escalated; OA's reminder inbox shows exactly the expected urges.

Everything is the real thing except time: the ERP record enters through the hub's webhook
(``POST /connectors/erp/requisition``), passes the records flow and the urge flow, is delivered
to the OA simulator's workflow inbox by the delivery runtime (``EAI_DELIVERY_TARGETS
oa=<simulator>``), and the hub's own urge scheduler, whose clock the test holds, urges it; every
urge travels outbox -> ``outbound.oa`` -> delivery -> the simulator's ``/api/reminders``. The
clock walks hour by hour from the submission to past the escalation, so an urge sent early or
twice would show.

The requisition names only its approver (ERP has no field for the superior): the escalation
finds 董事长 through the shipped policy's org chart (``org.authority_superiors.gm``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import uvicorn
from sqlalchemy import func, select

from connectors.oa.simulator import create_app
from hub.runtime import Hub
from hub.settings import Settings
from hub.store.delivery_models import Delivery
from hub.store.urge_models import Approval, UrgeRecord
from tests.conftest import AUTH, TEST_TOKEN
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

SH = ZoneInfo("Asia/Shanghai")

# EBAN item 0010000123/00010: 200 kg of die steel at 61.73 CNY/kg = 12,346 CNY, above 5,000:
# the general manager's band, 3 working days. Created Wednesday 30 Sep 2026 16:00, the eve of
# the National Day holiday (1-8 Oct; Sat 10 Oct is an adjusted working day).
REQUISITION = {
    "BANFN": "0010000123",
    "BNFPO": "00010",
    "TXZ01": "刀头模具钢材 Cr12MoV",
    "MATNR": "M-10023",
    "MENGE": "200.000",
    "MEINS": "KG",
    "PREIS": "61.73",
    "WAERS": "CNY",
    "AFNAM": "张三",
    "ZZDEPT": "采购部",
    "ZZAPPROVER": "李总",
    "EKGRP": "101",
    "BADAT": "20260930",
    "ERZET": "160000",
}

# Worked out by hand from the shipped policy (standard ladder: deadline, +4 working hours,
# +1, +1, +2 working days; working hours 08:30-12:00 and 13:30-17:30; the holiday calendar):
# (OA send_time, remind_level, OA channel code, to_user).
EXPECTED = [
    ("2026-10-10 16:00", "1", "MAIL", "李总"),  # deadline: 3 working days after submission
    ("2026-10-12 11:00", "2", "IM", "李总"),  # 1.5 h on Sat 10 Oct + 2.5 h on Monday
    ("2026-10-13 11:00", "3", "SMS", "李总"),
    ("2026-10-14 11:00", "4", "TEL", "李总"),
    ("2026-10-16 11:00", "5", "ESC", "董事长"),  # above the general manager (policy org)
]


def at(y: int, mo: int, d: int, h: int = 0) -> dt.datetime:
    return dt.datetime(y, mo, d, h, tzinfo=SH)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@contextlib.asynccontextmanager
async def oa_simulator(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    app = create_app(tmp_path / "oa.sqlite")
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    for _ in range(250):
        if server.started or task.done():
            break
        await asyncio.sleep(0.02)
    assert server.started, "the OA simulator did not start"
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
            yield c
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def inbox(oa: httpx.AsyncClient, path: str) -> list[dict[str, Any]]:
    r = await oa.get(path, params={"limit": 1000})
    r.raise_for_status()
    return [item["record"] for item in r.json()["items"]]


async def test_erp_requisition_is_urged_in_oa_up_the_ladder_to_the_superior(
    broker: str, store_url: str, tmp_path: Path
) -> None:
    clock = Clock(at(2026, 9, 30, 16))
    async with oa_simulator(tmp_path) as oa:
        port = free_port()
        settings = Settings(
            kafka_bootstrap=broker,
            database_url=store_url,
            port=port,
            topic_partitions=2,
            admin_token=TEST_TOKEN,
            delivery_targets=f"oa={oa.base_url}",
            delivery_poll_interval_ms=50,
        )
        hub = Hub(settings)
        await hub.start()
        try:
            sched = hub.urge_scheduler
            assert sched is not None, "the hub runs the urge scheduler"
            # The test holds the scheduler's time: its loop (which ticks on its own every
            # second; tests/unit/test_urge_scheduler.py covers it) is stopped and the hub's
            # scheduler is ticked once per simulated hour instead.
            sched.stop()
            loop_task = next(t for t in hub._tasks if t.get_name() == "urge-scheduler")
            await asyncio.wait_for(loop_task, 10)
            sched.clock = clock
            sessions = hub.sessions
            assert sessions is not None

            async def urges_stored() -> int:
                async with sessions() as s:
                    return int(await s.scalar(select(func.count()).select_from(UrgeRecord)) or 0)

            # 1. ERP posts the requisition to the hub's webhook.
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=AUTH) as c:
                r = await c.post("/connectors/erp/requisition", json=REQUISITION)
            assert r.status_code == 202, r.text

            # 2. It reaches OA's workflow as an approval form, with ERP's number.
            async def form_in_oa() -> bool:
                return len(await inbox(oa, "/api/approvals")) == 1

            await wait_until(form_in_oa, what="the requisition in OA's approvals", timeout=30)
            [form] = await inbox(oa, "/api/approvals")
            assert (form["ext_ref"], form["applicant"], form["approver"]) == (
                "0010000123/00010",
                "张三",
                "李总",
            )
            assert (form["title"], form["amount"], form["submit_time"]) == (
                "刀头模具钢材 Cr12MoV",
                "12,346.00",  # OA writes amounts with thousands separators
                "2026-09-30 16:00",
            )
            async with sessions() as s:
                row = (await s.execute(select(Approval))).scalar_one()
            assert (row.authority, row.escalate_to) == ("gm", "董事长")

            # 3. Nobody decides. The clock walks hour by hour (07:00-20:00 each day: the
            #    night is quiet, and an urge sent in it would show in the morning's count);
            #    after every hour the urges stored are exactly those due by then: none early,
            #    none twice, none missing.
            t = clock.now
            end = at(2026, 10, 17, 18)
            while t <= end:
                if 7 <= t.hour <= 20:
                    clock.now = t
                    await sched.tick()
                    due = [e for e in EXPECTED if e[0] <= t.strftime("%Y-%m-%d %H:%M")]
                    assert await urges_stored() == len(due), f"at {t:%Y-%m-%d %H:%M}"
                t += dt.timedelta(hours=1)

            # 4. Every urge is delivered to OA's reminder inbox, and nothing else is.
            async def delivered() -> bool:
                async with sessions() as s:
                    open_ = await s.scalar(
                        select(func.count()).where(Delivery.status.in_(("pending",)))
                    )
                return open_ == 0 and len(await inbox(oa, "/api/reminders")) >= len(EXPECTED)

            await wait_until(delivered, what="the urges in OA's reminder inbox", timeout=30)
            await asyncio.sleep(0.5)  # a straggler would show now
            # Each urge is a record of its own (keyed by its id), delivered concurrently with
            # the others, so the inbox's arrival order is not the ladder's: sort by sequence.
            reminders = sorted(await inbox(oa, "/api/reminders"), key=lambda m: int(m["seq"]))
            stats = (await oa.get("/_sim/stats")).json()
        finally:
            await hub.stop()

    assert [
        (m["send_time"], m["remind_level"], m["channel"], m["to_user"]) for m in reminders
    ] == EXPECTED
    assert [m["seq"] for m in reminders] == ["1", "2", "3", "4", "5"]
    assert all(m["ext_ref"] == "0010000123/00010" and m["source"] == "ERP" for m in reminders)
    # Each urge points at the one before it.
    assert reminders[0].get("prev_remind_id") is None
    assert [m["prev_remind_id"] for m in reminders[1:]] == [m["remind_id"] for m in reminders[:-1]]
    assert reminders[-1]["escalate_to"] == "董事长"

    texts = [m["content"] for m in reminders]
    # The first names the requester, the item, the amount, how long it waited and the deadline.
    assert texts[0].startswith("李总您好：张三（采购部）提交的请购单「刀头模具钢材 Cr12MoV」")
    assert "¥12,346.00" in texts[0] and "10月10日" in texts[0] and "已等待" in texts[0]
    # The later ones refer to the earlier urge by its date (the first went out on 10 Oct).
    assert "再次提醒：我于 10月10日" in texts[1] and "第 2 次催办" in texts[1]
    assert "第 4 次催办" in texts[3]
    # The escalation is addressed to the superior and tells whose desk it waits on.
    assert texts[4].startswith("董事长您好：张三（采购部）提交的请购单「刀头模具钢材 Cr12MoV」")
    assert "在李总" in texts[4] and "请您督办" in texts[4]
    # OA holds one form and five reminders, each created once and never overwritten.
    assert stats["records"]["approval"] == 1 and stats["records"]["reminder"] == 5
    assert stats["created"] == {"approval": 1, "reminder": 5}
    assert stats.get("updated", {}) == {} and stats["duplicate_records"]["reminder"] == 0
