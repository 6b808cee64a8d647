"""The delivery queue on a real SQLite store: per-key order, leases, outcomes, xrefs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from connectors.common.sink import DeliveryResult, Outcome
from contracts.envelope import Entity, Envelope, Op
from hub.core.errors import PermanentError
from hub.core.inbound import InboundRecord
from hub.core.processor import Item
from hub.delivery import queue, xref
from hub.delivery.policy import Decision, Verdict
from hub.store.delivery_models import Delivery
from hub.store.models import DeadLetter, OutboxRow
from tests.helpers import counting_statements

Sessions = async_sessionmaker[AsyncSession]
# Far enough ahead that rows enqueued at the real "now" are due at T0 however late in a long
# run this module executes (it is imported at collection, minutes before).
T0 = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
_offset = iter(range(10_000))


def item(key: str, *, source: str = "hub", trace: tuple[str, ...] = (), name: str = "x") -> Item:
    env = Envelope(
        entity=Entity.customer,
        op=Op.upsert,
        source_system=source,
        source_id=key[:256],
        trace=trace,
        body={"kind": "organization", "name": name},
    )
    rec = InboundRecord(
        topic="outbound.crm",
        partition=0,
        offset=next(_offset),
        value=env.to_bytes(),
        key=key.encode(),
        headers=tuple(env.headers()),
    )
    return Item(rec, env, None)


async def enqueue(sessions: Sessions, *items: Item, system: str = "crm") -> int:
    async with sessions() as s, s.begin():
        return await queue.enqueue(s, system, list(items))


async def claim(sessions: Sessions, n: int = 10, *, owner: str = "w1", now: datetime = T0) -> Any:
    async with sessions() as s, s.begin():
        return await queue.claim(s, "crm", owner, n, lease_s=30, now=now)


async def finish(
    sessions: Sessions, job: queue.Job, outcome: Outcome, *, owner: str = "w1", **kw: Any
) -> bool:
    verdict = {
        Outcome.delivered: Verdict.delivered,
        Outcome.duplicate: Verdict.delivered,
        Outcome.transient: Verdict.retry,
        Outcome.permanent: Verdict.dead,
    }[outcome]
    result = DeliveryResult(outcome, "crm", "customer", local_id=kw.pop("local_id", None))
    decision = Decision(verdict, delay_s=kw.pop("delay_s", 1.0), reason=kw.pop("reason", "x"))
    async with sessions() as s, s.begin():
        return await queue.finish(s, job, owner, result, decision, now=kw.pop("now", T0))


async def rows(sessions: Sessions) -> list[Delivery]:
    async with sessions() as s:
        return list((await s.execute(select(Delivery).order_by(Delivery.id))).scalars())


def keys(jobs: list[queue.Job]) -> list[tuple[str, int]]:
    return sorted((j.key, j.seq) for j in jobs)


async def test_rows_get_a_sequence_per_key_in_arrival_order(sessions: Sessions) -> None:
    await enqueue(sessions, item("G-1"), item("G-2"), item("G-1"))
    await enqueue(sessions, item("G-1"))
    assert [(r.key, r.seq) for r in await rows(sessions)] == [
        ("G-1", 1),
        ("G-2", 1),
        ("G-1", 2),
        ("G-1", 3),
    ]


async def test_only_the_head_of_each_key_is_claimed(sessions: Sessions) -> None:
    await enqueue(sessions, item("G-1"), item("G-1"), item("G-2"), item("G-3"), item("G-3"))
    jobs = await claim(sessions)
    assert keys(jobs) == [("G-1", 1), ("G-2", 1), ("G-3", 1)]
    assert all(j.attempts == 1 for j in jobs)
    assert await claim(sessions) == [], "leased heads block their keys; nothing else is due"
    g1 = next(j for j in jobs if j.key == "G-1")
    assert await finish(sessions, g1, Outcome.delivered, local_id="KH1")
    assert keys(await claim(sessions)) == [("G-1", 2)]


async def test_a_retrying_key_waits_and_the_others_go_on(sessions: Sessions) -> None:
    await enqueue(sessions, item("G-1"), item("G-1"), item("G-2"))
    first = await claim(sessions)
    g1 = next(j for j in first if j.key == "G-1")
    g2 = next(j for j in first if j.key == "G-2")
    await finish(sessions, g1, Outcome.transient, delay_s=5.0, reason="HTTP 503")
    await enqueue(sessions, item("G-2"))
    await finish(sessions, g2, Outcome.delivered, local_id="KH2")
    soon = await claim(sessions, now=T0 + timedelta(seconds=1))
    assert keys(soon) == [("G-2", 2)], "G-1 v1 is not due yet and G-1 v2 must wait behind it"
    later = await claim(sessions, now=T0 + timedelta(seconds=6))
    assert keys(later) == [("G-1", 1)] and later[0].attempts == 2
    r = next(r for r in await rows(sessions) if r.key == "G-1" and r.seq == 1)
    assert r.last_error == "HTTP 503" and r.first_failure_at == T0


async def test_a_dead_head_unblocks_its_key(sessions: Sessions) -> None:
    await enqueue(sessions, item("G-1"), item("G-1"))
    (job,) = await claim(sessions)
    assert await finish(sessions, job, Outcome.permanent, reason="HTTP 404 (attempt 1)")
    (nxt,) = await claim(sessions)
    assert (nxt.key, nxt.seq) == ("G-1", 2)
    async with sessions() as s:
        dl = (await s.execute(select(DeadLetter))).scalar_one()
        out = (await s.execute(select(OutboxRow))).scalar_one()
    assert (dl.flow, dl.stage, dl.reason, dl.attempts) == (
        "deliver.crm",
        "deliver",
        "HTTP 404 (attempt 1)",
        1,
    )
    assert dl.message_id == job.message_id and dl.value == job.envelope.encode()
    assert out.topic == "eai.dlq"


async def test_expired_leases_are_claimed_again_and_the_old_owner_loses(
    sessions: Sessions,
) -> None:
    await enqueue(sessions, item("G-1"))
    (job,) = await claim(sessions, owner="w1")
    assert await claim(sessions, owner="w2", now=T0 + timedelta(seconds=29)) == []
    (again,) = await claim(sessions, owner="w2", now=T0 + timedelta(seconds=31))
    assert again.message_id == job.message_id and again.attempts == 2
    assert not await finish(sessions, job, Outcome.delivered, owner="w1", local_id="KH1")
    assert await finish(sessions, again, Outcome.duplicate, owner="w2", local_id="KH1")
    (r,) = await rows(sessions)
    assert (r.status, r.local_id, r.attempts) == ("delivered", "KH1", 2)


async def test_echoes_are_recorded_as_suppressed_and_never_claimed(sessions: Sessions) -> None:
    n = await enqueue(sessions, item("G-1", source="crm"), item("G-1", trace=("crm",)), item("G-1"))
    assert n == 1
    statuses = [(r.seq, r.status) for r in await rows(sessions)]
    assert statuses == [(1, "suppressed"), (2, "suppressed"), (3, "pending")]
    assert "echo" in ((await rows(sessions))[0].last_error or "")
    assert keys(await claim(sessions)) == [("G-1", 3)], "suppressed rows do not block the key"


async def test_the_first_claim_fixes_create_or_update_for_every_retry(sessions: Sessions) -> None:
    await enqueue(sessions, item("G-1"))
    (job,) = await claim(sessions)
    assert job.target_local_id is None
    await finish(sessions, job, Outcome.transient, delay_s=0)
    async with sessions() as s, s.begin():
        await xref.record(s, "customer", "G-1", "crm", "KH9")  # learnt meanwhile
    (retry,) = await claim(sessions, now=T0 + timedelta(seconds=1))
    assert retry.target_local_id is None, "a retry repeats the same POST (same request hash)"
    await enqueue(sessions, item("G-1"))
    await finish(sessions, retry, Outcome.delivered, local_id="KH9")
    (update_job,) = await claim(sessions, now=T0 + timedelta(seconds=2))
    assert update_job.target_local_id == "KH9", "the next message updates the record"


async def test_delivery_records_the_cross_reference(sessions: Sessions) -> None:
    await enqueue(sessions, item("G-1"), item("G-2"))
    j1, j2 = sorted(await claim(sessions), key=lambda j: j.key)
    await finish(sessions, j1, Outcome.delivered, local_id="KH1")
    await finish(sessions, j2, Outcome.delivered, local_id="KH1")  # the target merged them
    async with sessions() as s:
        assert await xref.local_id(s, "customer", "G-1", "crm") == "KH1"
        assert await xref.key_for(s, "customer", "crm", "KH1") == "G-1"
        assert await xref.local_id(s, "customer", "G-2", "crm") is None
        assert await xref.local_id(s, "customer", "G-1", "erp") is None
    r2 = next(r for r in await rows(sessions) if r.key == "G-2")
    assert r2.status == "delivered" and "already the cross-reference of 'G-1'" in (
        r2.last_error or ""
    )


async def test_xref_record_moves_a_key_to_a_new_local_id(sessions: Sessions) -> None:
    async with sessions() as s, s.begin():
        assert await xref.record(s, "customer", "G-1", "crm", "KH1") is None
        assert await xref.record(s, "customer", "G-1", "crm", "KH1") is None
        assert await xref.record(s, "customer", "G-1", "crm", "KH2") is None
        assert await xref.record(s, "customer", "G-2", "crm", "KH2") == "G-1"
        assert await xref.record(s, "material", "G-2", "crm", "KH2") is None
    async with sessions() as s:
        assert await xref.local_id(s, "customer", "G-1", "crm") == "KH2"
        assert await xref.key_for(s, "customer", "crm", "KH1") is None
        got = await xref.local_ids(s, "crm", [("customer", "G-1"), ("material", "G-2")])
        assert got == {("customer", "G-1"): "KH2", ("material", "G-2"): "KH2"}


async def test_status_counts(sessions: Sessions) -> None:
    await enqueue(sessions, item("G-1"), item("G-2"), item("G-3"), item("G-4", source="crm"))
    jobs = sorted(await claim(sessions), key=lambda j: j.key)
    await finish(sessions, jobs[0], Outcome.delivered, local_id="KH1")
    await finish(sessions, jobs[1], Outcome.transient)
    await finish(sessions, jobs[2], Outcome.permanent)
    async with sessions() as s:
        c = await queue.counts(s, ["crm", "erp"])
    assert c["erp"] == queue.QueueCounts()
    crm = c["crm"]
    assert (crm.delivered, crm.dead, crm.pending, crm.retrying, crm.suppressed) == (1, 1, 1, 1, 1)
    assert crm.oldest_pending_at is not None and crm.oldest_pending_at.tzinfo is not None


async def test_redrive_requeues_a_dead_delivery_unless_newer_data_exists(
    sessions: Sessions,
) -> None:
    await enqueue(sessions, item("G-1"), item("G-1"), item("G-2"))
    v1, g2 = sorted(await claim(sessions), key=lambda j: j.key)
    await finish(sessions, v1, Outcome.permanent)
    await finish(sessions, g2, Outcome.permanent)
    async with sessions() as s, s.begin():
        with pytest.raises(ValueError, match="newer message"):
            await queue.redrive(s, "crm", v1.message_id)  # v2 is waiting
        assert await queue.redrive(s, "crm", g2.message_id) == "queued"
        with pytest.raises(ValueError, match="not dead"):
            await queue.redrive(s, "crm", g2.message_id)
        with pytest.raises(ValueError, match="no delivery"):
            await queue.redrive(s, "crm", str(uuid.uuid4()))
    again = await claim(sessions, now=datetime.now(UTC) + timedelta(seconds=1))
    assert keys(again) == [("G-1", 2), ("G-2", 2)], "re-queued as the newest of its key"
    g2_again = next(j for j in again if j.key == "G-2")
    assert g2_again.attempts == 1 and g2_again.message_id == g2.message_id
    v2 = next(j for j in again if j.key == "G-1")
    await finish(sessions, v2, Outcome.delivered, local_id="KH1")
    async with sessions() as s, s.begin():
        with pytest.raises(ValueError, match="overwrite newer data"):
            await queue.redrive(s, "crm", v1.message_id)
        patched = item("G-1", name="改过的名字").env.model_copy(
            update={"message_id": uuid.UUID(v1.message_id)}
        )
        with pytest.raises(ValueError, match="keep the message_id"):
            await queue.redrive(s, "crm", v1.message_id, force=True, value=item("G-1").rec.value)
        assert (
            await queue.redrive(s, "crm", v1.message_id, force=True, value=patched.to_bytes())
            == "queued"
        )
    (forced,) = await claim(sessions, now=datetime.now(UTC) + timedelta(seconds=1))
    assert (forced.message_id, forced.seq) == (v1.message_id, 3)
    assert "改过的名字" in forced.envelope


async def test_release_and_prune(sessions: Sessions) -> None:
    await enqueue(sessions, item("G-1"), item("G-2"))
    jobs = await claim(sessions)
    await finish(sessions, jobs[0], Outcome.delivered, local_id="KH1")
    async with sessions() as s, s.begin():
        assert await queue.release(s, [j.id for j in jobs], "w1") == 1
    assert len(await claim(sessions)) == 1, "a released row is claimable at once"
    async with sessions() as s, s.begin():
        assert await queue.prune(s, T0 + timedelta(seconds=1)) == 1
    assert [r.status for r in await rows(sessions)] == ["pending"]


async def test_an_overlong_key_is_a_permanent_error(sessions: Sessions) -> None:
    with pytest.raises(PermanentError, match="at most 300"):
        await enqueue(sessions, item("G-" + "9" * 400))


async def test_outcomes_of_many_attempts_are_recorded_together(sessions: Sessions) -> None:
    await enqueue(sessions, *(item(f"G-{i}") for i in range(5)))
    jobs = sorted(await claim(sessions), key=lambda j: j.key)
    stolen = jobs[4]
    async with sessions() as s, s.begin():  # another worker took G-4 over
        await s.execute(update(Delivery).where(Delivery.id == stolen.id).values(leased_by="w2"))

    def attempt(job: queue.Job, outcome: Outcome, verdict: Verdict, local: str | None) -> Any:
        r = DeliveryResult(outcome, "crm", "customer", status_code=201, local_id=local)
        return (job, r, Decision(verdict, delay_s=2.0, reason="why", error_class="X"))

    batch = [
        attempt(jobs[0], Outcome.delivered, Verdict.delivered, "KH0"),
        attempt(jobs[1], Outcome.duplicate, Verdict.delivered, "KH0"),  # same id, other key
        attempt(jobs[2], Outcome.transient, Verdict.retry, None),
        attempt(jobs[3], Outcome.permanent, Verdict.dead, None),
        attempt(stolen, Outcome.delivered, Verdict.delivered, "KH4"),
    ]
    overrides: dict[int, Decision] = {}
    async with sessions() as s, s.begin():
        got = await queue.finish_many(s, "w1", batch, now=T0, overrides=overrides)
    assert got == {jobs[0].id: True, jobs[1].id: True, jobs[2].id: True, jobs[3].id: True,
                   stolen.id: False}  # fmt: skip
    by_key = {r.key: r for r in await rows(sessions)}
    assert (by_key["G-0"].status, by_key["G-0"].local_id) == ("delivered", "KH0")
    # a 409 naming another key's record: the target stored nothing of G-1, an operator must see it
    assert by_key["G-1"].status == "dead" and by_key["G-1"].local_id is None
    assert "is the cross-reference of 'G-0'" in (by_key["G-1"].last_error or "")
    assert list(overrides) == [jobs[1].id]
    assert overrides[jobs[1].id].error_class == "DeliveryConflict"
    assert by_key["G-2"].status == "pending" and by_key["G-2"].next_attempt_at == T0 + timedelta(
        seconds=2
    )
    assert by_key["G-2"].first_failure_at == T0 and by_key["G-2"].leased_by is None
    assert by_key["G-3"].status == "dead" and by_key["G-3"].finished_at == T0
    assert by_key["G-4"].status == "pending" and by_key["G-4"].leased_by == "w2"
    async with sessions() as s:
        assert await xref.key_for(s, "customer", "crm", "KH0") == "G-0"
        assert await xref.local_id(s, "customer", "G-1", "crm") is None
        assert await xref.local_id(s, "customer", "G-4", "crm") is None
        dead = (await s.execute(select(DeadLetter.message_id, DeadLetter.error_class))).all()
        assert sorted(dead) == sorted(
            [(jobs[1].message_id, "DeliveryConflict"), (jobs[3].message_id, "X")]
        )


async def _record_creates(sessions: Sessions, n: int, raced: str | None = None) -> int:
    """Claim ``n`` creates, let the sync flow link ``raced`` meanwhile, record them all
    delivered in one batch; returns the statements the recording took."""

    await enqueue(sessions, *(item(f"G-{n}-{i}") for i in range(n)))
    jobs = await claim(sessions, n)
    if raced is not None:
        async with sessions() as s, s.begin():
            await xref.link_if_absent(s, "customer", raced, "crm", "KH-CLERK")
    batch = [
        (
            j,
            DeliveryResult(Outcome.delivered, "crm", "customer", 201, f"KH-{j.key}"),
            Decision(Verdict.delivered),
        )
        for j in jobs
    ]
    async with sessions() as s, s.begin():
        with counting_statements(sessions.kw["bind"]) as statements:
            got = await queue.finish_many(s, "w1", batch, now=T0)
    assert all(got.values())
    return statements.n


async def test_a_batch_of_creates_links_its_keys_in_a_few_statements(sessions: Sessions) -> None:
    small = await _record_creates(sessions, 2)
    large = await _record_creates(sessions, 40, raced="G-40-7")
    assert large <= small + 1, f"{small} statements for 2 creates, {large} for 40"
    async with sessions() as s:
        for i in range(40):
            key = f"G-40-{i}"
            want = "KH-CLERK" if i == 7 else f"KH-{key}"
            assert await xref.local_id(s, "customer", key, "crm") == want
        # the copy the hub created while the clerk's was linked keeps a key of its own
        dup = xref.duplicate_key("G-40-7", "crm", "KH-G-40-7")
        assert await xref.key_for(s, "customer", "crm", "KH-G-40-7") == dup


async def test_unclaim_gives_a_row_back_as_if_never_claimed(sessions: Sessions) -> None:
    await enqueue(sessions, item("G-1"), item("G-2"))
    jobs = sorted(await claim(sessions), key=lambda j: j.key)
    assert [j.target_local_id for j in jobs] == [None, None]
    async with sessions() as s, s.begin():
        # the CRM's own copy of G-1 became known while the row waited unstarted
        await xref.link_if_absent(s, "customer", "G-1", "crm", "KH-CLERK")
        assert await queue.unclaim(s, [j.id for j in jobs], "w2") == 0, "not w2's rows"
        assert await queue.unclaim(s, [j.id for j in jobs], "w1") == 2
    by_key = {r.key: r for r in await rows(sessions)}
    assert all(r.attempts == 0 and r.leased_by is None for r in by_key.values())
    again = {j.key: j for j in await claim(sessions, owner="w2")}
    assert again.keys() == {"G-1", "G-2"}, "claimable at once by anyone"
    assert again["G-1"].attempts == 1
    assert again["G-1"].target_local_id == "KH-CLERK", "no request was made: now an update"
