"""The delivery queue in the store: enqueue, claim with per-key order, record outcomes.

Every function runs in the caller's session; the deliverer opens one short transaction to
claim and one to record each outcome, and makes the HTTP call in between, outside any
transaction.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    CursorResult,
    Integer,
    bindparam,
    delete,
    exists,
    func,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from connectors.common.sink import DeliveryResult, Outcome
from contracts import topics
from contracts.envelope import Entity, Envelope, Op
from contracts.errors import ContractError
from hub.core.dlq import Failure, dead_letter
from hub.core.errors import PermanentError, TransientError
from hub.core.inbound import InboundRecord, headers_from_json, headers_to_json
from hub.core.outbox import add_rows, envelope_values
from hub.core.processor import Item, Routed
from hub.delivery import xref
from hub.delivery.policy import Decision, Verdict, is_echo
from hub.store.bulk import insert_rows, table_of, update_by_id
from hub.store.delivery_models import (
    DEAD,
    DELIVERED,
    KEY_LEN,
    LOCAL_ID_LEN,
    PENDING,
    SUPPRESSED,
    Delivery,
)

log = logging.getLogger(__name__)

# Keys per lookup query: asyncpg allows 32767 bind parameters, SQLite 32766 (two per key).
LOOKUP_CHUNK = 2000


def flow_name(system: str) -> str:
    return f"deliver.{system}"


def item_key(item: Item) -> str:
    """The record's canonical key: the Kafka key it travelled under, else the envelope's."""
    if item.rec.key:
        return item.rec.key.decode("utf-8", "replace")
    return item.env.key


def _rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


# ----------------------------------------------------------------------------- enqueue
async def enqueue(session: AsyncSession, system: str, items: Sequence[Item]) -> int:
    """One row per message, ``seq`` continuing each key's sequence. Returns how many wait
    for delivery (echoes are recorded as suppressed and never sent)."""
    now = datetime.now(UTC)
    keyed: list[tuple[Item, str, str]] = []
    for item in items:
        key = item_key(item)
        if len(key) > KEY_LEN:
            raise PermanentError(
                f"field 'key' value {key[:40]!r}...: a record key must be at most "
                f"{KEY_LEN} characters"
            )
        keyed.append((item, item.env.entity.value, key))
    pairs = list({(entity, key) for _, entity, key in keyed})
    last: dict[tuple[str, str], int] = {}
    for i in range(0, len(pairs), LOOKUP_CHUNK):
        rows = await session.execute(
            select(Delivery.entity, Delivery.key, func.max(Delivery.seq))
            .where(
                Delivery.system == system,
                tuple_(Delivery.entity, Delivery.key).in_(pairs[i : i + LOOKUP_CHUNK]),
            )
            .group_by(Delivery.entity, Delivery.key)
        )
        last.update({(e, k): int(s) for e, k, s in rows.tuples()})
    values: list[dict[str, Any]] = []
    pending = 0
    for item, entity, key in keyed:
        seq = last.get((entity, key), 0) + 1
        last[(entity, key)] = seq
        echo = is_echo(item.env, system)
        pending += not echo
        rec = item.rec
        values.append(
            {
                "system": system,
                "message_id": str(item.env.message_id),
                "entity": entity,
                "key": key,
                "seq": seq,
                "op": item.env.op.value,
                "source_system": item.env.source_system,
                "envelope": (rec.value or b"").decode("utf-8"),
                "topic": rec.topic,
                "partition": rec.partition,
                "offset": rec.offset,
                "headers": headers_to_json(rec.headers),
                "status": SUPPRESSED if echo else PENDING,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "finished_at": now if echo else None,
                "last_error": (
                    f"echo: the change came from {system} (source {item.env.source_system}, "
                    f"trace {','.join(item.env.trace) or '-'})"
                    if echo
                    else None
                ),
            }
        )
    if values:
        try:
            await insert_rows(session, Delivery, values)  # Core executemany (decision 50)
        except IntegrityError as exc:
            # Two workers enqueued the same messages during a rebalance: roll back and let the
            # runner redo the batch, whose ledger check then skips what the other committed.
            raise TransientError(f"concurrent enqueue for {system}: {exc.orig}") from exc
    return pending


# partition and offset of a queued message that never crossed Kafka (``deliveries`` and the
# dead letters made of it keep where a message came from; this one came from no partition)
NOT_CONSUMED = -1


def routed_item(msg: Routed) -> Item:
    """The item the delivery flow would have consumed, but for partition and offset."""
    rec = InboundRecord(
        msg.topic,
        NOT_CONSUMED,
        NOT_CONSUMED,
        msg.env.to_bytes(),
        msg.key.encode("utf-8"),
        tuple(msg.env.headers()),
    )
    return Item(rec, msg.env, None)


# ----------------------------------------------------------------------------- claim
@dataclass(frozen=True)
class Job:
    """A claimed row: everything the deliverer needs outside the transaction."""

    id: int
    system: str
    message_id: str
    entity: str
    key: str
    seq: int
    source_system: str
    envelope: str
    topic: str
    partition: int
    offset: int
    headers: list[Any]
    attempts: int  # including the one about to be made
    target_local_id: str | None
    first_failure_at: datetime | None

    def record(self) -> InboundRecord:
        """The consumed record as it arrived, for the dead-letter channel."""
        return InboundRecord(
            topic=self.topic,
            partition=self.partition,
            offset=self.offset,
            value=self.envelope.encode("utf-8"),
            key=self.key.encode("utf-8"),
            headers=tuple(headers_from_json(self.headers)),
        )


@functools.lru_cache(maxsize=4)
def _claim_query(postgres: bool) -> Any:
    """Pending rows of a system that are due, not leased, first in their key and not excluded,
    oldest due first: built once per store kind with bind parameters (``system``, ``now``,
    ``exclude``, ``limit``), since building it afresh each round (an aliased correlated
    subquery) cost more CPU than running it (decision 50). Core columns, not ORM instances.

    "First in its key" is a correlated scalar ``min(seq)``, not ``NOT EXISTS``: PostgreSQL
    turns NOT EXISTS into an anti-join whose plan depends on table statistics (on a fresh
    table, a nested loop over all pending rows: quadratic), whereas a scalar subquery stays a
    per-row probe of the (system, entity, key, seq) index whatever the statistics.
    """
    t = table_of(Delivery)
    e = t.alias("e")
    first_pending = (
        select(func.min(e.c.seq))
        .where(
            e.c.system == t.c.system,
            e.c.entity == t.c.entity,
            e.c.key == t.c.key,
            e.c.status == PENDING,
        )
        .scalar_subquery()
    )
    now = bindparam("now", type_=t.c.next_attempt_at.type)
    q = (
        select(*t.c)
        .where(
            t.c.system == bindparam("system", type_=t.c.system.type),
            t.c.status == PENDING,
            t.c.next_attempt_at <= now,
            or_(t.c.lease_until.is_(None), t.c.lease_until < now),
            t.c.seq == first_pending,
            t.c.id.not_in(bindparam("exclude", expanding=True, type_=t.c.id.type)),
        )
        .order_by(t.c.next_attempt_at, t.c.id)
        .limit(bindparam("limit", type_=Integer))
    )
    if postgres:
        q = q.with_for_update(skip_locked=True, of=t)
    return q


async def claim(
    session: AsyncSession,
    system: str,
    owner: str,
    limit: int,
    *,
    lease_s: float,
    exclude: Sequence[int] = (),
    now: datetime | None = None,
) -> list[Job]:
    """Lease up to ``limit`` head rows (at most one per key) and count the attempt.

    A row's first claim looks up the cross-reference and fixes create-or-update for all its
    attempts. On PostgreSQL rows are locked with SKIP LOCKED, so workers claim disjoint sets;
    on SQLite the transaction holds the write lock (BEGIN IMMEDIATE) for the same effect.
    """
    now = now or datetime.now(UTC)
    q = _claim_query(session.get_bind().dialect.name == "postgresql")
    params = {"system": system, "now": now, "exclude": list(exclude), "limit": limit}
    rows = [r._mapping for r in await session.execute(q, params)]
    if not rows:
        return []
    # Never attempted (a re-driven row has failed before and keeps its request).
    fresh = {r["id"] for r in rows if r["attempts"] == 0 and r["first_failure_at"] is None}
    known = await xref.local_ids(
        session, system, [(r["entity"], r["key"]) for r in rows if r["id"] in fresh]
    )
    until = now + timedelta(seconds=lease_s)
    jobs: list[Job] = []
    updates: list[dict[str, Any]] = []
    for r in rows:
        target = known.get((r["entity"], r["key"])) if r["id"] in fresh else r["target_local_id"]
        attempts = r["attempts"] + 1
        updates.append(
            {
                "id": r["id"],
                "lease_until": until,
                "leased_by": owner,
                "attempts": attempts,
                "target_local_id": target,
            }
        )
        jobs.append(
            Job(
                id=r["id"],
                system=r["system"],
                message_id=r["message_id"],
                entity=r["entity"],
                key=r["key"],
                seq=r["seq"],
                source_system=r["source_system"],
                envelope=r["envelope"],
                topic=r["topic"],
                partition=r["partition"],
                offset=r["offset"],
                headers=list(r["headers"] or []),
                attempts=attempts,
                target_local_id=target,
                first_failure_at=r["first_failure_at"],
            )
        )
    await update_by_id(session, Delivery, updates)
    return jobs


# ----------------------------------------------------------------------------- outcomes
Attempt = tuple[Job, DeliveryResult, Decision]

# What a system gets for a second copy of a record that a create of the hub put there while
# the system's own copy of it was being linked: (entity, body sent, local id the key keeps,
# key) -> the body that quarantines the copy, or None to leave it as it is (the sync layer
# decides; the delivery layer only keeps the copy linked).
SecondCopy = Callable[[str, dict[str, Any], str, str], dict[str, Any] | None]


async def finish(
    session: AsyncSession,
    job: Job,
    owner: str,
    result: DeliveryResult,
    decision: Decision,
    *,
    now: datetime | None = None,
    second_copy: SecondCopy | None = None,
    direct: bool = False,
) -> bool:
    """Record one attempt's outcome. False if the lease was lost to another worker (its
    outcome is the one that counts; ours changed nothing)."""
    answers = await finish_many(
        session, owner, [(job, result, decision)], now=now, second_copy=second_copy, direct=direct
    )
    return answers[job.id]


async def finish_many(
    session: AsyncSession,
    owner: str,
    attempts: Sequence[Attempt],
    *,
    now: datetime | None = None,
    second_copy: SecondCopy | None = None,
    overrides: dict[int, Decision] | None = None,
    direct: bool = False,
) -> dict[int, bool]:
    """Record the outcomes of several attempts with a handful of statements, whatever their
    number: delivered -> status and cross-reference; retry -> next attempt time; dead ->
    dead letter. Rows whose lease this worker lost are left alone (False in the answer).

    A 409 ("already there") whose local id is the cross-reference of another key is not an
    earlier attempt of this message that landed: the target matched it by its natural key to
    a different record of ours and stored nothing. It is dead-lettered (``DeliveryConflict``)
    so that an operator sees the record that did not arrive; its decision goes into
    ``overrides`` for the caller's counters.

    A create links its key only if nothing linked the key in that system since the claim
    (the sync flow may have learned the system's own copy meanwhile); otherwise the copy just
    created is linked under a duplicate key and ``second_copy`` says how to quarantine it
    (``direct``: queued at once, as the sync flow queues that key's other messages)."""
    now = now or datetime.now(UTC)
    ids = [job.id for job, _, _ in attempts]
    q = select(Delivery.id).where(
        Delivery.id.in_(ids), Delivery.leased_by == owner, Delivery.status == PENDING
    )
    if session.get_bind().dialect.name == "postgresql":
        q = q.with_for_update()
    owned = set((await session.execute(q)).scalars())
    mine = [a for a in attempts if a[0].id in owned]
    wanted = [
        (job.entity, job.system, result.local_id[:LOCAL_ID_LEN])
        for job, result, decision in mine
        if decision.verdict is Verdict.delivered and result.local_id
    ]
    holders = await xref.holders(session, wanted)
    updates: list[dict[str, Any]] = []
    xrefs: list[dict[str, Any]] = []
    creates: list[tuple[Job, str]] = []
    dead: list[tuple[Job, Decision, datetime]] = []
    for job, result, decision in mine:
        values: dict[str, Any] = {
            "id": job.id,
            "lease_until": None,
            "leased_by": None,
            "last_status_code": result.status_code,
            "local_id": None,
            "next_attempt_at": now,
            "first_failure_at": job.first_failure_at,
            "last_error": decision.reason or None,
        }
        if decision.verdict is Verdict.delivered:
            local = result.local_id[:LOCAL_ID_LEN] if result.local_id else None
            values.update(status=DELIVERED, local_id=local, finished_at=now)
            if result.outcome is Outcome.duplicate:
                values["last_error"] = f"already there (an earlier attempt landed): {result.reason}"
            if local is not None:
                at = (job.entity, job.system, local)
                holder = holders.get(at)
                if holder is None and job.target_local_id is None:
                    holders[at] = job.key
                    creates.append((job, local))
                elif holder is None:
                    holders[at] = job.key
                    xrefs.append(
                        {
                            "entity": job.entity,
                            "key": job.key,
                            "system": job.system,
                            "local_id": local,
                            "updated_at": now,
                        }
                    )
                elif holder != job.key and result.outcome is Outcome.duplicate:
                    conflict = Decision(
                        Verdict.dead,
                        reason=(
                            f"{job.system} refused it as already there ({result.reason}), "
                            f"but its local id {local!r} is the cross-reference of {holder!r}: "
                            f"the target holds {holder!r}'s record under the natural key "
                            f"{job.key!r} would take; nothing of {job.key!r} was stored"
                        ),
                        error_class="DeliveryConflict",
                    )
                    if overrides is not None:
                        overrides[job.id] = conflict
                    values.update(
                        status=DEAD,
                        finished_at=now,
                        local_id=None,
                        last_error=conflict.reason,
                        first_failure_at=job.first_failure_at or now,
                    )
                    dead.append((job, conflict, job.first_failure_at or now))
                elif holder != job.key:
                    msg = (
                        f"{job.system} answered local id {local!r}, which is already the "
                        f"cross-reference of {holder!r}; cross-reference left unchanged"
                    )
                    log.warning("deliver.%s: message %s: %s", job.system, job.message_id, msg)
                    values["last_error"] = msg
        else:
            first = job.first_failure_at or now
            values["first_failure_at"] = first
            if decision.verdict is Verdict.retry:
                values.update(
                    status=PENDING,
                    finished_at=None,
                    next_attempt_at=now + timedelta(seconds=decision.delay_s),
                )
            else:
                values.update(status=DEAD, finished_at=now)
                dead.append((job, decision, first))
        updates.append(values)
    await update_by_id(session, Delivery, updates)
    await xref.upsert_many(session, xrefs)
    await _link_created(session, creates, now, second_copy, direct)
    for job, decision, first in dead:
        await dead_letter(
            session,
            flow_name(job.system),
            job.record(),
            Failure("deliver", decision.reason, decision.error_class or "DeliveryFailed"),
            attempts=job.attempts,
            message_id=job.message_id,
            source_system=job.source_system,
            first_failure=first,
        )
    return {i: i in owned for i in ids}


async def _link_created(
    session: AsyncSession,
    creates: Sequence[tuple[Job, str]],
    now: datetime,
    second_copy: SecondCopy | None,
    direct: bool = False,
) -> None:
    """Link the keys of records the hub created, each unless its key was linked meanwhile:
    one insert-if-absent for the batch and one read-back per system, not two statements per
    create (on SQLite each statement of a round holds the one write lock)."""
    if not creates:
        return
    await xref.insert_absent_many(
        session,
        [
            {
                "entity": job.entity,
                "key": job.key,
                "system": job.system,
                "local_id": local,
                "updated_at": now,
            }
            for job, local in creates
        ],
    )
    kept: dict[tuple[str, str, str], str] = {}
    for system in {job.system for job, _ in creates}:
        found = await xref.local_ids(
            session, system, [(j.entity, j.key) for j, _ in creates if j.system == system]
        )
        kept.update({(e, k, system): lid for (e, k), lid in found.items()})
    for job, local in creates:
        holder = kept.get((job.entity, job.key, job.system), local)
        if holder != local:
            await _link_second_copy(session, job, local, holder, now, second_copy, direct)


async def _link_second_copy(
    session: AsyncSession,
    job: Job,
    local: str,
    kept: str,
    now: datetime,
    second_copy: SecondCopy | None,
    direct: bool = False,
) -> None:
    dup = xref.duplicate_key(job.key, job.system, local)
    await xref.upsert_many(
        session,
        [
            {
                "entity": job.entity,
                "key": dup,
                "system": job.system,
                "local_id": local,
                "updated_at": now,
            }
        ],
    )
    log.warning(
        "deliver.%s: %s %s was linked to %s while the hub created %s there: %s kept, the "
        "created copy linked as %s",
        job.system,
        job.entity,
        job.key,
        kept,
        local,
        kept,
        dup,
    )
    if second_copy is None:
        return
    sent = Envelope.from_bytes(job.envelope.encode("utf-8"))
    body = second_copy(job.entity, dict(sent.body), kept, job.key)
    if body is None:
        return
    out = Envelope(
        entity=Entity(job.entity),
        op=Op.upsert,
        source_system="hub",
        source_id=dup,
        source_ts=sent.source_ts,
        correlation_id=sent.correlation_id or sent.message_id,
        body=body,
    )
    topic = topics.outbound(job.system)
    if direct and len(dup) <= KEY_LEN:
        await enqueue(session, job.system, [routed_item(Routed(topic, out, dup))])
    else:
        await add_rows(session, [envelope_values(topic, out, key=dup)])


async def release(session: AsyncSession, ids: Sequence[int], owner: str) -> int:
    """Give leased rows back (a stopping worker); the attempt stays counted."""
    if not ids:
        return 0
    res = await session.execute(
        update(Delivery)
        .where(Delivery.id.in_(list(ids)), Delivery.leased_by == owner)
        .values(lease_until=None, leased_by=None)
    )
    return _rowcount(res)


async def unclaim(session: AsyncSession, ids: Sequence[int], owner: str) -> int:
    """Give back claimed rows whose call was never made (claimed ahead, then the worker
    stopped or waited too long): the lease, and the attempt the claim counted. A row back at
    0 attempts is fresh again, so its next claim looks up create-or-update anew."""
    if not ids:
        return 0
    res = await session.execute(
        update(Delivery)
        .where(
            Delivery.id.in_(list(ids)),
            Delivery.leased_by == owner,
            Delivery.status == PENDING,
            Delivery.attempts > 0,
        )
        .values(lease_until=None, leased_by=None, attempts=Delivery.attempts - 1)
    )
    return _rowcount(res)


async def redrive(
    session: AsyncSession,
    system: str,
    message_id: str,
    *,
    force: bool = False,
    value: bytes | None = None,
) -> str:
    """Put a dead delivery back in the queue, as the newest message of its key, with a fresh
    attempt budget and the same idempotency key (``value``: patched bytes, same message id).

    Refused while a newer message of the same key has been delivered or is waiting: the old
    version would overwrite newer data in the target (``force`` sends it anyway, after them).
    Returns "queued", or raises ValueError saying why not.
    """
    row = await session.scalar(
        select(Delivery).where(Delivery.system == system, Delivery.message_id == message_id)
    )
    if row is None:
        raise ValueError(f"no delivery of message {message_id} to {system}")
    if row.status != DEAD:
        raise ValueError(f"delivery of {message_id} to {system} is {row.status}, not dead")
    same_key = (
        Delivery.system == system,
        Delivery.entity == row.entity,
        Delivery.key == row.key,
    )
    newer = await session.scalar(
        select(func.count()).where(
            *same_key, Delivery.seq > row.seq, Delivery.status.in_([DELIVERED, PENDING])
        )
    )
    if newer and not force:
        raise ValueError(
            f"{newer} newer message(s) of {row.entity} {row.key} were delivered to {system} or "
            "are waiting; re-driving would overwrite newer data (force to send it anyway)"
        )
    if value is not None:
        from contracts.envelope import Envelope

        try:
            env = Envelope.from_bytes(value)
        except ContractError as exc:
            raise ValueError(f"the patched value is not a valid envelope: {exc.reason}") from exc
        if str(env.message_id) != message_id:
            raise ValueError("the patched value must keep the message_id")
        row.envelope = value.decode("utf-8")
    last = await session.scalar(select(func.max(Delivery.seq)).where(*same_key))
    # Same request as before (create or update the same local id), same idempotency key: an
    # earlier attempt whose answer was lost may have landed, and the target must recognise it.
    row.seq = int(last or row.seq) + 1
    row.status, row.attempts, row.next_attempt_at = PENDING, 0, datetime.now(UTC)
    row.finished_at = row.lease_until = row.leased_by = None
    return "queued"


async def prune(session: AsyncSession, older_than: datetime, *, limit: int | None = None) -> int:
    """Delete delivered and suppressed rows finished before ``older_than`` (at most ``limit``);
    dead and pending rows stay. The ledger keeps exactly-once; these rows are only history,
    except where a key also has a dead delivery of an older message: ``redrive`` refuses that
    dead letter while a newer message of its key was delivered, and only these rows say so."""
    older_dead = aliased(Delivery)
    ids = select(Delivery.id).where(
        Delivery.status.in_([DELIVERED, SUPPRESSED]),
        Delivery.finished_at < older_than,
        ~exists().where(
            older_dead.system == Delivery.system,
            older_dead.entity == Delivery.entity,
            older_dead.key == Delivery.key,
            older_dead.status == DEAD,
            older_dead.seq < Delivery.seq,
        ),
    )
    if limit is not None:
        ids = ids.limit(limit)
    res = await session.execute(delete(Delivery).where(Delivery.id.in_(ids.scalar_subquery())))
    return _rowcount(res)


# ----------------------------------------------------------------------------- status
@dataclass
class QueueCounts:
    delivered: int = 0
    suppressed: int = 0
    dead: int = 0
    pending: int = 0  # waiting, due or in flight
    retrying: int = 0  # pending rows that failed at least once
    oldest_pending_at: datetime | None = None


async def counts(
    session: AsyncSession, systems: Sequence[str] | None = None
) -> dict[str, QueueCounts]:
    q = select(
        Delivery.system,
        Delivery.status,
        func.count(),
        func.count(Delivery.first_failure_at),
        func.min(Delivery.created_at),
    ).group_by(Delivery.system, Delivery.status)
    if systems is not None:
        q = q.where(Delivery.system.in_(list(systems)))
    out: dict[str, QueueCounts] = {s: QueueCounts() for s in systems or ()}
    for system, status, n, failed, oldest in (await session.execute(q)).tuples():
        c = out.setdefault(system, QueueCounts())
        if status == PENDING:
            c.pending, c.retrying = n, failed
            if oldest is not None and oldest.tzinfo is None:
                oldest = oldest.replace(tzinfo=UTC)  # func.min bypasses the column type
            c.oldest_pending_at = oldest
        elif status in (DELIVERED, SUPPRESSED, DEAD):
            setattr(c, status, n)
    return out
