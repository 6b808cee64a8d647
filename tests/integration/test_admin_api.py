"""The admin API on the embedded broker and a real store: tokens and roles, audit, dead-letter
re-drive, replay (dry run, ledger, force, journal, cancel) and the operator CLI."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer, TopicPartition
from fastapi import FastAPI
from sqlalchemy import delete, func, select

from contracts import topics
from contracts.envelope import Entity, Envelope
from hub.api.admin import install, start_replay_runner
from hub.api.app import create_app
from hub.api.auth import Role, create_token
from hub.broker.embedded import free_port
from hub.broker.kafka import end_offsets, topic_end_offsets
from hub.core.inbound import headers_to_json
from hub.replay import PartitionPlan, ReplayRunner, new_counters
from hub.runtime import Hub
from hub.settings import Settings
from hub.store.admin_models import ApiToken, AuditEntry, ReplayJob
from hub.store.models import (
    DeadLetter,
    JournalEntry,
    OutboxRow,
    ProcessedMessage,
    RecordEvent,
    SourceRecord,
)
from tests.helpers import customer_env, header, produce, produce_envs, read_topic, wait_until

pytestmark = pytest.mark.integration

CUSTOMERS = topics.canonical(Entity.customer)
ADMIN_PREFIXES = ("/tokens", "/audit", "/dead-letters", "/replays")


@dataclass
class Admin:
    hub: Hub
    app: FastAPI
    url: str
    runner: ReplayRunner
    tokens: dict[str, str]
    responses: list[str] = field(default_factory=list)

    def client(self, role: str | None = None, token: str | None = None) -> httpx.AsyncClient:
        tok = token or (self.tokens[role] if role else None)
        headers = {"Authorization": f"Bearer {tok}"} if tok else {}
        responses = self.responses

        async def keep(r: httpx.Response) -> None:
            await r.aread()
            responses.append(r.text)

        return httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=30, event_hooks={"response": [keep]}
        )

    async def count(self, stmt: Any) -> int:
        assert self.hub.sessions is not None
        async with self.hub.sessions() as s:
            return int(await s.scalar(stmt) or 0)


@asynccontextmanager
async def admin_hub(broker: str, store_url: str, **kw: Any) -> AsyncIterator[Admin]:
    """A hub with its flows, the admin routers installed on its app (what app.py/runtime.py
    will do once wired), the replay runner, a uvicorn server on a free port, and one token
    per role."""
    port = free_port()
    settings = Settings(
        kafka_bootstrap=broker,
        database_url=store_url,
        port=port,
        topic_partitions=2,
        batch_size=50,
        **kw,
    )
    hub = Hub(settings, serve_api=False)
    await hub.start()
    app = install(create_app(hub))
    runner, runner_task = start_replay_runner(hub, poll_interval_s=0.1, idle_timeout_s=10)
    hub.replayer = runner  # type: ignore[attr-defined]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    server_task = asyncio.create_task(server.serve())
    tokens: dict[str, str] = {}
    try:
        assert hub.sessions is not None
        async with hub.sessions() as s, s.begin():
            for role in Role:
                _, tokens[role.value] = await create_token(s, f"test-{role.value}", role, "test")
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.02)
        assert server.started
        yield Admin(hub, app, f"http://127.0.0.1:{port}", runner, tokens)
    finally:
        server.should_exit = True
        runner.stop()
        await asyncio.gather(server_task, runner_task, return_exceptions=True)
        await hub.stop()


def routes(app: FastAPI) -> list[tuple[str, str]]:
    """(METHOD, path with every path parameter = 1) of every operation in the OpenAPI doc."""
    out = []
    for path, ops in app.openapi()["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "1", path)
        out += [
            (m.upper(), concrete) for m in ops if m in ("get", "post", "put", "patch", "delete")
        ]
    return out


def admin_routes(app: FastAPI) -> list[tuple[str, str]]:
    return [(m, p) for m, p in routes(app) if p.startswith(ADMIN_PREFIXES)]


async def wait_job(c: httpx.AsyncClient, job_id: int, timeout: float = 30) -> dict[str, Any]:
    job: dict[str, Any] = {}

    async def ended() -> bool:
        nonlocal job
        job = (await c.get(f"/replays/{job_id}")).json()
        return job["status"] in ("done", "failed", "cancelled")

    await wait_until(ended, timeout, what=f"replay job {job_id} to end")
    return job


async def replay(c: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await c.post("/replays", json=body)
    assert r.status_code == 201, r.text
    job = await wait_job(c, r.json()["id"])
    assert job["status"] == "done", job
    return job


# --- auth, roles, audit ----------------------------------------------------------------------


async def test_tokens_roles_and_audit(
    broker: str, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with admin_hub(broker, sqlite_url) as h:
        routes = admin_routes(h.app)
        assert len(routes) >= 10, routes
        mutating = [(m, p) for m, p in routes if m != "GET"]
        bad = "eai_" + "x" * 43
        async with h.client() as anon, h.client(token=bad) as wrong, h.client("viewer") as viewer:
            for method, path in routes:
                for c in (anon, wrong):
                    r = await c.request(method, path, json={} if method == "POST" else None)
                    assert r.status_code == 401, (method, path, r.status_code, r.text)
                    assert r.headers.get("www-authenticate") == "Bearer", (method, path)
            for method, path in mutating:
                r = await viewer.request(method, path, json={})
                assert r.status_code == 403, (method, path, r.status_code, r.text)
            assert (await viewer.get("/dead-letters")).status_code == 200
            assert (await viewer.get("/replays")).status_code == 200
            assert (await viewer.get("/audit")).status_code == 403
            # every read is a viewer's (docs/admin-api.md), but the token list and audit log
            paths = h.app.openapi()["paths"]
            reads = sorted(p for p, ops in paths.items() if "get" in ops and "{" not in p)
            assert "/connectors" in reads and "/golden/{entity}" not in reads
            for path in reads:
                r = await viewer.get(path)
                refused = r.status_code == 403
                assert refused == (path in ("/tokens", "/audit")), (path, r.status_code, r.text)
        async with h.client("operator") as op, h.client("admin") as admin:
            assert (await op.get("/audit")).status_code == 403
            assert (
                await op.post("/tokens", json={"name": "x", "role": "viewer"})
            ).status_code == 403
            r = await admin.post("/tokens", json={"name": "ci-bot", "role": "operator"})
            assert r.status_code == 201, r.text
            created = r.json()
            new = created["token"]
            assert new.startswith("eai_") and len(new) > 40
            listed = (await admin.get("/tokens")).json()
            assert "ci-bot" in [t["name"] for t in listed]
            assert new not in json.dumps(listed)
            async with h.client(token=new) as bot:
                assert (await bot.get("/dead-letters")).status_code == 200
                assert (await admin.delete(f"/tokens/{created['id']}")).status_code == 200
                assert (await bot.get("/dead-letters")).status_code == 401
            # body size limit
            big = {"ids": [1], "patch": {"x": "y" * 2_000_000}}
            assert (await op.post("/dead-letters/redrive", json=big)).status_code == 413
            assert (await op.get("/dead-letters", params={"limit": 501})).status_code == 422

            audit = (await admin.get("/audit", params={"limit": 500})).json()["items"]
        denied = [a for a in audit if a["status"] == 403 and a["actor"] == "test-viewer"]
        assert len(denied) == len(mutating), "every refused mutating call is audited"
        actions = [(a["action"], a["status"], a["actor"]) for a in audit]
        assert ("tokens.create", 201, "test-admin") in actions
        assert ("tokens.revoke", 200, "test-admin") in actions
        create_row = next(a for a in audit if a["action"] == "tokens.create" and a["status"] == 201)
        assert create_row["params"]["name"] == "ci-bot"
        assert await h.count(select(func.count()).select_from(AuditEntry)) == len(audit)
        assert h.hub.sessions is not None
        async with h.hub.sessions() as s:
            rows = (await s.execute(select(ApiToken.token_hash, ApiToken.hint))).all()
        assert new not in json.dumps([list(r) for r in rows]), "only the hash is stored"
    bodies = "\n".join(h.responses)
    for t in [*h.tokens.values(), new, bad]:
        assert t not in caplog.text, "a token leaked into a log line"
        assert bodies.count(t) == (1 if t == new else 0), "a token in a response body"
    # the one response holding a token is the one that created it


async def test_every_app_route_but_health_needs_a_token(sqlite_url: str) -> None:
    """No broker needed: without a token the answer must be 401 before the hub is touched."""
    public = {"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
    hub = Hub(Settings(database_url=sqlite_url), run_flows=False, serve_api=False)
    app = install(create_app(hub))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as anon:
        for method, path in routes(app):
            if path in public:
                continue
            resp = await anon.request(method, path)
            assert resp.status_code == 401, (method, path, resp.status_code)


# --- dead letters ----------------------------------------------------------------------------


def poison(i: int) -> Envelope:
    good = customer_env(i)
    return good.model_copy(update={"body": {"kind": "company", "name": f"坏公司{i}"}})


async def test_redrive_with_patch_applies_once(broker: str, store_url: str) -> None:
    bad, other = poison(1), poison(2)
    async with admin_hub(broker, store_url) as h, h.client("operator") as op:
        await produce(broker, CUSTOMERS, [(bad.key.encode(), bad.to_bytes())])
        await produce(broker, CUSTOMERS, [(other.key.encode(), other.to_bytes())])

        async def two_dead() -> bool:
            return await h.count(select(func.count()).select_from(DeadLetter)) == 2

        await wait_until(two_dead, what="two dead letters")
        page = await op.get("/dead-letters", params={"flow": "records", "reason": "BODY.KIND"})
        items = page.json()["items"]
        assert len(items) == 2 and all(i["stage"] == "validate" for i in items)
        by_mid = {i["message_id"]: i["id"] for i in items}
        dl_id, other_id = by_mid[str(bad.message_id)], by_mid[str(other.message_id)]
        assert (await op.get("/dead-letters", params={"status": "discarded"})).json()["items"] == []
        one = (await op.get(f"/dead-letters/{dl_id}")).json()
        assert base64.b64decode(one["value_base64"]) == bad.to_bytes()
        assert json.loads(one["value_text"])["body"]["kind"] == "company"
        assert "body.kind" in one["reason"] and one["attempts"] == 1
        assert one["topic"] == CUSTOMERS and one["key"] == bad.key
        assert (await op.get("/dead-letters/999999")).status_code == 404

        # A re-drive would write to the dead letter's own topic; other flows write elsewhere.
        redrives = select(func.count()).where(OutboxRow.topic == CUSTOMERS)
        outbox_before = await h.count(redrives)
        fix = {"body": {"kind": "organization"}}
        r = await op.post(
            "/dead-letters/redrive", json={"ids": [dl_id], "patch": fix, "dry_run": True}
        )
        assert r.status_code == 200, r.text
        dry = r.json()
        [item] = dry["items"]
        assert (item["outcome"], item["valid"], item["patched"]) == ("would_send", True, True)
        assert item["message_id"] == str(bad.message_id)
        sent_headers = dict(item["headers"])
        assert sent_headers["eai.redrive.dead_letter_id"] == str(dl_id)
        assert not any(k.startswith("eai.error.") for k in sent_headers)
        assert json.loads(item["value_text"])["body"]["kind"] == "organization"
        unpatched = await op.post("/dead-letters/redrive", json={"ids": [dl_id], "dry_run": True})
        assert unpatched.json()["items"][0]["outcome"] == "invalid"
        assert await h.count(redrives) == outbox_before
        assert (await op.get(f"/dead-letters/{dl_id}")).json()["status"] == "new"
        steal = {"message_id": "00000000-0000-4000-8000-000000000000", **fix}
        r = await op.post("/dead-letters/redrive", json={"ids": [dl_id], "patch": steal})
        assert r.json()["items"][0]["outcome"] == "skipped"
        assert "message_id" in r.json()["items"][0]["reason"]

        r = await op.post("/dead-letters/redrive", json={"ids": [dl_id], "patch": fix})
        assert r.json()["sent"] == 1, r.text
        applied = select(func.count()).where(RecordEvent.message_id == str(bad.message_id))

        async def stored() -> bool:
            return await h.count(applied) == 1

        await wait_until(stored, what="the patched message applied")
        rec_q = select(SourceRecord.revision).where(SourceRecord.source_id == bad.source_id)
        assert await h.count(rec_q) == 1
        detail = (await op.get(f"/dead-letters/{dl_id}")).json()
        assert detail["status"] == "redriven" and len(detail["redrives"]) == 1

        flow = next(r for r in h.hub.runners if r.name == "records")
        dups = flow.metrics.duplicates
        again = await op.post("/dead-letters/redrive", json={"ids": [dl_id], "patch": fix})
        assert again.json()["sent"] == 1

        async def seen_again() -> bool:
            return flow.metrics.duplicates > dups

        await wait_until(seen_again, what="the second re-drive consumed as a duplicate")
        assert await h.count(applied) == 1, "a second re-drive has no second effect"
        assert await h.count(rec_q) == 1

        r = await op.post(
            "/dead-letters/discard", json={"ids": [other_id, 424242], "reason": "junk"}
        )
        assert r.json()["discarded"] == 1, r.text
        r = await op.post("/dead-letters/redrive", json={"ids": [other_id]})
        assert r.json()["items"][0]["outcome"] == "skipped"
        flt = {"filter": {"flow": "records", "status": "new"}, "dry_run": True}
        assert (await op.post("/dead-letters/redrive", json=flt)).json()["selected"] == 0
        assert h.hub.relay is not None
        await h.hub.relay.drain()
        async with h.client("admin") as admin:
            audit = (await admin.get("/audit", params={"limit": 100})).json()["items"]
    redriven = await read_topic(broker, CUSTOMERS)
    copies = [x for x in redriven if header(x, "eai.redrive.dead_letter_id") == str(dl_id)]
    assert len(copies) == 2
    assert {header(x, "eai.redrive.attempt") for x in copies} == {"1", "2"}
    assert all(x.key == bad.key.encode() for x in copies)
    assert not any(k.startswith("eai.error.") for x in copies for k, _ in x.headers)
    assert all(json.loads(x.value)["message_id"] == str(bad.message_id) for x in copies)
    kinds = [(a["action"], a["status"]) for a in audit]
    assert kinds.count(("dead_letters.redrive", 200)) == 7
    assert kinds.count(("dead_letters.discard", 200)) == 1
    dry_row = [a for a in audit if a["params"].get("dry_run") is True][-1]  # the oldest
    assert dry_row["params"]["patch"] == fix and dry_row["actor"] == "test-operator"


# --- replay ----------------------------------------------------------------------------------


async def partition_ends(broker: str, topic: str) -> dict[int, int]:
    c = AIOKafkaConsumer(bootstrap_servers=broker, group_id=None, enable_auto_commit=False)
    await c.start()
    try:
        await c.topics()
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        return {tp.partition: o for tp, o in (await end_offsets(c, tps)).items()}
    finally:
        await c.stop()


async def test_replay_into_records_dry_run_ledger_and_force(broker: str, store_url: str) -> None:
    n = 12
    envs = [customer_env(i) for i in range(n)]
    async with admin_hub(broker, store_url) as h, h.client("operator") as op:
        await produce_envs(broker, CUSTOMERS, envs)

        async def all_stored() -> bool:
            return await h.count(select(func.count()).select_from(SourceRecord)) == n

        await wait_until(all_stored, what=f"{n} customers stored")
        events = await h.count(select(func.count()).select_from(RecordEvent))
        # Only the records flow's own output: the identity flow keeps consuming its changes.
        changes_only = select(func.count()).where(
            OutboxRow.topic == topics.changes(Entity.customer)
        )
        outbox = await h.count(changes_only)

        job = await replay(op, topic=CUSTOMERS, from_offset=0, target_flow="records", dry_run=True)
        rep = job["report"]
        assert rep["per_entity"]["customer"] == {
            "would_create": 0,
            "would_update": 0,
            "unchanged": n,
            "stale": 0,
        }
        assert rep["already_applied"] == n and job["counters"]["read"] == n
        assert job["progress"] == 1.0

        async with h.hub.sessions() as s, s.begin():  # type: ignore[misc]
            await s.execute(
                delete(SourceRecord).where(SourceRecord.source_id.in_(["C00000", "C00001"]))
            )
        job = await replay(op, topic=CUSTOMERS, target_flow="records", dry_run=True, force=True)
        per = job["report"]["per_entity"]["customer"]
        assert (per["would_create"], per["unchanged"]) == (2, n - 2), job["report"]
        assert await h.count(select(func.count()).select_from(SourceRecord)) == n - 2
        assert await h.count(select(func.count()).select_from(RecordEvent)) == events
        assert await h.count(changes_only) == outbox

        job = await replay(op, topic=CUSTOMERS, target_flow="records")
        assert (job["report"]["applied"], job["report"]["duplicates"]) == (0, n)
        assert await h.count(select(func.count()).select_from(SourceRecord)) == n - 2
        assert await h.count(select(func.count()).select_from(RecordEvent)) == events

        job = await replay(op, topic=CUSTOMERS, target_flow="records", force=True)
        assert job["report"]["applied"] == n
        assert job["report"]["ledger"] == f"records.replay.{job['id']}"
        assert await h.count(select(func.count()).select_from(SourceRecord)) == n
        assert await h.count(select(func.count()).select_from(RecordEvent)) == events + n
        stale_ledger = select(func.count()).where(ProcessedMessage.consumer == "records")
        assert await h.count(stale_ledger) == n, "the flow's own ledger is untouched by force"

        ends = await partition_ends(broker, CUSTOMERS)
        assert sum(ends.values()) == n
        job = await replay(op, topic=CUSTOMERS, to_offset=2, target_flow="records", dry_run=True)
        assert job["counters"]["read"] == sum(min(2, e) for e in ends.values())
        job = await replay(
            op, topic=CUSTOMERS, key="crm:C0000[01]", target_topic="replay.out", dry_run=True
        )
        assert (job["counters"]["matched"], job["report"]["would_publish"]) == (2, 2)
        assert job["counters"]["read"] == n

        later = [customer_env(100 + i) for i in range(3)]
        await asyncio.sleep(0.05)
        cut = datetime.now(UTC)
        await asyncio.sleep(0.05)
        await produce_envs(broker, CUSTOMERS, later)
        job = await replay(
            op, topic=CUSTOMERS, from_time=cut.isoformat(), target_topic="replay.out"
        )
        assert (job["counters"]["matched"], job["report"]["published"]) == (3, 3)
        assert h.hub.relay is not None
        await h.hub.relay.drain()
        made = [
            p for p in await topic_end_offsets(h.hub.settings, broker) if p.topic == "replay.out"
        ]
        assert len(made) == 2, "created with EAI_TOPIC_PARTITIONS, not the broker's default"
        assert sum(p.end_offset for p in made) == 3
        bad = await op.post("/replays", json={"topic": CUSTOMERS, "target_flow": "nope"})
        assert bad.status_code == 400
        both = {"topic": CUSTOMERS, "target_flow": "records", "target_topic": "x"}
        assert (await op.post("/replays", json=both)).status_code == 422
    out = await read_topic(broker, "replay.out")
    assert sorted(json.loads(r.value)["source_id"] for r in out) == ["C00100", "C00101", "C00102"]
    assert all(header(r, "eai.replay.job") == str(job["id"]) for r in out)


def journal_rows(topic: str, envs: list[Envelope], partition: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "topic": topic,
            "partition": partition,
            "offset": i,
            "timestamp_ms": 1_700_000_000_000 + i,
            "key": e.key.encode(),
            "value": e.to_bytes(),
            "headers": headers_to_json(e.headers()),
            "message_id": str(e.message_id),
            "source_system": e.source_system,
        }
        for i, e in enumerate(envs)
    ]


async def test_replay_from_journal_and_cancel(
    broker: str, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import insert

    import hub.replay as replay_mod

    async with admin_hub(broker, sqlite_url) as h, h.client("operator") as op:
        assert h.hub.sessions is not None
        # 1. a topic the broker no longer has at all: everything comes from the journal
        old = [customer_env(500 + i, system="erp") for i in range(5)]
        async with h.hub.sessions() as s, s.begin():
            await s.execute(insert(JournalEntry), journal_rows("legacy.customer", old))
        job = await replay(op, topic="legacy.customer", from_offset=0, target_flow="records")
        assert job["counters"]["from_journal"] == 5 and job["counters"]["journal_gaps"] == 0
        assert job["report"]["applied"] == 5
        erp = select(func.count()).where(SourceRecord.source_system == "erp")
        assert await h.count(erp) == 5
        job = await replay(op, topic="legacy.customer", source_system="erp", target_flow="records")
        assert (job["report"]["applied"], job["report"]["duplicates"]) == (0, 5)
        job = await replay(op, topic="legacy.customer", source_system="crm", target_flow="records")
        assert job["counters"]["matched"] == 0

        # a job whose runner died (stale heartbeat) is taken over and resumes where it was
        long_ago = datetime.now(UTC) - timedelta(minutes=10)
        async with h.hub.sessions() as s, s.begin():
            orphan = ReplayJob(
                topic="legacy.customer",
                target_flow="records",
                dry_run=True,
                force=True,
                status="running",
                cancel_requested=False,
                counters={**new_counters(), "total": 5, "read": 3, "from_journal": 3},
                report={},
                positions={"0": PartitionPlan(0, 3, 5, None).to_json()},
                created_by="test",
                created_at=long_ago,
                started_at=long_ago,
                heartbeat_at=long_ago,
            )
            s.add(orphan)
        h.runner.wake()
        job = await wait_job(op, orphan.id)
        assert job["status"] == "done", job
        assert (job["counters"]["read"], job["counters"]["from_journal"]) == (5, 5)
        assert job["report"]["per_entity"]["customer"]["unchanged"] == 2

        # 2. retention took the head of the log: the journal fills it in
        n = 12
        await produce_envs(broker, CUSTOMERS, [customer_env(i) for i in range(n)])
        in_journal = select(func.count()).where(JournalEntry.topic == CUSTOMERS)

        async def journaled() -> bool:
            return await h.count(in_journal) == n

        await wait_until(journaled, what="the records flow journaled everything")
        ends = await partition_ends(broker, CUSTOMERS)

        async def retention(consumer: Any, tps: list[TopicPartition]) -> dict[Any, int]:
            return {tp: min(3, ends[tp.partition]) for tp in tps}

        monkeypatch.setattr(replay_mod, "log_starts", retention)
        job = await replay(op, topic=CUSTOMERS, target_flow="records", dry_run=True)
        assert job["counters"]["from_journal"] == sum(min(3, e) for e in ends.values())
        assert job["counters"]["read"] == n
        assert job["report"]["per_entity"]["customer"]["unchanged"] == n
        monkeypatch.undo()

        # 3. cancel: a running job stops; an ended one answers 409
        r = await op.post(
            "/replays",
            json={"topic": CUSTOMERS, "target_flow": "records", "dry_run": True, "rate_limit": 2},
        )
        job_id = r.json()["id"]

        async def running() -> bool:
            j = (await op.get(f"/replays/{job_id}")).json()
            return bool(j["status"] == "running" and j["counters"]["read"] >= 1)

        await wait_until(running, what="the slow job to start")
        c = await op.post(f"/replays/{job_id}/cancel")
        assert c.status_code == 200 and c.json()["cancel_requested"]
        job = await wait_job(op, job_id, timeout=10)
        assert job["status"] == "cancelled"
        assert job["counters"]["read"] < n
        assert (await op.post(f"/replays/{job_id}/cancel")).status_code == 409

        # a queued job is cancelled at once (the runner is stopped so nothing claims it)
        h.runner.stop()
        await asyncio.sleep(0.3)
        r = await op.post("/replays", json={"topic": CUSTOMERS, "target_topic": "x.y"})
        queued = r.json()["id"]
        c = await op.post(f"/replays/{queued}/cancel")
        assert c.json()["status"] == "cancelled"
        async with h.client("admin") as admin:
            audit = (await admin.get("/audit", params={"action": "replays.cancel"})).json()
        assert [a["status"] for a in audit["items"]] == [200, 409, 200]


# --- the operator CLI ------------------------------------------------------------------------


async def test_cli_against_the_api(broker: str, sqlite_url: str) -> None:
    from typer.testing import CliRunner

    from hub.cli import app as cli
    from hub.cli_admin import register

    if "dlq" not in {g.name for g in cli.registered_groups}:
        register(cli)
    runner = CliRunner()

    def run(*args: str, **env: str) -> Any:
        return runner.invoke(cli, list(args), env={"COLUMNS": "200", **env})

    async with admin_hub(broker, sqlite_url) as h:
        env = {"EAI_API_URL": h.url, "EAI_API_TOKEN": h.tokens["operator"]}
        bad = poison(9)
        await produce(broker, CUSTOMERS, [(bad.key.encode(), bad.to_bytes())])

        async def dead() -> bool:
            return await h.count(select(func.count()).select_from(DeadLetter)) == 1

        await wait_until(dead, what="a dead letter")
        out = await asyncio.to_thread(run, "dlq", "list", **env)
        assert out.exit_code == 0 and "validate" in out.stdout, out.stdout
        dl_id = await h.count(select(func.min(DeadLetter.id)))
        out = await asyncio.to_thread(run, "dlq", "show", str(dl_id), **env)
        assert "坏公司9" in out.stdout
        patch = json.dumps({"body": {"kind": "organization"}})
        out = await asyncio.to_thread(
            run, "dlq", "redrive", str(dl_id), "--patch", patch, "--dry-run", **env
        )
        assert out.exit_code == 0 and "would_send" in out.stdout, out.stdout
        assert f"{dl_id} would send" in out.stdout
        unpatched = await asyncio.to_thread(run, "dlq", "redrive", str(dl_id), "--dry-run", **env)
        assert "invalid" in unpatched.stdout and "would not send" in unpatched.stdout
        assert f"{dl_id} would send" not in unpatched.stdout, unpatched.stdout
        out = await asyncio.to_thread(
            run, "replay", "create", "--topic", CUSTOMERS, "--flow", "records", "--dry-run", **env
        )
        assert out.exit_code == 0, out.stdout
        assert "done" in out.stdout and "invalid: 1" in out.stdout
        out = await asyncio.to_thread(run, "replay", "list", **env)
        assert CUSTOMERS in out.stdout
        async with h.client("viewer") as viewer:
            job_id = (await viewer.get("/replays")).json()["items"][0]["id"]
        out = await asyncio.to_thread(run, "replay", "cancel", str(job_id), **env)
        assert out.exit_code == 1 and "409" in out.stderr
        viewer_env = {**env, "EAI_API_TOKEN": h.tokens["viewer"]}
        out = await asyncio.to_thread(run, "dlq", "discard", str(dl_id), **viewer_env)
        assert out.exit_code == 1 and "403" in out.stderr
        assert h.tokens["viewer"] not in out.stderr + out.stdout

        # tokens: on the store, printed once
        store = {"EAI_DATABASE_URL": sqlite_url}
        out = await asyncio.to_thread(
            run, "token", "create", "--role", "viewer", "--name", "grafana", **store
        )
        assert out.exit_code == 0, out.output
        token = out.stdout.strip().splitlines()[-1]
        assert token.startswith("eai_")
        async with h.client(token=token) as c:
            assert (await c.get("/replays")).status_code == 200
        out = await asyncio.to_thread(run, "token", "list", **store)
        assert "grafana" in out.stdout and token not in out.stdout
        out = await asyncio.to_thread(run, "token", "revoke", "grafana", **store)
        assert out.exit_code == 0
        h.app.state.eai_auth.clear()  # another process revoked it: this one's cache expires
        async with h.client(token=token) as c:
            assert (await c.get("/replays")).status_code == 401
        cli_audit = select(func.count()).where(AuditEntry.method == "CLI")
        assert await h.count(cli_audit) == 2
