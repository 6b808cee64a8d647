"""The eai-hub command line (Typer + Rich)."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from hub.settings import Settings

app = typer.Typer(
    help="eai-hub: enterprise application integration hub on Kafka.", no_args_is_help=True
)
contracts_app = typer.Typer(help="Canonical message contracts.", no_args_is_help=True)
app.add_typer(contracts_app, name="contracts")
console = Console()
log = logging.getLogger("hub.cli")


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # aiosqlite logs SQL parameters (dead-letter contents) at DEBUG.
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)
    # httpx logs every delivery call at INFO (hundreds a second, record ids in the URLs); the
    # deliverer logs failures itself and counts the rest in /deliveries and /metrics.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _fail(msg: str) -> None:
    from rich.markup import escape

    console.print(f"[bold red]error:[/] {escape(msg)}")
    raise typer.Exit(2)


def _check_urge_policy(settings: Settings) -> None:
    """Load and validate the urge policy before anything starts: a wrong file stops the hub
    with exit code 2 and every problem (line, field, value, rule), not a traceback later."""
    from flows.urge.flow import configured_policy
    from flows.urge.policy import DEFAULT_POLICY_PATH, PolicyError

    try:
        configured_policy(settings.urge_policy or DEFAULT_POLICY_PATH)
    except PolicyError as exc:
        _fail(f"EAI_URGE_POLICY: {exc}")


@app.command()
def run(
    workers: int = typer.Option(None, help="worker processes in one consumer group"),
    host: str = typer.Option(None, help="admin API bind address (EAI_HOST)"),
    port: int = typer.Option(None, help="admin API port (EAI_PORT)"),
) -> None:
    """Start the hub: broker (embedded unless EAI_KAFKA_BOOTSTRAP), store, flows, admin API."""
    overrides = {k: v for k, v in {"workers": workers, "host": host, "port": port}.items() if v}
    settings = Settings(**overrides)  # type: ignore[arg-type]
    _logging(settings.log_level)
    _check_urge_policy(settings)
    asyncio.run(_run(settings))


async def _run(settings: Settings) -> None:
    from hub.broker.epoch import BrokerLost
    from hub.broker.kafka import BrokerUnreachable
    from hub.loop_health import settle_heap
    from hub.runtime import BROKER_LOST_GRACE_S, STOP_GRACE_S, Hub, Restarting
    from hub.store.db import StoreUnavailable

    r = Restarting()
    r.install_signals()
    while not r.stopping.is_set():
        try:
            r.hub = hub = Hub(settings, from_beginning=r.restarts > 0)
        except ValueError as exc:  # the identity or sync configuration: the message names it
            _fail(str(exc))
        workers = Workers()
        grace_s = STOP_GRACE_S
        try:
            try:
                await hub.start()
            except (BrokerUnreachable, StoreUnavailable, RuntimeError) as exc:
                _fail(str(exc))
            settle_heap()
            console.print(
                f"[green]eai-hub ready[/]: admin API http://{settings.host}:{settings.port} "
                f"broker {hub.bootstrap}{' (embedded)' if hub.embedded else ''}"
            )
            workers.spawn(hub.bootstrap, settings.workers - 1)
            watch = asyncio.create_task(workers.watch(r.stopping))
            try:
                await hub.wait()
                return
            finally:
                watch.cancel()
        except BrokerLost as exc:
            log.error("%s", exc)
            grace_s = BROKER_LOST_GRACE_S
        finally:
            workers.stop()
            await hub.stop(grace_s)
        if not await r.pause():
            return


class Workers:
    """The N-1 worker processes of `eai-hub run --workers N`: started with the hub's broker
    address, started again when one exits while the hub runs (a worker stops by itself when it
    cannot go on, e.g. its store went away for good), stopped with the hub (and killed by the
    kernel if the hub dies)."""

    STEADY_S = 60.0  # a worker that ran this long starts again at once; sooner: backoff

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.bootstrap = ""
        self.started: list[float] = []
        self.quick_exits: list[int] = []

    def spawn(self, bootstrap: str, n: int) -> None:
        self.bootstrap = bootstrap
        self.procs = [_spawn_worker(bootstrap, i + 2) for i in range(n)]
        self.started = [time.monotonic()] * n
        self.quick_exits = [0] * n

    async def watch(self, stopping: asyncio.Event, interval_s: float = 1.0) -> None:
        from hub.metrics import WORKER_RESPAWNS
        from hub.runtime import restart_delay

        due: dict[int, float] = {}
        while not stopping.is_set():
            await asyncio.sleep(interval_s)
            now = time.monotonic()
            for i, p in enumerate(self.procs):
                code = p.poll()
                if code is None or stopping.is_set():
                    continue
                if i not in due:
                    ran = now - self.started[i]
                    self.quick_exits[i] = 0 if ran >= self.STEADY_S else self.quick_exits[i] + 1
                    delay = restart_delay(self.quick_exits[i]) if self.quick_exits[i] else 0.0
                    log.warning(
                        "worker-%d exited with code %s after %.0f s: starting it again in %.0f s",
                        i + 2,
                        code,
                        ran,
                        delay,
                    )
                    due[i] = now + delay
                if now >= due[i]:
                    del due[i]
                    WORKER_RESPAWNS.inc()
                    self.procs[i] = _spawn_worker(self.bootstrap, i + 2)
                    self.started[i] = now

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def _spawn_worker(bootstrap: str, n: int) -> subprocess.Popen[bytes]:
    from hub.broker.embedded import _die_with_parent

    env = dict(os.environ, EAI_KAFKA_BOOTSTRAP=bootstrap, EAI_WORKER_NAME=f"worker-{n}")
    return subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "worker"], env=env, preexec_fn=_die_with_parent
    )


@app.command()
def worker() -> None:
    """Run flows only (no admin API) in the hub's consumer groups; EAI_KAFKA_BOOTSTRAP required."""
    settings = Settings()
    _logging(settings.log_level)
    if not settings.kafka_bootstrap:
        _fail("a worker joins a running hub: set EAI_KAFKA_BOOTSTRAP")
    _check_urge_policy(settings)
    from hub.runtime import serve

    asyncio.run(serve(settings, serve_api=False))


@contracts_app.command("export")
def contracts_export(
    directory: Path = typer.Argument(..., help="where to write the schemas"),
) -> None:
    """Write one JSON Schema file per canonical model."""
    from contracts.export import export_schemas

    paths = export_schemas(directory)
    for p in paths:
        console.print(str(p))
    console.print(f"[green]{len(paths)} schemas written[/]")


@app.command()
def topics(
    bootstrap: str = typer.Option(None, help="bootstrap servers (default EAI_KAFKA_BOOTSTRAP)"),
) -> None:
    """List topics with their partitions and end offsets."""
    settings = Settings()
    bs = bootstrap or settings.kafka_bootstrap
    if not bs:
        _fail(
            "no broker: pass --bootstrap or set EAI_KAFKA_BOOTSTRAP (the embedded one lives "
            "inside a running hub: GET /topics on its admin API)"
        )
    from hub.broker.kafka import BrokerUnreachable, check_reachable, topic_end_offsets

    async def _list() -> list:  # type: ignore[type-arg]
        await check_reachable(settings, bs)
        return await topic_end_offsets(settings, bs)

    try:
        parts = asyncio.run(_list())
    except BrokerUnreachable as exc:
        _fail(str(exc))
    table = Table("topic", "partition", "end offset")
    for p in parts:
        table.add_row(p.topic, str(p.partition), str(p.end_offset))
    console.print(table)


def _mount_optional() -> None:
    try:
        from flows.identity.cli import dedup_app
    except ImportError:  # pragma: no cover - while the flow is being built
        return
    app.add_typer(dedup_app, name="dedup", help="Deduplicate customers and materials (batch).")


_mount_optional()

from hub.cli_admin import register as _register_admin  # noqa: E402
from hub.cli_connectors import register as _register_connectors  # noqa: E402

_register_connectors(app)
_register_admin(app)


def settings_problems(exc: Exception) -> list[str]:
    """One line per invalid setting, named as the operator set it (EAI_...), with the value
    and the rule; empty when `exc` is not a settings validation error."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError) or exc.title != Settings.__name__:
        return []
    lines = []
    for e in exc.errors():
        name = "EAI_" + "_".join(str(p) for p in e["loc"]).upper()
        lines.append(f"{name}={e.get('input')!r}: {e['msg']}")
    return lines


def main() -> None:
    """The `eai-hub` command: a wrong setting is one line per problem, not a traceback."""
    try:
        app()
    except Exception as exc:
        problems = settings_problems(exc)
        if not problems:
            raise
        from rich.markup import escape

        console.print("[bold red]error:[/] invalid settings (environment or .env):")
        for line in problems:
            console.print(f"  {escape(line)}")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
