"""The hub process: broker (embedded or external), store, flows, outbox relay, admin API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from contracts import topics
from hub.broker import kafka
from hub.broker.embedded import EmbeddedBroker
from hub.broker.outage import BrokerOutageLog
from hub.core.inbound import InboundRecord
from hub.core.processor import BatchProcessor, FlowSpec
from hub.core.relay import OutboxRelay, handoff_enabled
from hub.core.runner import FlowRunner
from hub.delivery import DeliveryService
from hub.heap import freeze_startup_heap, thaw_heap
from hub.settings import Settings
from hub.store import db

log = logging.getLogger(__name__)

# How long stop() waits for the hub's tasks to end on their own before cancelling them.
STOP_GRACE_S = 10.0
# The same after the broker was lost: consumers still joining or leaving a group wait for a
# coordinator that is gone, and no batch can commit its offsets any more; what a cancelled
# batch had written is rolled back, or is a duplicate for the ledger when the new hub redoes it.
BROKER_LOST_GRACE_S = 1.0


def default_flows(settings: Settings | None = None) -> list[FlowSpec]:
    from flows.identity import flow as identity
    from flows.records import flow as records
    from flows.urge import flow as urges
    from hub.ingest import native_flow

    ident = (
        identity.spec_from_settings(settings.identity_config, settings.identity_model_dir)
        if settings is not None
        else identity.spec()
    )
    specs = [records.spec(), native_flow.spec(), urges.spec(), ident]
    if settings is not None and settings.sync_enabled:
        specs += sync_flows(load_sync_config(settings))
    return specs


def load_sync_config(settings: Settings) -> Any:
    from flows.sync.config import load_config

    return load_config(settings.sync_config or None)


def sync_flows(config: Any) -> list[FlowSpec]:
    from flows.sync import bom_flow, inventory_flow, master_flow, order_flow

    return [
        master_flow.spec(config),
        order_flow.spec(config),
        bom_flow.spec(config),
        bom_flow.codes_spec(config),
        inventory_flow.spec(config),
    ]


def link_flows(flows: list[FlowSpec]) -> None:
    """Let flows that run together share work (decision 65): the identity flow, which consumes
    every accepted customer and material change, re-freezes duplicates a clerk edited for
    sync.master in its own transaction, so that sync.master does not consume every change a
    second time only for those. Without sync.master among `flows`, nothing is re-frozen, as
    before. Specs are assembled by `default_flows` or by the caller: linked here, in whatever
    list the hub runs, each time it starts."""
    from flows.identity import flow as identity
    from flows.sync import master_flow

    masters = [m for m in (master_flow.flow_of(f) for f in flows) if m is not None]
    refreeze = masters[0].refreeze if masters else None
    for f in flows:
        ident = identity.flow_of(f)
        if ident is not None:
            ident.on_held = refreeze


@dataclass
class Hub:
    settings: Settings
    # empty: the default flows, configured from `settings` (a bad identity or sync file stops
    # here), the sync flows included when enabled
    flows: list[FlowSpec] = field(default_factory=list)
    run_flows: bool = True
    serve_api: bool = True
    embedded: EmbeddedBroker | None = None
    bootstrap: str = ""
    engine: AsyncEngine | None = None
    sessions: async_sessionmaker[AsyncSession] | None = None
    producer: AIOKafkaProducer | None = None
    relay: OutboxRelay | None = None
    runners: list[FlowRunner] = field(default_factory=list)
    pollers: list[Any] = field(default_factory=list)
    delivery: DeliveryService | None = None
    replayer: Any = None  # hub.replay.ReplayRunner, in the API process
    urge_scheduler: Any = None  # hub.urge_scheduler.UrgeScheduler when the urges flow runs
    run_urge_scheduler: bool = True
    api_server: Any = None
    broker_info: kafka.BrokerInfo | None = None
    unparker: Any = None  # hub.sync_unparker.Unparker when a flow that parks runs
    epoch: Any = None  # hub.broker.epoch.BrokerEpochWatch
    housekeeper: Any = None  # hub.housekeeping.Housekeeper, in the API process
    outage: BrokerOutageLog | None = None
    # a hub started again after its broker lost its data: every flow reads the new broker's
    # log from its start instead of from offsets the previous hub may have committed there
    from_beginning: bool = False
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _embedded_watch: asyncio.Task[Any] | None = None
    _lag_probe: asyncio.Task[None] | None = None
    _recovery: asyncio.Task[None] | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        if not self.flows:
            self.flows = default_flows(self.settings)

    async def start(self) -> None:
        s = self.settings
        link_flows(self.flows)  # before any runner or replay can use them
        self.engine = db.create_engine(s.database_url)
        await db.check_reachable(self.engine, s.database_connect_timeout_s)
        await db.migrate(self.engine)
        self.sessions = db.sessionmaker(self.engine)
        if s.kafka_bootstrap:
            self.bootstrap = s.kafka_bootstrap
        else:
            self.embedded = EmbeddedBroker()
            self.bootstrap = await asyncio.to_thread(self.embedded.start)
        # From here aiokafka may log; an unreachable broker is one line, not hundreds a second.
        self.outage = BrokerOutageLog(self.bootstrap, remind_s=s.broker_outage_remind_s)
        self.outage.install()
        self._tasks.append(asyncio.create_task(self.outage.run(), name="broker-outage-log"))
        self.broker_info = await kafka.check_reachable(s, self.bootstrap)
        if self.embedded is not None:
            self._embedded_watch = asyncio.create_task(
                self._watch_embedded(), name="embedded-broker"
            )
            self._tasks.append(self._embedded_watch)
        from hub.ingest.native_flow import native_topics

        await kafka.ensure_topics(s, self.bootstrap, topics.all_topics() + sorted(native_topics()))
        self.producer = kafka.make_producer(s, self.bootstrap, tansu=self.broker_info.is_tansu)
        await self.producer.start()
        self.relay = OutboxRelay(
            self.sessions,
            self.producer,
            batch_size=s.relay_batch_size,
            interval_ms=s.relay_interval_ms,
            lease_s=s.relay_lease_s,
        )
        self._tasks.append(asyncio.create_task(self.relay.run(), name="outbox-relay"))
        await self._start_epoch_watch()
        second_copy = None
        if s.sync_enabled:
            from flows.sync.master import second_copy_policy

            second_copy = second_copy_policy(load_sync_config(s).master)
        self.delivery = DeliveryService.from_settings(s, second_copy=second_copy)
        if self.run_flows:
            for spec in [*self.flows, *self.delivery.flows()]:
                self.runners.append(self._runner(spec))
            for r in self.runners:
                self._tasks.append(asyncio.create_task(r.run(), name=f"flow-{r.name}"))
            runners = list(self.runners)

            def offer(records: list[InboundRecord]) -> None:
                for r in runners:
                    r.offer(records)

            if handoff_enabled(s.relay_handoff, self.broker_info.is_tansu):
                # decision 60: a flow need not wait for its next fetch (Tansu holds each for
                # its whole fetch_max_wait_ms) to see what this process just published
                self.relay.on_published = offer
            self._tasks.extend(self.delivery.start(self.sessions))
            if self.from_beginning:
                # Not in self._tasks: it ends once the loss is recovered, which is no reason
                # for wait() to stop the hub.
                self._recovery = asyncio.create_task(
                    self._settle_recovery(), name="broker-loss-recovery"
                )
            self._start_pollers()
            self._start_urge_scheduler()
            self._start_unparker()
        if self.serve_api:
            from hub.api.admin import bootstrap_admin, start_replay_runner

            await bootstrap_admin(self)
            self.replayer, replay_task = start_replay_runner(self)
            self._tasks.append(replay_task)
            self._start_housekeeping()
            await self._start_api()
        # everything start-up built lives as long as the process: out of the collector's way
        frozen = freeze_startup_heap()
        log.info(
            "hub started: broker %s, store %s (%d start-up objects frozen for the collector)",
            self.bootstrap,
            self.engine.dialect.name,
            frozen,
        )

    async def _start_epoch_watch(self) -> None:
        from hub.broker.epoch import BrokerEpochWatch

        assert self.sessions is not None and self.producer is not None and self.relay
        self.epoch = BrokerEpochWatch(self.settings, self.bootstrap, self.sessions, self.producer)
        try:
            # Before the flows start: a broker that came back empty gets the outbox again.
            lost = await self.epoch.check()
            pending = not lost and await self.epoch.recovery_pending()
            if (self.from_beginning or pending) and not lost:
                # The previous hub marked the outbox for republishing when it noticed the loss,
                # but its relay went on until it stopped: a batch it had sent to the lost broker
                # and marked sent after that mark was never published again (7 of 2,000 records
                # in tests/chaos/test_broker_restart.py). Now that it has stopped, mark again.
                await self.epoch.republish_again()
            # A process its supervisor started after the loss knows of it only from the store.
            self.from_beginning = self.from_beginning or lost or pending
        except Exception as exc:
            log.warning("broker epoch check at start failed: %s: %s", type(exc).__name__, exc)
        self._tasks.append(
            asyncio.create_task(self.epoch.run(self.relay.wake), name="broker-epoch")
        )

    async def _settle_recovery(self) -> None:
        """Mark the broker loss recovered once every flow has rewound and committed the
        partitions it holds, and the hubs of the old log have had time to notice the loss;
        until then partitions that move here are rewound too."""
        while True:
            await asyncio.sleep(1.0)
            rewinds = [r.rewind for r in self.runners]
            if not all(rw is not None and rw.done for rw in rewinds):
                continue
            try:
                age = await self.epoch.loss_age_s() if self.epoch.seen is not None else None
                if age is not None and age < self.epoch.settle_s():
                    continue
                if age is not None:
                    await self.epoch.mark_recovered()
            except Exception as exc:
                log.warning("broker loss recovery: %s: %s", type(exc).__name__, exc)
                continue
            for rw in rewinds:
                assert rw is not None
                rw.settled = True
            return

    async def _watch_embedded(self) -> None:
        """The embedded broker is this process's child and keeps its log in memory: if it
        dies, stop (a supervisor starts the hub again with a new, empty broker, and the epoch
        check at start republishes the outbox, hub/broker/epoch.py)."""
        assert self.embedded is not None and self.embedded.proc is not None
        code = await asyncio.to_thread(self.embedded.proc.wait)
        from hub.broker.epoch import BrokerLost

        raise BrokerLost(f"the embedded broker exited with code {code}")

    def _start_housekeeping(self) -> None:
        from hub.housekeeping import Housekeeper, Retention

        assert self.sessions is not None
        self.housekeeper = Housekeeper(
            self.sessions,
            Retention.from_settings(self.settings),
            interval_s=self.settings.housekeeping_interval_s,
        )
        self._tasks.append(asyncio.create_task(self.housekeeper.run(), name="housekeeping"))

    def _start_urge_scheduler(self) -> None:
        from flows.urge import flow as urges
        from hub.urge_scheduler import UrgeScheduler

        spec = next((f for f in self.flows if f.name == urges.NAME), None)
        if spec is None or not self.run_urge_scheduler:
            return
        assert self.sessions is not None and self.relay is not None
        policy, calendar = urges.policy_of(spec)
        self.urge_scheduler = UrgeScheduler(
            self.sessions, policy, calendar, on_committed=self.relay.wake
        )
        self._tasks.append(asyncio.create_task(self.urge_scheduler.run(), name="urge-scheduler"))

    def _start_unparker(self) -> None:
        from hub.sync_unparker import ROUTERS, Unparker

        parking = [f.name for f in self.flows if f.name in ROUTERS]
        if not parking:
            return
        assert self.sessions is not None and self.relay is not None
        self.unparker = Unparker(
            self.sessions,
            load_sync_config(self.settings),
            flows=parking,
            on_committed=self.relay.wake,
            route=self.delivery.route() if self.delivery is not None else None,
        )
        self._tasks.append(asyncio.create_task(self.unparker.run(), name="unparker"))

    def _start_pollers(self) -> None:
        from hub.ingest.poller import Poller, parse_sources

        assert self.sessions is not None and self.relay is not None
        for system, url in parse_sources(self.settings.poll_sources).items():
            p = Poller(
                self.sessions,
                system,
                url,
                interval_s=self.settings.poll_interval_s,
                on_committed=self.relay.wake,
            )
            self.pollers.append(p)
            self._tasks.append(asyncio.create_task(p.run(), name=f"poll-{system}"))

    def _runner(self, spec: FlowSpec) -> FlowRunner:
        s = self.settings
        assert self.sessions is not None and self.relay is not None
        processor = BatchProcessor(
            spec,
            self.sessions,
            max_message_bytes=s.max_message_bytes,
            on_committed=self.relay.wake,
            route=self.delivery.route() if self.delivery is not None else None,
        )
        # After a broker loss the runner subscribes itself, rewinding its first assignment.
        topics = () if self.from_beginning else tuple(spec.topics)
        consumer = kafka.make_consumer(
            s,
            self.bootstrap,
            *topics,
            group_id=f"{s.group_prefix}.{spec.name}",
            session_timeout_ms=s.kafka_session_timeout_ms,
            heartbeat_interval_ms=max(s.kafka_session_timeout_ms // 5, 500),
        )
        return FlowRunner(
            processor,
            consumer,
            batch_size=s.batch_size,
            poll_timeout_ms=s.poll_timeout_ms,
            backoff_initial_ms=s.retry_backoff_initial_ms,
            backoff_max_ms=s.retry_backoff_max_ms,
            rewind_topics=tuple(spec.topics) if self.from_beginning else (),
        )

    async def _start_api(self) -> None:
        import uvicorn

        from hub.api.app import create_app

        config = uvicorn.Config(
            create_app(self),
            host=self.settings.host,
            port=self.settings.port,
            log_level="warning",
            lifespan="off",
        )
        from hub.loop_health import probe_lag

        # Not in self._tasks: the probe loops until cancelled, and stop() would wait its whole
        # grace period (10 s on every stop) for a task that never returns on its own.
        self._lag_probe = asyncio.create_task(probe_lag(), name="event-loop-lag")
        self.api_server = uvicorn.Server(config)
        self.api_server.install_signal_handlers = lambda: None
        task = asyncio.create_task(self.api_server.serve(), name="admin-api")
        self._tasks.append(task)
        for _ in range(200):
            if self.api_server.started or task.done():
                break
            await asyncio.sleep(0.05)
        if task.done():
            exc = task.exception()
            raise RuntimeError(
                f"admin API could not listen on {self.settings.host}:{self.settings.port}: {exc}"
            )

    def request_stop(self) -> None:
        self._stop.set()

    async def wait(self) -> None:
        """Until stop is requested or a task dies; a dead task stops the hub (fail loudly)."""
        stopper = asyncio.create_task(self._stop.wait())
        done, _ = await asyncio.wait([stopper, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        for t in done:
            if t is not stopper and not t.cancelled() and t.exception() is not None:
                log.error("task %s failed: %r", t.get_name(), t.exception())
                raise t.exception()  # type: ignore[misc]

    async def ready(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        try:
            assert self.engine is not None
            await db.check_reachable(self.engine, 2.0)
            checks["store"] = "ok"
        except Exception as exc:
            checks["store"] = f"unreachable: {exc}"
        try:
            assert self.producer is not None
            await asyncio.wait_for(self.producer.client.fetch_all_metadata(), 2.0)
            checks["broker"] = "ok"
        except Exception as exc:
            checks["broker"] = f"unreachable: {type(exc).__name__} {exc}"
        return checks

    async def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        if self._embedded_watch is not None:
            self._embedded_watch.cancel()  # we stop the broker ourselves below
        for r in self.runners:
            r.stop()
        for p in self.pollers:
            p.stop()
        if self.urge_scheduler is not None:
            self.urge_scheduler.stop()
        if self.unparker is not None:
            self.unparker.stop()
        if self.relay:
            self.relay.stop()
        if self.epoch is not None:
            self.epoch.stop()
        if self.replayer is not None:
            self.replayer.stop()
        if self.housekeeper is not None:
            self.housekeeper.stop()
        if self.delivery is not None:
            self.delivery.stop()
        if self.outage is not None:
            self.outage.stop()
        if self.api_server is not None:
            self.api_server.should_exit = True
        for side in (self._lag_probe, self._recovery):
            if side is not None:
                side.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await side
        self._lag_probe = self._recovery = None
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace_s)
            if pending:
                # Every task ends on its own once told to stop; one that did not is a defect
                # that makes each stop (SIGTERM, a restart) wait the whole grace period.
                log.warning(
                    "stop: %d task(s) still running after %.0f s, cancelled: %s",
                    len(pending),
                    grace_s,
                    ", ".join(sorted(t.get_name() for t in pending)),
                )
            for t in pending:
                t.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(*pending, return_exceptions=True)
        if self.delivery is not None:
            await self.delivery.aclose()
        if self.epoch is not None:
            await self.epoch.close()
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await self.producer.stop()
        if self.engine is not None:
            await self.engine.dispose()
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)
        if self.outage is not None:
            self.outage.uninstall()  # after the clients stopped: their last errors held too
        # a stopped hub's objects may be garbage now (a process that starts hubs one after
        # another, tests): give the collector the frozen heap back
        thaw_heap()
        log.info("hub stopped")


RESTART_DELAY_MAX_S = 30.0


def restart_delay(restarts: int) -> float:
    """Seconds before the ``restarts``-th start again after a broker loss: 1, 2, 4 ... 30."""
    return float(min(2 ** max(restarts - 1, 0), RESTART_DELAY_MAX_S))


class Restarting:
    """Runs hubs one after another in this process while the broker loses its data.

    A hub that finds its broker lost (``BrokerLost``: the epoch watch, or its embedded broker
    child died) is stopped and a new one started: new clients, consumers that join afresh, a
    new embedded broker, whose check at start republishes the outbox. Decision 29a found that
    rewinding live consumers stalls and a fresh process joins cleanly; fresh clients in the
    same process are what made the difference. The process itself stays up, so a hub started
    from a shell (no Docker restart policy, no systemd) comes back on its own."""

    def __init__(self) -> None:
        self.stopping = asyncio.Event()
        self.hub: Hub | None = None
        self.restarts = 0

    def request_stop(self) -> None:
        self.stopping.set()
        if self.hub is not None:
            self.hub.request_stop()

    def install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)

    async def pause(self) -> bool:
        """Wait before the next start; False when a stop was asked meanwhile."""
        from hub.metrics import HUB_RESTARTS

        self.restarts += 1
        HUB_RESTARTS.inc()
        delay = restart_delay(self.restarts)
        log.warning("starting the hub again in %.0f s (restart %d)", delay, self.restarts)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), delay)
        return not self.stopping.is_set()


async def serve(settings: Settings, **kw: Any) -> None:
    """One hub until SIGTERM/SIGINT, started again after a broker loss (``Restarting``)."""
    from hub.broker.epoch import BrokerLost
    from hub.loop_health import settle_heap

    r = Restarting()
    r.install_signals()
    while not r.stopping.is_set():
        r.hub = hub = Hub(settings, from_beginning=r.restarts > 0, **kw)
        grace_s = STOP_GRACE_S
        try:
            await hub.start()
            settle_heap()
            await hub.wait()
            return
        except BrokerLost as exc:
            log.error("%s", exc)
            grace_s = BROKER_LOST_GRACE_S
        finally:
            await hub.stop(grace_s)
        if not await r.pause():
            return
