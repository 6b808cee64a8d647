"""The deliverer of one target system: claims head rows, calls the API, records outcomes.

A pipeline of at most ``concurrency`` calls in flight, each for a different key: whenever a
slot frees, the next due head rows are claimed. A key whose head is waiting for a retry blocks
only its own later messages; a slow call occupies one slot, not a round.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import socket
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from connectors.common.sink import DeliveryResult, Outcome, Sink
from contracts.envelope import Envelope
from contracts.errors import ContractError
from hub.core import faults
from hub.delivery import metrics, queue
from hub.delivery.config import DeliveryConfig
from hub.delivery.metrics import DelivererCounters
from hub.delivery.policy import Decision, Verdict, decide
from hub.store import db

log = logging.getLogger(__name__)

GAUGE_REFRESH_S = 5.0
RECORD_BATCH = 500


@dataclass
class _Pending:
    attempt: queue.Attempt
    done: asyncio.Future[bool | None]

    def resolve(self, value: bool | None) -> None:
        if not self.done.done():
            self.done.set_result(value)

    def override(self, overrides: dict[int, Decision]) -> None:
        """The store may decide otherwise than the call's outcome (a 409 conflict)."""
        job, result, _ = self.attempt
        if job.id in overrides:
            self.attempt = (job, result, overrides[job.id])


def worker_id() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Deliverer:
    """One loop per target: each round records the outcomes that came back and claims rows
    for the slots they freed, in ONE store transaction, then starts those calls.

    Recording and claiming in separate transactions cost two per call at best (the queue
    moved ~55 calls/s on PostgreSQL and less on SQLite, where every transaction queues for
    the one write lock); together they are one per round, and a round takes every outcome
    that arrived before its transaction began, including while it queued for the store."""

    def __init__(
        self,
        system: str,
        sink: Sink,
        sessions: async_sessionmaker[AsyncSession],
        config: DeliveryConfig,
        *,
        rand: random.Random | None = None,
        second_copy: queue.SecondCopy | None = None,
    ) -> None:
        self.system = system
        self.second_copy = second_copy
        self.sink = sink
        self.sessions = sessions
        self._readers = db.read_sessionmaker(sessions)  # gauges: no write lock on SQLite
        self.config = config
        self.owner = worker_id()
        self.counters = DelivererCounters()
        self.rand = rand or random.Random()
        self._inflight: dict[int, asyncio.Task[None]] = {}
        # claimed rows whose outcome is not recorded yet: ready, in a call, or waiting to be
        # recorded (a task whose outcome was recorded may still be finishing)
        self._busy: set[int] = set()
        # Claim-ahead: up to `claim_ahead` rows claimed for the slots that will free next, each
        # started the moment a call returns, so the calls go on while a round is in the store
        # (with the rounds only, every slot that freed waited for a round, which on SQLite
        # queues behind the flows' batches for the write lock; with one row per slot the
        # calls still stopped for most of each wait: decision 60). Each with the monotonic
        # time it must start by.
        self._ready: deque[tuple[queue.Job, float]] = deque()
        self._calling = 0  # calls started whose outcome has not come back
        # ready rows given up unstarted (stopping, or too little lease left for a call)
        self._unstarted: list[int] = []
        # Outcomes waiting to be recorded: the next round records all that are waiting.
        self._outcomes: list[_Pending] = []
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._gauges_at = 0.0

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        interval = self.config.poll_interval_ms / 1000
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                claimed, free = await self._round(claim=True)
                if (claimed and claimed == free) or self._outcomes:
                    continue  # more may be due, or outcomes came back meanwhile
                if time.monotonic() - self._gauges_at > GAUGE_REFRESH_S:
                    await self.refresh_gauges()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), interval)
        finally:
            await self._drain()

    def _take_outcomes(self) -> list[_Pending]:
        batch, self._outcomes = self._outcomes[:RECORD_BATCH], self._outcomes[RECORD_BATCH:]
        return batch

    def _free(self, recording: int) -> int:
        """Rows to claim: slots for the calls plus the claim-ahead, less the rows still held
        (a row is no longer held once its outcome is recorded, in this very round)."""
        return self.config.concurrency + self.config.claim_ahead - len(self._busy) + recording

    async def _round(self, *, claim: bool) -> tuple[int, int]:
        """Record the outcomes waiting and claim rows for the slots they free, in one
        transaction; start the calls. Returns (rows claimed, rows wanted).

        The outcomes are taken once the transaction has begun, not before: on SQLite a round
        first queues for the write lock behind the flows' batches (hundreds of ms under
        load), and every call that returns meanwhile is recorded in this round instead of
        waiting for the next one, which would queue again (decision 60). If recording fails,
        the outcomes are recorded row by row (one bad row cannot hold the others) and
        nothing is claimed this round."""
        if not self._outcomes and not self._unstarted and (not claim or self._free(0) <= 0):
            return 0, 0
        outcomes: list[_Pending] = []
        unstarted: list[int] = []
        free = 0
        jobs: list[queue.Job] = []
        try:
            async with self.sessions() as s, s.begin():
                await s.connection()  # BEGIN: on SQLite, the write lock is ours from here
                outcomes = self._take_outcomes()
                unstarted, self._unstarted = self._unstarted, []
                recorded = {p.attempt[0].id for p in outcomes}
                free = self._free(len(outcomes)) if claim else 0
                busy = sorted(self._busy - recorded)
                answers: dict[int, bool] = {}
                overrides: dict[int, Decision] = {}
                if outcomes:
                    answers = await queue.finish_many(
                        s,
                        self.owner,
                        [p.attempt for p in outcomes],
                        now=datetime.now(UTC),
                        second_copy=self.second_copy,
                        direct=self.config.direct,
                        overrides=overrides,
                    )
                if unstarted:
                    await queue.unclaim(s, unstarted, self.owner)
                if free > 0 and not self._stopping.is_set():
                    jobs = await queue.claim(
                        s,
                        self.system,
                        self.owner,
                        free,
                        lease_s=self.config.lease_s,
                        exclude=busy,
                    )
        except Exception as exc:
            # not given back: their leases run out, and the attempt each claim counted stays
            self._busy.difference_update(unstarted)
            if outcomes:
                log.info("deliver.%s: batch record failed (%s); row by row", self.system, exc)
                for p in outcomes:
                    p.resolve(await self._record_one(p))
                self._busy -= {p.attempt[0].id for p in outcomes}
                return 0, free
            self.counters.store_errors += 1
            self.counters.error(f"claim failed: {type(exc).__name__}: {exc}")
            log.warning("deliver.%s: claim failed: %s", self.system, exc)
            await asyncio.sleep(min(5.0, self.config.poll_interval_ms / 1000 * 4))
            return 0, free
        for p in outcomes:
            p.override(overrides)
            p.resolve(answers[p.attempt[0].id])
        self._busy -= recorded
        self._busy.difference_update(unstarted)
        # a call may be started up to (lease - timeout - 1 s) after its claim: it then ends
        # (or times out) before the lease does, and no second worker can claim it meanwhile
        start_by = time.monotonic() + self.config.lease_s - self.config.timeout_s - 1.0
        for job in jobs:
            self._busy.add(job.id)
            self._ready.append((job, start_by))
        self._fill()
        return len(jobs), free

    def _fill(self) -> None:
        """Start ready rows while a slot is free."""
        now = time.monotonic()
        while self._ready and self._calling < self.config.concurrency:
            job, start_by = self._ready.popleft()
            if self._stopping.is_set() or now > start_by:
                self._unstarted.append(job.id)
                self._wake.set()
                continue
            self._calling += 1
            task = asyncio.create_task(self._deliver(job), name=f"deliver-{self.system}-{job.id}")
            self._inflight[job.id] = task
            task.add_done_callback(functools.partial(self._done, job.id))
        self.counters.in_flight = len(self._inflight)

    def _done(self, job_id: int, task: asyncio.Task[None]) -> None:
        # the row may have been claimed again by a newer task already (a retry due at once)
        if self._inflight.get(job_id) is task:
            del self._inflight[job_id]
            if all(job.id != job_id for job, _ in self._ready):  # claimed again, not started
                self._busy.discard(job_id)
        self.counters.in_flight = len(self._inflight)

    async def _call(self, job: queue.Job) -> DeliveryResult:
        try:
            env = Envelope.from_bytes(job.envelope.encode("utf-8"))
        except ContractError as exc:
            return DeliveryResult(Outcome.permanent, self.system, job.entity, reason=exc.reason)
        try:
            return await self.sink.deliver(
                job.entity, env.body, job.message_id, local_id=job.target_local_id
            )
        except Exception as exc:  # a bug in a mapping, say: bounded by max_attempts
            log.exception("deliver.%s: message %s: unexpected error", self.system, job.message_id)
            return DeliveryResult(
                Outcome.transient,
                self.system,
                job.entity,
                reason=f"unexpected {type(exc).__name__}: {exc}",
            )

    async def _deliver(self, job: queue.Job) -> None:
        c = self.counters
        try:
            result = await self._call(job)
        finally:
            # the slot is free as soon as the call returns: the next ready row starts now,
            # not after the round that records this outcome
            self._calling -= 1
            self._fill()
        c.attempts += 1
        metrics.ATTEMPTS.labels(self.system, result.outcome.value).inc()
        faults.reached("deliver_after_call")
        decision = decide(
            result,
            job.attempts,
            self.config.max_attempts,
            initial_s=self.config.backoff_initial_s,
            max_s=self.config.backoff_max_s,
            rand=self.rand.random,
            failing_for_s=(
                (datetime.now(UTC) - job.first_failure_at).total_seconds()
                if job.first_failure_at is not None
                else 0.0
            ),
            retry_timeout_s=self.config.retry_timeout_s,
        )
        done: asyncio.Future[bool | None] = asyncio.get_running_loop().create_future()
        pending = _Pending((job, result, decision), done)
        self._outcomes.append(pending)
        self._wake.set()
        recorded = await done
        if recorded is None:
            return  # the store failed: the lease runs out and the call is repeated
        if not recorded:
            c.lost_leases += 1
            log.warning(
                "deliver.%s: lease of message %s was lost; another worker owns it",
                self.system,
                job.message_id,
            )
            return
        self._count(job, result, pending.attempt[2])

    def _count(self, job: queue.Job, result: DeliveryResult, decision: Decision) -> None:
        c = self.counters
        if result.outcome is Outcome.transient:
            c.failed_transient += 1
        elif result.outcome is Outcome.permanent:
            c.failed_permanent += 1
        if decision.verdict is Verdict.delivered:
            c.delivered += 1
            c.duplicates += result.outcome is Outcome.duplicate
            c.last_delivered_at = time.time()
            return
        c.error(decision.reason)
        if decision.verdict is Verdict.dead:
            c.dead_lettered += 1
            metrics.DEAD.labels(self.system).inc()
            log.warning(
                "deliver.%s: message %s dead-lettered: %s",
                self.system,
                job.message_id,
                decision.reason,
            )
        else:
            log.info(
                "deliver.%s: message %s attempt %d failed, retry in %.1fs: %s",
                self.system,
                job.message_id,
                job.attempts,
                decision.delay_s,
                decision.reason,
            )

    async def _record_one(self, pending: _Pending) -> bool | None:
        """On store trouble retry briefly, then leave the row to its lease (the next
        attempt repeats the call with the same idempotency key)."""
        attempt = pending.attempt
        job = attempt[0]
        delay = 0.1
        for n in range(4):
            try:
                overrides: dict[int, Decision] = {}
                async with self.sessions() as s, s.begin():
                    answer = (
                        await queue.finish_many(
                            s,
                            self.owner,
                            [attempt],
                            now=datetime.now(UTC),
                            second_copy=self.second_copy,
                            direct=self.config.direct,
                            overrides=overrides,
                        )
                    )[job.id]
                pending.override(overrides)
                return answer
            except Exception as exc:
                self.counters.store_errors += 1
                self.counters.error(f"recording outcome failed: {type(exc).__name__}: {exc}")
                log.warning(
                    "deliver.%s: recording message %s failed (try %d): %s",
                    self.system,
                    job.message_id,
                    n + 1,
                    exc,
                )
                await asyncio.sleep(delay)
                delay *= 4
        return None

    async def _drain(self) -> None:
        """On stop: give the ready rows back unstarted, let calls in flight finish briefly,
        recording their outcomes, then cancel the rest, record what came back, and give the
        rows of the others back."""
        self._unstarted.extend(job.id for job, _ in self._ready)
        self._ready.clear()
        if self._unstarted:
            with contextlib.suppress(Exception):
                await self._round(claim=False)
        ids = list(self._inflight)
        deadline = time.monotonic() + min(self.config.timeout_s, 5.0)
        while self._inflight and time.monotonic() < deadline:
            if self._outcomes:
                await self._round(claim=False)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, deadline - time.monotonic()))
        pending = list(self._inflight.values())
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        while self._outcomes:
            try:
                await asyncio.wait_for(self._round(claim=False), 10)
            except (TimeoutError, Exception) as exc:
                log.warning("deliver.%s: outcomes not recorded at stop: %r", self.system, exc)
                break
        # Rows already recorded are no longer leased by us; release touches only the others.
        if ids:
            with contextlib.suppress(Exception):
                async with self.sessions() as s, s.begin():
                    await queue.release(s, ids, self.owner)

    async def refresh_gauges(self) -> queue.QueueCounts | None:
        self._gauges_at = time.monotonic()
        try:
            async with self._readers() as s, s.begin():
                c = (await queue.counts(s, [self.system]))[self.system]
        except Exception as exc:
            log.debug("deliver.%s: gauge refresh failed: %s", self.system, exc)
            return None
        set_gauges(self.system, c)
        return c


def set_gauges(system: str, c: queue.QueueCounts) -> None:
    metrics.PENDING.labels(system).set(c.pending)
    metrics.RETRYING.labels(system).set(c.retrying)
    age = (datetime.now(UTC) - c.oldest_pending_at).total_seconds() if c.oldest_pending_at else 0
    metrics.OLDEST.labels(system).set(max(age, 0.0))
