"""Operator commands of the connectors: ``simulate``, ``demo`` and ``import``.

``register(app)`` mounts them on the main ``eai-hub`` Typer app (hub/cli.py).

- ``simulate SYSTEM --port N``: one system simulator (its native API, its own SQLite file,
  traffic pushed to the hub's webhook when ``--hub-url`` is given).
- ``demo``: the hub on the embedded default (a child ``python -m hub.cli run``) and the five
  simulators in this process, pushing to the hub's webhook; Ctrl-C or SIGTERM stops all.
- ``import SYSTEM ENTITY FILE``: a CSV/XLSX export into the hub store's outbox (accepted rows)
  and dead-letter index (rejected rows). The CLI never talks to Kafka: the running hub's outbox
  relay publishes what the import wrote, so it works with the embedded broker too. Message ids
  are derived from the file's content and row numbers, so importing the same file again has no
  second effect (the records flow's ledger drops the repeats; dead letters are not doubled).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import hashlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from contracts.topics import SYSTEMS

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from connectors.common.errors import Rejection
    from contracts.envelope import Envelope

console = Console()

# Fixed forever: message ids of imported rows are uuid5 in this namespace, so that the same
# file imported twice (or resumed after a crash) yields the same ids.
IMPORT_NAMESPACE = uuid.UUID("0d4f4a36-2f5e-5a8e-9a51-6f2b1c0e7d19")
# Dead letters of every inbound edge (webhook, poll, file) share the flow name of the ingest
# edge; ``topic`` says where each one came from.
IMPORT_FLOW = "ingest"
IMPORT_TRANSACTION_ROWS = 500
DEMO_FIRST_PORT = 8101
HUB_START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0


def _fail(msg: str, code: int = 2) -> typer.Exit:
    console.print(f"[bold red]error:[/] {msg}")
    return typer.Exit(code)


def _logging() -> None:
    from hub.settings import Settings

    logging.basicConfig(
        level=Settings().log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _port_free(host: str, port: int) -> bool:
    """Whether a server can listen there (SO_REUSEADDR like uvicorn, so TIME_WAIT is fine)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _check_system(system: str) -> None:
    if system not in SYSTEMS:
        raise _fail(f"no system {system!r} (known: {', '.join(SYSTEMS)})")


# ----------------------------------------------------------------------------------- simulate
def simulate(
    system: str = typer.Argument(..., help=f"one of {', '.join(SYSTEMS)}"),
    port: int = typer.Option(..., min=1, max=65535, help="port of the simulator's native API"),
    hub_url: str = typer.Option(
        None, help="push generated records to {hub_url}/connectors/<system>/<entity>"
    ),
    seed: int = typer.Option(0, help="traffic is deterministic for a seed"),
    rate: float = typer.Option(1.0, help="generated records per second (0: API only)"),
    duplicates: float = typer.Option(
        0.2, min=0.0, max=1.0, help="share of records another system also has"
    ),
    db: Path = typer.Option(None, help="the simulator's SQLite file (var/sim/<system>.sqlite)"),
    host: str = typer.Option("127.0.0.1", help="bind address"),
    hub_token: str = typer.Option(
        None, envvar="EAI_HUB_TOKEN", help="bearer token for the hub's webhook"
    ),
) -> None:
    """Run one system simulator until Ctrl-C or SIGTERM."""
    from connectors.simulators import run_simulator, spec

    _check_system(system)
    if not _port_free(host, port):
        raise _fail(f"port {host}:{port} is already in use")
    _logging()
    # uvicorn shuts down gracefully on SIGTERM and then re-raises it to the handler it found:
    # make that a KeyboardInterrupt, which run_simulator treats as the normal end (exit 0).
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    target = f"pushing to {hub_url}" if hub_url else "not pushing (no --hub-url)"
    console.print(
        f"[green]{system}[/] simulator ({spec(system).title}) on http://{host}:{port}, "
        f"{rate:g} records/s, seed {seed}, {target}"
    )
    run_simulator(
        system,
        port,
        hub_url=hub_url,
        seed=seed,
        rate=rate,
        duplicates=duplicates,
        host=host,
        db_path=db,
        hub_token=hub_token,
    )


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


# --------------------------------------------------------------------------------------- demo
def demo(
    rate: float = typer.Option(1.0, help="records per second per simulator"),
    seed: int = typer.Option(0, help="traffic is deterministic for a seed"),
    duplicates: float = typer.Option(
        0.2, min=0.0, max=1.0, help="share of records another system also has"
    ),
    first_port: int = typer.Option(
        DEMO_FIRST_PORT,
        min=1,
        max=65531,
        help="the five simulators listen on this port and the four after it",
    ),
) -> None:
    """The hub on the embedded default plus the five simulators sending it traffic."""
    _logging()
    code = _demo(rate=rate, seed=seed, duplicates=duplicates, first_port=first_port)
    if code:
        raise typer.Exit(code)


def _demo(*, rate: float, seed: int, duplicates: float, first_port: int) -> int:
    from hub.settings import Settings

    settings = Settings()
    hub_host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    hub_url = f"http://{hub_host}:{settings.port}"
    ports = {system: first_port + i for i, system in enumerate(SYSTEMS)}
    busy = [] if _port_free(settings.host, settings.port) else [f"{hub_url} (hub)"]
    busy += [f"127.0.0.1:{p} ({s})" for s, p in ports.items() if not _port_free("127.0.0.1", p)]
    if busy:
        console.print(
            f"[bold red]error:[/] ports already in use: {', '.join(busy)} "
            "(EAI_PORT moves the hub, --first-port the simulators)"
        )
        return 2

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, on_signal) for s in handled}
    # The simulators push with an operator-or-better token; the demo owns the hub, so it
    # gives it an admin token (EAI_ADMIN_TOKEN if set) and prints it for the dashboard.
    token = os.environ.get("EAI_ADMIN_TOKEN") or "eai_" + secrets.token_urlsafe(32)
    os.environ.setdefault("EAI_HUB_TOKEN", token)
    # The hub delivers to the simulators, so the demo shows the systems agreeing (sync flows);
    # EAI_DELIVERY_TARGETS set by the operator wins.
    targets = ",".join(f"{s}=http://127.0.0.1:{p}" for s, p in ports.items())
    hub = _spawn_hub(token, os.environ.get("EAI_DELIVERY_TARGETS") or targets)
    sims: _SimulatorThread | None = None
    code = 0
    try:
        code = _wait_for_hub(hub, hub_url, stop)
        if code or stop.is_set():
            return code
        console.print(f"[green]hub[/] admin API {hub_url}  (GET /flows, /connectors, /health)")
        if "EAI_ADMIN_TOKEN" not in os.environ:
            console.print(f"admin token for this demo (shown once): {token}")
        sims = _SimulatorThread(ports, hub_url, seed=seed, rate=rate, duplicates=duplicates)
        sims.start()
        if not sims.wait_started(stop, timeout_s=30.0):
            if stop.is_set():
                return 0
            console.print(f"[bold red]error:[/] simulators did not start: {sims.error}")
            code = 1
            return code
        from connectors.simulators import spec

        for system, port in ports.items():
            console.print(
                f"[green]{system}[/] simulator http://127.0.0.1:{port}  "
                f"({spec(system).title}; GET /_sim/stats)"
            )
        console.print(
            f"[bold]demo running[/]: {rate:g} records/s per simulator, seed {seed}, "
            f"pushing to {hub_url}/connectors/<system>/<entity>; Ctrl-C stops everything"
        )
        while not stop.wait(0.5):
            if hub.poll() is not None:
                console.print(f"[bold red]error:[/] the hub exited with code {hub.returncode}")
                code = 1
                break
            if not sims.is_alive():
                console.print(f"[bold red]error:[/] the simulators stopped: {sims.error}")
                code = 1
                break
        return code
    finally:
        if sims is not None:
            sims.stop()
        hub_code = _stop_hub(hub)
        for s, handler in previous.items():
            signal.signal(s, handler)
        console.print(f"demo stopped (hub exit code {hub_code})")


def _die_with_parent() -> None:
    from hub.broker.embedded import _die_with_parent as die

    die()


def _spawn_hub(token: str, targets: str) -> subprocess.Popen[bytes]:
    """``eai-hub run`` as a child that dies with us, even when we are SIGKILLed."""
    return subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "run"],
        env=dict(os.environ, EAI_ADMIN_TOKEN=token, EAI_DELIVERY_TARGETS=targets),
        stdin=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
        # Its own process group: Ctrl-C reaches the demo only, which stops the simulators
        # first and then the hub with SIGTERM, so the hub (and its embedded broker, which
        # would otherwise get the terminal's SIGINT too) shuts down in order.
        process_group=0,
    )


def _wait_for_hub(hub: subprocess.Popen[bytes], hub_url: str, stop: threading.Event) -> int:
    """0 once GET /health answers; 2 if the hub exits or stays silent."""
    import httpx

    deadline = time.monotonic() + HUB_START_TIMEOUT_S
    while not stop.is_set():
        if hub.poll() is not None:
            console.print(
                f"[bold red]error:[/] the hub exited with code {hub.returncode} while starting"
            )
            return 2
        try:
            if httpx.get(f"{hub_url}/health", timeout=1.0).status_code == 200:
                return 0
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            console.print(
                f"[bold red]error:[/] no answer from {hub_url}/health "
                f"after {HUB_START_TIMEOUT_S:.0f} s"
            )
            return 2
        stop.wait(0.2)
    return 0


def _stop_hub(hub: subprocess.Popen[bytes]) -> int | None:
    if hub.poll() is None:
        hub.send_signal(signal.SIGTERM)
        try:
            hub.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            console.print("[yellow]the hub did not stop in time: killed[/]")
            hub.kill()
            hub.wait()
    return hub.returncode


class _SimulatorThread(threading.Thread):
    """The five simulators on one event loop, in a thread of their own.

    Off the main thread uvicorn leaves the signal handlers alone: the main thread owns
    Ctrl-C/SIGTERM and the hub child, and asks this loop to stop. Built from the same parts as
    ``connectors.simulators.serve`` (app, uvicorn server, traffic pump) so that the servers
    can be shut down gracefully (``should_exit``) instead of cancelled mid-request.
    """

    def __init__(
        self, ports: dict[str, int], hub_url: str, *, seed: int, rate: float, duplicates: float
    ) -> None:
        super().__init__(name="simulators", daemon=True)
        self.ports = ports
        self.hub_url = hub_url
        self.seed = seed
        self.rate = rate
        self.duplicates = duplicates
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self.started_all = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # SystemExit from uvicorn when a port is taken
            self.error = self.error or f"{type(exc).__name__}: {exc}"

    async def _main(self) -> None:
        import uvicorn

        from connectors.common.simulator_base import create_sim_app, paced, pump
        from connectors.simulators import spec

        self.loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        servers: list[uvicorn.Server] = []
        serving: list[asyncio.Task[None]] = []
        pumps: list[asyncio.Task[int]] = []
        try:
            apps = {}
            for system, port in self.ports.items():
                db_path = Path("var") / "sim" / f"{system}.sqlite"
                app = create_sim_app(spec(system), db_path, self.seed)
                apps[system] = app
                server = uvicorn.Server(
                    uvicorn.Config(
                        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"
                    )
                )
                servers.append(server)
                serving.append(asyncio.create_task(server.serve(), name=f"sim-{system}"))
            while not all(s.started for s in servers):  # uvicorn offers no started event
                if any(t.done() for t in serving) or self._stopping.is_set():
                    return
                await asyncio.sleep(0.02)
            for system, app in apps.items():
                sim = spec(system)
                records = paced(sim.generate(self.seed, self.duplicates), self.rate)
                pumps.append(
                    asyncio.create_task(
                        pump(
                            sim,
                            app.state.store,
                            records,
                            hub_url=self.hub_url,
                            hub_token=os.environ.get("EAI_HUB_TOKEN") or None,
                        ),
                        name=f"traffic-{system}",
                    )
                )
            self.started_all.set()
            stopping = asyncio.create_task(self._stopping.wait())
            done, _ = await asyncio.wait(
                [stopping, *serving, *pumps], return_when=asyncio.FIRST_COMPLETED
            )
            stopping.cancel()
            for t in done:
                if t is not stopping and not t.cancelled():
                    # Servers and pumps run until stopped: one that ends on its own failed.
                    exc = t.exception()
                    self.error = f"{t.get_name()} ended" + (f": {exc!r}" if exc else "")
        finally:
            for t in pumps:
                t.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for s in servers:
                s.should_exit = True
            _, late = await asyncio.wait(serving, timeout=10) if serving else (set(), set())
            for t in late:
                t.cancel()
            await asyncio.gather(*serving, return_exceptions=True)

    def wait_started(self, stop: threading.Event, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not stop.is_set() and time.monotonic() < deadline:
            if self.started_all.wait(0.1):
                return True
            if not self.is_alive():
                return False
        if not stop.is_set() and self.error is None:
            self.error = f"not listening after {timeout_s:.0f} s"
        return False

    def stop(self, timeout_s: float = 15.0) -> None:
        loop, event = self.loop, self._stopping
        if loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(event.set)
        self.join(timeout_s)


# ------------------------------------------------------------------------------------- import
def file_message_id(system: str, entity: str, sha256: str, row_no: int, piece: int) -> uuid.UUID:
    """The id of one envelope from one file row (a row may split into several envelopes)."""
    return uuid.uuid5(IMPORT_NAMESPACE, f"file/{system}/{entity}/{sha256}/{row_no}/{piece}")


def file_rejection_id(system: str, entity: str, sha256: str, row_no: int) -> uuid.UUID:
    """The id of the dead letter of one refused file row."""
    return uuid.uuid5(IMPORT_NAMESPACE, f"file/{system}/{entity}/{sha256}/{row_no}/rejected")


def file_correlation_id(system: str, entity: str, sha256: str) -> uuid.UUID:
    """One correlation id for every message of one file, for lineage."""
    return uuid.uuid5(IMPORT_NAMESPACE, f"file/{system}/{entity}/{sha256}")


def file_origin(system: str, entity: str, path: Path, sha256: str) -> str:
    """The dead letters' topic: the file by name and content, within the 255-character column.

    The content hash keeps two different exports saved under one name apart; without it a
    rejection in the second would be taken for a repeat of the first one's and not recorded.
    """
    head, tail = f"file:{system}.{entity}:", f"@{sha256[:12]}"
    return head + path.name[: 255 - len(head) - len(tail)] + tail


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@dataclass
class _Pending:
    """Rows read but not yet written: flushed in one transaction every 500 rows."""

    rows: set[int] = field(default_factory=set)
    envelopes: list[Envelope] = field(default_factory=list)
    rejections: list[tuple[int, Rejection]] = field(default_factory=list)


@dataclass
class _Written:
    messages: int = 0
    dead_letters: int = 0
    dead_letters_known: int = 0


def import_command(
    system: str = typer.Argument(..., help=f"one of {', '.join(SYSTEMS)}"),
    entity: str = typer.Argument(..., help="native entity, e.g. customer, material, order"),
    file: Path = typer.Argument(..., help="CSV (UTF-8 or GBK, detected) or XLSX export"),
    sheet: str = typer.Option(None, help="XLSX sheet (default: the first)"),
    encoding: str = typer.Option(None, help="CSV encoding, instead of detecting it"),
    ignore_column: list[str] = typer.Option(
        None, "--ignore-column", help="column title to skip (repeatable)"
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="check every row, write nothing"),
) -> None:
    """Import a CSV/XLSX file: accepted rows to the outbox, rejected rows to the dead letters.

    Exit code 0 if every row was accepted, 1 if some were rejected, 2 if the file cannot be
    read. Importing the same file again has no second effect.
    """
    from connectors.common.fileimport import import_file
    from connectors.registry import CONNECTORS
    from contracts.errors import ContractError
    from hub.settings import Settings

    if system not in CONNECTORS:
        raise _fail(f"no connector {system!r} (known: {', '.join(CONNECTORS)})")
    if not file.is_file():
        raise _fail(f"cannot read {file}: no such file")
    if encoding:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise _fail(f"unknown encoding {encoding!r}") from None
    try:
        sha = _sha256(file)
        run = import_file(
            system,
            entity,
            file,
            progress=True,
            console=console,
            sheet=sheet,
            encoding=encoding,
            ignore_columns=ignore_column or (),
        )
    except OSError as exc:
        raise _fail(f"cannot read {file}: {exc}") from None
    except ContractError as exc:
        raise _fail(str(exc)) from None

    settings = Settings()
    try:
        code, written = asyncio.run(
            _import(run, system, entity, file, sha, None if dry_run else settings.database_url)
        )
    except KeyboardInterrupt:
        console.print(
            "[yellow]interrupted[/]: what was committed stays; importing the file again "
            "completes it without duplicates"
        )
        raise typer.Exit(130) from None
    if code == 2:
        raise typer.Exit(2)
    if dry_run:
        console.print("[yellow]dry run[/]: nothing written")
    else:
        from sqlalchemy.engine import make_url

        url = make_url(settings.database_url).render_as_string(hide_password=True)
        known = (
            f" ({written.dead_letters_known} already recorded by an earlier import)"
            if written.dead_letters_known
            else ""
        )
        console.print(
            f"written to {url}: {written.messages} messages to the outbox, "
            f"{written.dead_letters} dead letters{known}; the hub's outbox relay publishes them"
        )
    raise typer.Exit(code)


async def _import(
    run: Any, system: str, entity: str, path: Path, sha: str, database_url: str | None
) -> tuple[int, _Written]:
    """Drive the file import; write every 500 rows in one transaction (unless a dry run)."""
    from connectors.common.errors import Rejection
    from contracts.errors import ContractError
    from hub.store import db

    written = _Written()
    engine = None
    sessions = None
    origin = file_origin(system, entity, path, sha)
    correlation = file_correlation_id(system, entity, sha)
    try:
        if database_url is not None:
            try:
                engine = db.create_engine(database_url)
                from hub.settings import Settings

                await db.check_reachable(engine, Settings().database_connect_timeout_s)
                await db.migrate(engine)
            except db.StoreUnavailable as exc:
                console.print(f"[bold red]error:[/] {exc}")
                return 2, written
            sessions = db.sessionmaker(engine)
        pending = _Pending()
        pieces: dict[int, int] = {}
        fatal: Rejection | None = None
        for row_no, item in run:
            if fatal is not None:
                continue  # the importer stops right after; let it close its progress bar
            if isinstance(item, Rejection) and (row_no == 0 or item.field == "column"):
                # The file as a whole cannot be read (corrupt workbook, unknown encoding,
                # header naming no field): nothing to import, nothing is written.
                fatal = item
                continue
            if row_no not in pending.rows and len(pending.rows) >= IMPORT_TRANSACTION_ROWS:
                await _flush(sessions, pending, written, system, entity, sha, origin)
                pending = _Pending()
            pending.rows.add(row_no)
            if isinstance(item, Rejection):
                pending.rejections.append((row_no, item))
                continue
            piece = pieces.get(row_no, 0)
            pieces[row_no] = piece + 1
            pending.envelopes.append(
                item.model_copy(
                    update={
                        "message_id": file_message_id(system, entity, sha, row_no, piece),
                        "correlation_id": item.correlation_id or correlation,
                    }
                )
            )
        if fatal is not None:
            why = ContractError(fatal.field, fatal.value, fatal.rule)
            console.print(f"[bold red]error:[/] cannot import {path.name}: {why}")
            return 2, written
        await _flush(sessions, pending, written, system, entity, sha, origin)
    finally:
        if engine is not None:
            await engine.dispose()
    return (1 if run.summary.rejected else 0), written


async def _flush(
    sessions: async_sessionmaker[AsyncSession] | None,
    pending: _Pending,
    written: _Written,
    system: str,
    entity: str,
    sha: str,
    origin: str,
) -> None:
    if sessions is None or not pending.rows:
        return
    from contracts import topics
    from hub.core.dlq import Failure, dead_letter
    from hub.core.inbound import InboundRecord
    from hub.core.outbox import add_rows, envelope_values
    from hub.ingest.store import native_headers

    async with sessions() as s, s.begin():
        await add_rows(
            s, [envelope_values(topics.canonical(e.entity), e) for e in pending.envelopes]
        )
        for row_no, rejection in pending.rejections:
            rec = InboundRecord(
                topic=origin,
                partition=0,
                offset=row_no,
                value=rejection.raw,
                key=None,
                headers=(
                    ("eai.source_system", system.encode()),
                    ("eai.file.sha256", sha.encode()),
                    *native_headers(rejection),  # re-drivable through the mapping
                ),
            )
            new = await dead_letter(
                s,
                IMPORT_FLOW,
                rec,
                Failure("validate", rejection.reason, "Rejection"),
                message_id=str(file_rejection_id(system, entity, sha, row_no)),
                source_system=system,
            )
            if new:
                written.dead_letters += 1
            else:
                written.dead_letters_known += 1
    written.messages += len(pending.envelopes)


# ----------------------------------------------------------------------------------- register
def register(app: typer.Typer) -> None:
    """Add ``simulate``, ``demo`` and ``import`` to the main eai-hub app."""
    app.command("simulate")(simulate)
    app.command("demo")(demo)
    app.command("import")(import_command)


if __name__ == "__main__":  # pragma: no cover - `eai-hub` is the entry point
    _app = typer.Typer(no_args_is_help=True)
    register(_app)
    _app()
