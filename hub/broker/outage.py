"""One clear line when the broker is unreachable, reminders, one line when it is back.

While the broker is down aiokafka logs every failed connect, metadata refresh, fetch,
heartbeat and coordinator lookup of every client at ERROR: about 600 records a second for a
hub with its flows (measured with the broker SIGKILLed, decision 57). The operator needs to
know three things: that the broker is unreachable (since when, at which address), that it
still is, and when it is back.

``BrokerOutageLog`` is a ``logging.Filter`` put on aiokafka's loggers (a logger's filter
sees only the records logged on that logger, so it goes on each of them). The first
connection failure at WARNING or above opens an outage: one ERROR line on
``hub.broker.outage`` names the bootstrap address, the time and aiokafka's message, and
every aiokafka record at WARNING or above is held back from then on (counted). A task of
the hub (``run``) probes the bootstrap addresses with a TCP connect every second while the
outage lasts, logs a reminder every ``remind_s`` with the records held back meanwhile, and
logs one WARNING when a connect succeeds. Records below WARNING and every other record while
the broker is up pass unchanged. A connection failure in the first ``settle_s`` after the
broker came back (clients reconnecting) is held back without opening a new outage; if the
broker is down again the probe says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

log = logging.getLogger(__name__)

# aiokafka's own text for "the broker cannot be reached" (aiokafka 0.10-0.12).
CONNECTION_FAILURES = (
    "Unable connect to node",
    "Connect call failed",
    "Unable to update metadata",
    "KafkaConnectionError",
    "NodeNotReadyError",
    "Connection at",
    "Marking the coordinator dead",
)
AIOKAFKA = "aiokafka"


def aiokafka_loggers() -> list[logging.Logger]:
    """aiokafka's loggers: ``aiokafka`` and every ``aiokafka.*`` its modules created."""
    # the modules create their loggers on import; the hub imports these anyway
    import aiokafka.admin
    import aiokafka.consumer.group_coordinator
    import aiokafka.producer.sender

    del aiokafka
    children = (n for n in logging.Logger.manager.loggerDict if n.startswith(AIOKAFKA + "."))
    return [logging.getLogger(n) for n in (AIOKAFKA, *sorted(children))]


def _addresses(bootstrap: str) -> list[tuple[str, int]]:
    out = []
    for part in bootstrap.split(","):
        host, _, port = part.strip().rpartition(":")
        if host and port.isdigit():
            out.append((host.strip("[]"), int(port)))
    return out


class BrokerOutageLog(logging.Filter):
    def __init__(
        self,
        bootstrap: str,
        *,
        remind_s: float = 30.0,
        probe_s: float = 1.0,
        settle_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.bootstrap = bootstrap
        self.remind_s, self.probe_s, self.settle_s = remind_s, probe_s, settle_s
        self.clock = clock
        self.down_since: datetime | None = None
        self._down_at = 0.0
        self._reminded_at = 0.0
        self._up_at: float | None = None
        self.held = 0  # records held back since the last line
        self.held_total = 0
        self.outages = 0
        self._loggers: list[logging.Logger] = []
        self._stopping = asyncio.Event()

    # ----------------------------------------------------------------- the filter
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        if self.down_since is not None:
            self._hold()
            return False
        message = record.getMessage()
        if not any(m in message for m in CONNECTION_FAILURES):
            return True
        if self._up_at is not None and self.clock() - self._up_at < self.settle_s:
            self._hold()  # a client still reconnecting after the outage
            return False
        self._open(message)
        return False

    def _hold(self) -> None:
        self.held += 1
        self.held_total += 1

    def _open(self, message: str) -> None:
        self.down_since = datetime.now(UTC)
        self._down_at = self._reminded_at = self.clock()
        self.outages += 1
        self.held = 1
        self.held_total += 1
        log.error(
            "Kafka broker unreachable at %s since %s: %s (aiokafka's repeats are held back; "
            "a reminder every %.0f s)",
            self.bootstrap,
            self.down_since.isoformat(timespec="seconds"),
            message,
            self.remind_s,
        )

    def remind(self) -> None:
        assert self.down_since is not None
        now = self.clock()
        log.error(
            "Kafka broker still unreachable at %s since %s (%.0f s); %d aiokafka messages "
            "held back in the last %.0f s",
            self.bootstrap,
            self.down_since.isoformat(timespec="seconds"),
            now - self._down_at,
            self.held,
            now - self._reminded_at,
        )
        self._reminded_at = now
        self.held = 0

    def recovered(self) -> None:
        assert self.down_since is not None
        now = self.clock()
        log.warning(
            "Kafka broker reachable again at %s after %.0f s (unreachable since %s); %d aiokafka "
            "messages held back during the outage",
            self.bootstrap,
            now - self._down_at,
            self.down_since.isoformat(timespec="seconds"),
            self.held_total,
        )
        self.down_since = None
        self._up_at = now
        self.held = self.held_total = 0

    # ----------------------------------------------------------------- installing, probing
    def install(self) -> None:
        self._loggers = aiokafka_loggers()
        for lg in self._loggers:
            lg.addFilter(self)

    def uninstall(self) -> None:
        for lg in self._loggers:
            lg.removeFilter(self)
        self._loggers = []

    def stop(self) -> None:
        self._stopping.set()

    async def reachable(self) -> bool:
        for host, port in _addresses(self.bootstrap):
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
            except (OSError, TimeoutError):
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True
        return False

    async def run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.probe_s)
            if self.down_since is None or self._stopping.is_set():
                continue
            if await self.reachable():
                self.recovered()
            elif self.clock() - self._reminded_at >= self.remind_s:
                self.remind()
