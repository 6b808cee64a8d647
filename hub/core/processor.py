"""Batch processing with exactly-once effect: the one mechanism every flow runs on.

For a batch of consumed records, in ONE store transaction:
  decode and validate each record (failures -> dead letter, the stream goes on),
  skip message_ids the ledger already holds for this flow,
  apply each new message inside a savepoint (a failing message -> dead letter, the others stay),
  write outgoing messages to the outbox, record the ids in the ledger,
then commit. Kafka offsets are committed by the caller only after this returns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts.envelope import Envelope
from contracts.errors import ContractError
from hub.core import faults
from hub.core.dlq import Failure, dead_letter
from hub.core.errors import PermanentError, TransientError
from hub.core.inbound import InboundRecord, headers_to_json
from hub.core.ledger import already_processed, claim, mark_processed
from hub.core.outbox import add_rows, envelope_values, outbox_values
from hub.store.db import insert_ignoring_conflicts
from hub.store.models import JournalEntry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Item:
    """One decoded, validated, not-yet-processed message of a batch."""

    rec: InboundRecord
    env: Envelope
    body: BaseModel | None


class DirectRoute(Protocol):
    """Topics whose only consumer in this hub would write the message to the store again
    (``outbound.<system>`` of a system this hub delivers to): a message emitted to one of them
    is written straight to that consumer's table in the emitting transaction, one Kafka hop
    (outbox row, relay, fetch, decode, ledger) fewer (decision 54)."""

    topics: frozenset[str]

    async def write(self, session: AsyncSession, routed: list[Routed]) -> None: ...


@dataclass(frozen=True)
class Routed:
    topic: str
    env: Envelope
    key: str


@dataclass
class FlowContext:
    """What a handler may touch: the batch's session and the outbox of this batch."""

    session: AsyncSession
    flow: str
    outbox: list[dict[str, object]] = field(default_factory=list)
    route: DirectRoute | None = None
    routed: list[Routed] = field(default_factory=list)

    def emit(self, topic: str, env: Envelope, key: str | None = None) -> None:
        if self.route is not None and topic in self.route.topics:
            self.routed.append(Routed(topic, env, key or env.key))
            return
        self.outbox.append(envelope_values(topic, env, key))

    async def write_out(self) -> None:
        """Write what was emitted: the outbox rows, and the routed messages to their tables."""
        await add_rows(self.session, self.outbox)
        if self.routed:
            assert self.route is not None
            await self.route.write(self.session, self.routed)

    def emit_raw(
        self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        self.outbox.append(outbox_values(topic, value, key, headers))

    def take_outbox(self) -> list[dict[str, object]]:
        """The outbox rows emitted so far, handed to a flow that writes them itself, in its
        own statement of the batch's transaction (the identity flow on PostgreSQL: one round
        trip fewer, decision 47); the core then no longer writes them."""
        rows, self.outbox = self.outbox, []
        return rows


# A handler applies a list of messages (in order) and may emit; an exception fails them all,
# and the processor then retries each message alone to find and dead-letter the culprit.
Handler = Callable[[FlowContext, list[Item]], Awaitable[None]]
Decoder = Callable[[InboundRecord], Envelope]


def decode_envelope(rec: InboundRecord) -> Envelope:
    if rec.value is None:
        raise ContractError(
            "value", None, "a message must have a value (tombstones are not accepted)"
        )
    return Envelope.from_bytes(rec.value)


@dataclass
class FlowSpec:
    name: str
    topics: list[str]
    handle: Handler
    validate_body: bool = True
    journal: bool = False
    decode: Decoder = decode_envelope


@dataclass
class BatchStats:
    applied: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    seconds: float = 0.0
    last_error: str | None = None


class _Isolate(Exception):
    """Roll the fast path back; the batch is redone one savepoint per message."""


@dataclass
class _Decoded:
    rec: InboundRecord
    env: Envelope | None = None
    body: BaseModel | None = None
    failure: Failure | None = None


class BatchProcessor:
    def __init__(
        self,
        spec: FlowSpec,
        sessions: async_sessionmaker[AsyncSession],
        *,
        max_message_bytes: int,
        on_committed: Callable[[], None] | None = None,
        route: DirectRoute | None = None,
    ) -> None:
        self.spec = spec
        self.sessions = sessions
        self.max_message_bytes = max_message_bytes
        self.on_committed = on_committed
        self.route = route

    def _decode(self, rec: InboundRecord) -> _Decoded:
        size = len(rec.value or b"") + len(rec.key or b"")
        if size > self.max_message_bytes:
            return _Decoded(
                rec,
                failure=Failure(
                    "receive",
                    f"field 'value' value <{size} bytes>: message larger than the limit of "
                    f"{self.max_message_bytes} bytes (EAI_MAX_MESSAGE_BYTES)",
                    "Oversize",
                ),
            )
        try:
            env = self.spec.decode(rec)
        except ContractError as exc:
            stage = "deserialize" if exc.field in ("encoding", "json", "value") else "validate"
            return _Decoded(rec, failure=Failure(stage, exc.reason, "ContractError"))
        except PermanentError as exc:
            return _Decoded(rec, failure=Failure(exc.stage, str(exc), type(exc).__name__))
        body = None
        if self.spec.validate_body:
            from contracts.registry import validate_body

            try:
                body = validate_body(env)
            except ContractError as exc:
                return _Decoded(
                    rec, env=env, failure=Failure("validate", exc.reason, "ContractError")
                )
        return _Decoded(rec, env=env, body=body)

    async def process(self, records: Sequence[InboundRecord]) -> BatchStats:
        """Apply one batch. Raises TransientError (nothing committed) for the caller to retry."""
        t0 = time.perf_counter()
        decoded = [self._decode(r) for r in records]
        stats = await self._transaction(decoded, careful=False)
        if stats is None:  # some message failed: redo with one savepoint per message
            stats = await self._transaction(decoded, careful=True)
            assert stats is not None
        faults.reached("after_store_commit")
        if self.on_committed:
            self.on_committed()
        stats.seconds = time.perf_counter() - t0
        return stats

    async def _transaction(self, decoded: list[_Decoded], careful: bool) -> BatchStats | None:
        stats = BatchStats()
        try:
            async with self.sessions() as session, session.begin():
                if not await self._apply(session, decoded, stats, careful):
                    raise _Isolate
        except _Isolate:
            return None
        except TransientError:
            raise
        except Exception as exc:  # the store itself failed: retry the whole batch
            raise TransientError(f"store transaction failed: {type(exc).__name__}: {exc}") from exc
        return stats

    async def _apply(
        self, session: AsyncSession, decoded: list[_Decoded], stats: BatchStats, careful: bool
    ) -> bool:
        flow = self.spec.name
        if self.spec.journal:
            await self._journal(session, decoded)
        ids = [str(d.env.message_id) for d in decoded if d.env is not None and d.failure is None]
        # the fast path writes the ledger rows up front on PostgreSQL (one statement instead of
        # a check now and an insert at the end); a failure rolls them back with the batch
        claimed = None if careful else await claim(session, flow, ids)
        seen = claimed if claimed is not None else await already_processed(session, flow, ids)
        todo: list[Item] = []
        for d in decoded:
            env = d.env
            if d.failure is not None:
                await dead_letter(
                    session,
                    flow,
                    d.rec,
                    d.failure,
                    message_id=str(env.message_id) if env else None,
                    source_system=env.source_system if env else d.rec.header("eai.source_system"),
                )
                stats.dead_lettered += 1
                stats.last_error = d.failure.reason
                continue
            assert env is not None
            mid = str(env.message_id)
            if mid in seen:
                stats.duplicates += 1
                continue
            seen.add(mid)
            todo.append(Item(d.rec, env, d.body))
        ctx = FlowContext(session, flow, route=self.route)
        done: list[str] = []
        if not careful:
            try:
                if todo:
                    await self.spec.handle(ctx, todo)
            except TransientError:
                raise
            except Exception as exc:
                log.info(
                    "flow %s: batch of %d has a failing message (%s); isolating it",
                    flow,
                    len(todo),
                    exc,
                )
                return False
            done = [str(i.env.message_id) for i in todo]
        else:
            for item in todo:
                one = FlowContext(session, flow, route=self.route)
                try:
                    async with session.begin_nested():
                        await self.spec.handle(one, [item])
                except TransientError:
                    raise
                except Exception as exc:
                    await self._fail(session, item, exc, stats)
                    continue
                ctx.outbox.extend(one.outbox)
                ctx.routed.extend(one.routed)
                done.append(str(item.env.message_id))
        stats.applied += len(done)
        await ctx.write_out()
        if claimed is None:
            await mark_processed(session, flow, done)
        faults.reached("before_store_commit")
        return True

    async def _fail(
        self, session: AsyncSession, item: Item, exc: Exception, stats: BatchStats
    ) -> None:
        stage = exc.stage if isinstance(exc, PermanentError) else "process"
        reason = exc.reason if isinstance(exc, ContractError) else str(exc) or repr(exc)
        log.warning(
            "flow %s: message %s dead-lettered: %s", self.spec.name, item.env.message_id, reason
        )
        await dead_letter(
            session,
            self.spec.name,
            item.rec,
            Failure(stage, reason, type(exc).__name__),
            message_id=str(item.env.message_id),
            source_system=item.env.source_system,
        )
        stats.dead_lettered += 1
        stats.last_error = reason

    async def _journal(self, session: AsyncSession, decoded: list[_Decoded]) -> None:
        rows: list[dict[str, Any]] = [
            {
                "topic": d.rec.topic,
                "partition": d.rec.partition,
                "offset": d.rec.offset,
                "timestamp_ms": d.rec.timestamp_ms,
                "key": d.rec.key,
                "value": d.rec.value or b"",
                "headers": headers_to_json(d.rec.headers),
                "message_id": str(d.env.message_id) if d.env else None,
                "source_system": d.env.source_system if d.env else None,
            }
            for d in decoded
        ]
        # A redelivered batch finds its records already journaled: keep the first copy.
        await insert_ignoring_conflicts(session, JournalEntry.__table__, rows)
