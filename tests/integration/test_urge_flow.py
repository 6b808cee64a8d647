"""Approval urges end to end on the embedded broker and a real store (SQLite, PostgreSQL).

An ERP purchase requisition above 5,000 CNY enters as a canonical approval request, passes the
records flow (changes.approval) and the urge flow, goes unanswered, and the scheduler (on a
fake clock) urges it up the ladder to the superior: outbound.oa holds exactly those urges.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from connectors.erp.connector import build as build_erp
from contracts import topics
from contracts.approval import Urge
from contracts.envelope import Entity, Envelope
from flows.records import flow as records
from flows.urge import flow as urge_flow
from flows.urge.policy import DEFAULT_POLICY_PATH, default_policy
from hub.broker.embedded import free_port
from hub.runtime import Hub
from hub.settings import Settings
from hub.store import db
from hub.store.models import OutboxRow
from hub.store.urge_models import Approval, UrgeRecord
from hub.urge_scheduler import UrgeScheduler
from tests.conftest import hub_env
from tests.helpers import produce_envs, read_topic, wait_until
from tests.unit.test_urge_scheduler import SH, Clock, Feed, at, request_env, run_due

pytestmark = pytest.mark.integration

POLICY = default_policy()
CAL = POLICY.build_calendar()


def requisition() -> Envelope:
    """EBAN item 0010000123/00010: 200 kg of die steel at 61.73 CNY/kg = 12,346 CNY (GM
    band), created Wednesday 30 Sep 2026 16:00, the day before the National Day holiday."""
    env = build_erp().to_envelope(
        "requisition",
        {
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
        },
    )
    # EBAN has no field for the approver's superior; OA's approval chain or an org directory
    # supplies it. Here the request carries it, as the canonical contract allows.
    return env.model_copy(update={"body": {**env.body, "superior": "王董"}})


async def test_erp_requisition_is_urged_up_the_ladder_to_the_superior(
    broker: str, store_url: str
) -> None:
    settings = Settings(kafka_bootstrap=broker, database_url=store_url, topic_partitions=3)
    hub = Hub(settings, flows=[records.spec(), urge_flow.spec(POLICY, CAL)], serve_api=False)
    # If the hub runs its own urge scheduler (real clock), keep it out: this test owns time.
    hub.run_urge_scheduler = False  # type: ignore[attr-defined]
    await hub.start()
    try:
        assert hub.sessions is not None and hub.relay is not None
        sessions = hub.sessions
        env = requisition()
        assert env.body["amount"] == "12346.00"
        await produce_envs(broker, topics.canonical(Entity.approval), [env])

        async def planned() -> bool:
            async with sessions() as s:
                return await s.scalar(select(func.count()).select_from(Approval)) == 1

        await wait_until(planned, what="the requisition in the approvals table")
        async with sessions() as s:
            row = (await s.execute(select(Approval))).scalar_one()
        assert row.key == "erp:0010000123/00010"
        assert (row.authority, row.deadline) == ("gm", at(2026, 10, 10, 16))

        clock = Clock(at(2026, 9, 30, 16))
        sched = UrgeScheduler(sessions, POLICY, CAL, clock=clock, on_committed=hub.relay.wake)
        # Nothing before the deadline, whatever the hour.
        for day in range(1, 10):
            clock.set(at(2026, 9, 30, 16) + dt.timedelta(days=day))
            assert await sched.tick() == 0
        assert await run_due(sessions, clock, at(2026, 12, 31), sched) == 5
        await hub.relay.drain()
        records_ = await read_topic(broker, topics.outbound("oa"))
    finally:
        await hub.stop()

    envs = sorted(
        (Envelope.from_bytes(r.value) for r in records_), key=lambda e: e.entity is Entity.urge
    )
    # The requisition itself, for OA's workflow, and the urges about it, each a record of its
    # own (keyed by its id).
    assert [e.entity for e in envs] == [Entity.approval] + [Entity.urge] * 5
    assert sorted(r.key for r in records_) == sorted(
        [b"erp:0010000123/00010"] + [f"hub:{e.source_id}".encode() for e in envs[1:]]
    )
    urges = sorted((Urge.model_validate(e.body) for e in envs[1:]), key=lambda u: u.sequence)
    assert [
        (u.sent_at.astimezone(SH) if u.sent_at else None, u.level, u.channel, u.recipient)
        for u in urges
    ] == [
        (at(2026, 10, 10, 16), 1, "email", "李总"),
        (at(2026, 10, 12, 11), 2, "im", "李总"),
        (at(2026, 10, 13, 11), 3, "sms", "李总"),
        (at(2026, 10, 14, 11), 4, "phone", "李总"),
        (at(2026, 10, 16, 11), 5, "escalation", "王董"),
    ]
    assert [u.sequence for u in urges] == [1, 2, 3, 4, 5]
    assert all(u.approval_id == "0010000123/00010" and u.origin_system == "erp" for u in urges)
    assert urges[0].text.startswith("李总您好：张三（采购部）提交的请购单「刀头模具钢材 Cr12MoV」")
    assert "¥12,346.00" in urges[0].text
    assert urges[-1].escalated_to == "王董"
    assert "在李总" in urges[-1].text and "请您督办" in urges[-1].text


async def test_two_schedulers_on_one_store_never_urge_twice(store_url: str) -> None:
    """SKIP LOCKED claims and guarded writes on PostgreSQL, serialised claims on SQLite."""
    engines = [db.create_engine(store_url), db.create_engine(store_url)]
    try:
        await db.migrate(engines[0])
        sessions = [db.sessionmaker(e) for e in engines]
        await Feed(sessions[0])(
            *[
                request_env(f"PR-{i:03d}", approver=f"审批人{i}", superior=f"上级{i}")
                for i in range(30)
            ]
        )
        clock = Clock(at(2026, 10, 10, 15))
        workers = [
            UrgeScheduler(s, POLICY, CAL, clock=clock, worker_id=f"w{i}", max_per_tick=4)
            for i, s in enumerate(sessions)
        ]
        assert await run_due(sessions[0], clock, at(2026, 10, 31), *workers) == 150
        # One-click urges racing from both workers on the same click id: one wins.
        clock.set(at(2026, 11, 2, 10))
        results = await asyncio.gather(*(w.one_click("erp:PR-007", "click-1") for w in workers))
        assert sorted(r.outcome for r in results) == ["duplicate", "send"]
        async with sessions[0]() as s:
            n_urges = await s.scalar(select(func.count()).select_from(UrgeRecord))
            n_distinct = await s.scalar(select(func.count(func.distinct(UrgeRecord.urge_id))))
            n_out = await s.scalar(
                select(func.count()).where(OutboxRow.topic == topics.outbound("oa"))
            )
        assert n_urges == n_distinct == 151
        assert n_out == 151 + 30  # the urges, and the 30 requests forwarded to OA's workflow
        assert all(w.metrics.sent for w in workers), "both workers did part of the work"
    finally:
        for e in engines:
            await e.dispose()


@pytest.mark.parametrize("command", ["run", "worker"])
def test_a_wrong_urge_policy_stops_the_hub_at_start_naming_field_value_and_rule(
    tmp_path: Path, command: str
) -> None:
    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    bad = text.replace("  max_per_approval: 8", "  max_per_approval: 0", 1).replace(
        "    gm: 董事长", "    gmm: 董事长", 1
    )
    policy = tmp_path / "urge-policy.yaml"
    policy.write_text(bad, encoding="utf-8")
    line_cap = bad[: bad.index("max_per_approval: 0")].count("\n") + 1
    env = hub_env(
        EAI_URGE_POLICY=str(policy),
        EAI_PORT=str(free_port()),
        # A worker needs a broker address; nothing must be contacted before the check.
        EAI_KAFKA_BOOTSTRAP="127.0.0.1:9",
        COLUMNS="300",
    )
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "hub.cli", command],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )
    out = (r.stdout + r.stderr).decode()
    assert r.returncode == 2, out
    assert f"EAI_URGE_POLICY: invalid urge policy {policy}" in out, out
    assert (
        f"line {line_cap}: caps.max_per_approval: 0 Input should be greater than or equal to 1"
        in out
    ), out
    assert "Traceback" not in out
    assert time.monotonic() - t0 < 20


def test_a_missing_urge_policy_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    env = hub_env(EAI_URGE_POLICY=str(missing), EAI_PORT=str(free_port()), COLUMNS="300")
    r = subprocess.run(
        [sys.executable, "-m", "hub.cli", "run"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )
    out = (r.stdout + r.stderr).decode()
    assert r.returncode == 2, out
    assert f"EAI_URGE_POLICY: invalid urge policy {missing} (1 problem):" in out, out
    assert "file: cannot be read: No such file or directory" in out, out
