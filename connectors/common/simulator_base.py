"""What every system simulator shares: a SQLite store, a native REST API, idempotency keys,
counters for the tests, run-time failure injection and a traffic pump.

The simulators stand in for real products in the demo and in end-to-end and chaos tests, so
they must be honest witnesses: every write they receive is logged and counted, a repeated
idempotency key is answered 409 and counted but never stored again, and the ``double`` fault
stores a record twice exactly as a buggy target would, so tests can prove the hub notices.

Routes (per entity, ``{path}`` from the system's spec, e.g. ``/api/customers``)::

    POST {path}              create; 201 {"local_id", "record"}; 409 on a known key/id
    PUT  {path}/{local_id}   update; 200; 404 if unknown (replaces the record, or applies
                             a change to it where the entity has apply_update)
    GET  {path}?since=&limit=  changes after a change counter, oldest first
    GET  {path}/{local_id}
    GET  /_sim/stats         counters; POST /_sim/faults {"mode": ...}; GET /_sim/faults
    POST /_sim/reset         forget counters (records stay)

``/_sim`` routes are never faulted, so a test can always switch a fault off again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from connectors.common.errors import from_pydantic
from connectors.common.parse import CN_TZ

log = logging.getLogger(__name__)

FAULT_MODES = ("none", "down", "slow", "error5xx", "double")
# Ids the API hands out start far above the ones the traffic generator invents, so a record
# the hub creates never takes the number of one a simulated clerk will type later.
API_ID_START = 500_000


@dataclass(frozen=True)
class SimEntity:
    name: str  # native entity name, as in the connector binding
    path: str  # REST collection, e.g. /api/customers
    table: str  # SQLite table
    id_field: str | tuple[str, ...]  # native field(s) carrying the local id
    id_format: str  # e.g. "KH{n:06d}"
    native: type[BaseModel]
    # False where the key field means something else when absent (a decision names its form
    # by flow_id or by ext_ref): the system numbers the row but leaves the record alone.
    writes_id: bool = True
    # How an update through the API (PUT) applies to the stored record; None: it replaces it.
    # An ERP BOM update is a change (merge items by position, delete flagged ones).
    apply_update: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]] | None = None

    def natural_key(self, payload: dict[str, Any]) -> str | None:
        fields = (self.id_field,) if isinstance(self.id_field, str) else self.id_field
        values = [payload.get(f) for f in fields]
        if any(v is None or v == "" for v in values):
            return None
        return "/".join(str(v) for v in values)

    def with_id(self, payload: dict[str, Any], local_id: str) -> dict[str, Any]:
        """The record carrying the id the system gave it (composite keys are already there)."""
        if isinstance(self.id_field, str) and self.writes_id:
            return {**payload, self.id_field: local_id}
        return payload


@dataclass(frozen=True)
class SimulatorSpec:
    system: str
    title: str
    entities: tuple[SimEntity, ...]
    generate: Callable[[int, float], Iterator[tuple[str, dict[str, Any]]]]
    # Native entities the hub accepts on its webhook; traffic for others stays in the system.
    pushable: frozenset[str] = frozenset()
    extra_routes: Callable[[FastAPI, SimStore], None] | None = None
    # Users reacting to what the hub delivered (OA approvers deciding forms that came in):
    # called between generated records, returns more (entity, record) to store and push.
    react: (
        Callable[[SimStore, random.Random, datetime], list[tuple[str, dict[str, Any]]]] | None
    ) = None

    def entity(self, name: str) -> SimEntity:
        for e in self.entities:
            if e.name == name:
                return e
        raise KeyError(f"{self.system} simulator has no entity {name!r}")


def _now_text() -> str:
    # Second resolution, like ERP change stamps: several rows share one value, which is the
    # case watermark polling has to survive.
    return datetime.now(CN_TZ).strftime("%Y-%m-%d %H:%M:%S")


def _hash(data: Any) -> str:
    text = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class WriteResult:
    status: int
    local_id: str | None = None
    record: dict[str, Any] | None = None
    error: str | None = None
    extra_ids: list[str] = field(default_factory=list)

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"local_id": self.local_id}
        if self.record is not None:
            body["record"] = self.record
        if self.error:
            body["error"] = self.error
        return JSONResponse(body, status_code=self.status)


class SimStore:
    """The system's own database. Plain sqlite3: one connection, used from the event loop."""

    def __init__(self, db_path: str | Path, spec: SimulatorSpec) -> None:
        self.spec = spec
        self.db_path = str(db_path)
        if self.db_path != ":memory:":
            Path(self.db_path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        # WAL lets the hub's poller read while the simulator writes.
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self._schema()

    def _schema(self) -> None:
        for e in self.spec.entities:
            self.db.execute(
                f"""CREATE TABLE IF NOT EXISTS "{e.table}" (
                    local_id TEXT PRIMARY KEY,
                    payload TEXT NOT NULL,
                    payload_hash TEXT NOT NULL,
                    idempotency_key TEXT,
                    origin TEXT NOT NULL,
                    created_at TEXT NOT NULL,
                    changed_at TEXT NOT NULL,
                    change_seq INTEGER NOT NULL UNIQUE,
                    version INTEGER NOT NULL DEFAULT 1)"""
            )
            self.db.execute(
                f'CREATE INDEX IF NOT EXISTS "ix_{e.table}_changed" ON "{e.table}"(changed_at)'
            )
        self.db.executescript(
            """
            CREATE TABLE IF NOT EXISTS sim_idempotency (
                key TEXT PRIMARY KEY, entity TEXT NOT NULL, request_hash TEXT NOT NULL,
                local_id TEXT, status INTEGER NOT NULL, hits INTEGER NOT NULL DEFAULT 1,
                first_seen TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS sim_counters (
                name TEXT NOT NULL, entity TEXT NOT NULL, n INTEGER NOT NULL,
                PRIMARY KEY (name, entity));
            CREATE TABLE IF NOT EXISTS sim_sequences (name TEXT PRIMARY KEY, n INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS sim_received (
                seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, method TEXT NOT NULL,
                entity TEXT NOT NULL, local_id TEXT, idempotency_key TEXT, status INTEGER NOT NULL,
                note TEXT);
            """
        )

    def close(self) -> None:
        self.db.close()

    # ----------------------------------------------------------------- counters
    def count(self, name: str, entity: str, n: int = 1) -> None:
        self.db.execute(
            "INSERT INTO sim_counters(name, entity, n) VALUES (?, ?, ?) "
            "ON CONFLICT(name, entity) DO UPDATE SET n = n + excluded.n",
            (name, entity, n),
        )

    def _next(self, name: str, start: int = 1) -> int:
        row = self.db.execute(
            "INSERT INTO sim_sequences(name, n) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET n = n + 1 RETURNING n",
            (name, start),
        ).fetchone()
        return int(row[0])

    def _new_id(self, e: SimEntity) -> str:
        while True:
            local_id = e.id_format.format(n=self._next(f"id:{e.name}", API_ID_START))
            if self.get(e, local_id) is None:
                return local_id

    # ----------------------------------------------------------------- records
    def get(self, e: SimEntity, local_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute(
            f'SELECT * FROM "{e.table}" WHERE local_id = ?', (local_id,)
        ).fetchone()
        return row

    def changes(self, e: SimEntity, since: int, limit: int) -> list[sqlite3.Row]:
        return list(
            self.db.execute(
                f'SELECT * FROM "{e.table}" WHERE change_seq > ? ORDER BY change_seq LIMIT ?',
                (since, limit),
            )
        )

    def _content_hash(self, e: SimEntity, payload: dict[str, Any]) -> str:
        skip = {e.id_field} if isinstance(e.id_field, str) else set()
        return _hash({k: v for k, v in payload.items() if k not in skip})

    def _insert(
        self, e: SimEntity, local_id: str, payload: dict[str, Any], key: str | None, origin: str
    ) -> None:
        now = _now_text()
        self.db.execute(
            f'INSERT INTO "{e.table}" (local_id, payload, payload_hash, idempotency_key, origin, '
            "created_at, changed_at, change_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                local_id,
                json.dumps(payload, ensure_ascii=False),
                self._content_hash(e, payload),
                key,
                origin,
                now,
                now,
                self._next("change_seq"),
            ),
        )

    def write(
        self,
        e: SimEntity,
        data: dict[str, Any],
        *,
        local_id: str | None = None,
        key: str | None = None,
        origin: str = "api",
        double: bool = False,
        upsert: bool = False,
    ) -> WriteResult:
        """Create or update one record in one transaction, with idempotency bookkeeping."""
        method = "PUT" if local_id else "POST"
        request_hash = _hash({"m": method, "id": local_id, "d": data})
        self.db.execute("BEGIN IMMEDIATE")
        try:
            result = self._write(e, data, local_id, key, origin, double, upsert, request_hash)
            self.db.execute(
                "INSERT INTO sim_received(at, method, entity, local_id, idempotency_key, status, "
                "note) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (_now_text(), method, e.name, result.local_id, key, result.status, result.error),
            )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return result

    def _write(
        self,
        e: SimEntity,
        data: dict[str, Any],
        local_id: str | None,
        key: str | None,
        origin: str,
        double: bool,
        upsert: bool,
        request_hash: str,
    ) -> WriteResult:
        self.count("received", e.name)
        if key:
            seen = self.db.execute(
                "SELECT request_hash, local_id FROM sim_idempotency WHERE key = ?", (key,)
            ).fetchone()
            if seen is not None:
                self.db.execute("UPDATE sim_idempotency SET hits = hits + 1 WHERE key = ?", (key,))
                if seen["request_hash"] == request_hash:
                    self.count("idempotency_collisions", e.name)
                    return WriteResult(409, seen["local_id"], error="duplicate idempotency key")
                self.count("idempotency_mismatches", e.name)
                return WriteResult(
                    422, seen["local_id"], error="idempotency key reused with a different payload"
                )
        payload = dict(data)
        natural = e.natural_key(payload)
        if local_id is None and natural and not upsert:
            existing = self.get(e, str(natural))
            if existing is not None:
                # The record already exists under this number: a real system answers
                # "编号已存在". Counted, because a hub that re-creates is misbehaving.
                self.count("duplicates_received", e.name)
                return WriteResult(409, existing["local_id"], error=f"{e.name} {natural} exists")
        target = local_id or (str(natural) if upsert and natural else None)
        status = 201
        if target is not None and (row := self.get(e, target)) is not None:
            if local_id is not None and e.apply_update is not None:
                payload = e.apply_update(json.loads(row["payload"]), payload)
            payload = e.with_id(payload, target)
            self.db.execute(
                f'UPDATE "{e.table}" SET payload = ?, payload_hash = ?, changed_at = ?, '
                "change_seq = ?, version = version + 1 WHERE local_id = ?",
                (
                    json.dumps(payload, ensure_ascii=False),
                    self._content_hash(e, payload),
                    _now_text(),
                    self._next("change_seq"),
                    target,
                ),
            )
            self.count("updated", e.name)
            new_id = target
            status = 200
        elif local_id is not None:
            return WriteResult(404, local_id, error=f"no {e.name} {local_id}")
        else:
            new_id = str(natural) if natural else self._new_id(e)
            payload = e.with_id(payload, new_id)
            same = self.db.execute(
                f'SELECT COUNT(*) FROM "{e.table}" WHERE payload_hash = ? AND origin = ?',
                (self._content_hash(e, payload), origin),
            ).fetchone()[0]
            if same:
                self.count("duplicates_received", e.name)
            self._insert(e, new_id, payload, key, origin)
            self.count("created", e.name)
        result = WriteResult(status, new_id, payload)
        if double and status == 201:
            twin = self._new_id(e)
            self._insert(e, twin, e.with_id(payload, twin), key, origin)
            self.count("double_stored", e.name)
            result.extra_ids.append(twin)
        if key:
            self.db.execute(
                "INSERT INTO sim_idempotency(key, entity, request_hash, local_id, status, "
                "first_seen) VALUES (?, ?, ?, ?, ?, ?)",
                (key, e.name, request_hash, new_id, status, _now_text()),
            )
        return result

    # ----------------------------------------------------------------- stats
    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"system": self.spec.system}
        for row in self.db.execute("SELECT name, entity, n FROM sim_counters ORDER BY name"):
            out.setdefault(row["name"], {})[row["entity"]] = row["n"]
        records: dict[str, int] = {}
        dup_records: dict[str, int] = {}
        for e in self.spec.entities:
            records[e.name] = self.db.execute(f'SELECT COUNT(*) FROM "{e.table}"').fetchone()[0]
            # Rows written through the API whose content another API row already has: the
            # duplicated effects a chaos run must show as zero.
            dup_records[e.name] = self.db.execute(
                f'SELECT COALESCE(SUM(c - 1), 0) FROM (SELECT COUNT(*) AS c FROM "{e.table}" '
                "WHERE origin = 'api' GROUP BY payload_hash HAVING c > 1)"
            ).fetchone()[0]
        out["records"] = records
        out["duplicate_records"] = dup_records
        for name in (
            "received",
            "created",
            "updated",
            "duplicates_received",
            "idempotency_collisions",
            "idempotency_mismatches",
            "double_stored",
            "faults",
        ):
            out.setdefault(name, {})
        return out

    def reset_counters(self) -> None:
        self.db.execute("DELETE FROM sim_counters")


@dataclass
class FaultState:
    """Failure injection, switched at run time through POST /_sim/faults."""

    mode: str = "none"
    delay_s: float = 2.0
    remaining: int | None = None  # affect this many requests, then heal
    probability: float = 1.0
    after_commit: bool = False  # error5xx: store first, then fail (the lost-answer case)
    entities: frozenset[str] | None = None
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def describe(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "delay_s": self.delay_s,
            "remaining": self.remaining,
            "probability": self.probability,
            "after_commit": self.after_commit,
            "entities": sorted(self.entities) if self.entities else None,
        }

    def take(self, entity: str | None, *, write: bool) -> str | None:
        if self.mode == "none":
            return None
        if self.entities and entity not in self.entities:
            return None
        if self.mode == "double" and not write:
            return None
        if self.probability < 1.0 and self.rng.random() >= self.probability:
            return None
        mode = self.mode
        if self.remaining is not None:
            self.remaining -= 1
            if self.remaining <= 0:
                self.mode, self.remaining = "none", None
        return mode


class FaultRequest(BaseModel):
    mode: str
    delay_s: float = 2.0
    count: int | None = None
    probability: float = 1.0
    after_commit: bool = False
    entities: list[str] | None = None
    seed: int = 0


def _error(status: int, field_name: str, value: Any, rule: str) -> JSONResponse:
    return JSONResponse(
        {"error": rule, "field": field_name, "value": value, "rule": rule}, status_code=status
    )


def create_sim_app(spec: SimulatorSpec, db_path: str | Path, seed: int = 0) -> FastAPI:
    """The simulator as a FastAPI app over its own SQLite file."""
    store = SimStore(db_path, spec)
    faults = FaultState(rng=random.Random(seed))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        store.close()

    app = FastAPI(title=f"{spec.title} simulator", lifespan=lifespan)
    app.state.store = store
    app.state.faults = faults
    app.state.spec = spec

    async def injected(entity: str | None, *, write: bool) -> tuple[Response | None, str | None]:
        mode = faults.take(entity, write=write)
        if mode is None:
            return None, None
        store.count("faults", mode)
        if mode == "down":
            return JSONResponse({"error": "service unavailable (simulated)"}, status_code=503), mode
        if mode == "slow":
            await asyncio.sleep(faults.delay_s)
            return None, mode
        if mode == "error5xx" and not (write and faults.after_commit):
            return JSONResponse({"error": "internal error (simulated)"}, status_code=500), mode
        return None, mode

    async def read_json(request: Request) -> tuple[dict[str, Any] | None, Response | None]:
        raw = await request.body()
        charset = "utf-8"
        ctype = request.headers.get("content-type", "")
        if "charset=" in ctype:
            charset = ctype.split("charset=", 1)[1].split(";")[0].strip() or "utf-8"
        try:
            data = json.loads(raw.decode(charset))
        except (UnicodeDecodeError, LookupError, json.JSONDecodeError) as exc:
            return None, _error(400, "body", raw[:80].decode("utf-8", "replace"), str(exc))
        if not isinstance(data, dict):
            return None, _error(400, "body", type(data).__name__, "must be a JSON object")
        return data, None

    def register(e: SimEntity) -> None:
        async def write(request: Request, local_id: str | None = None) -> Response:
            # The body is read before any fault: a slow system has received the request and
            # finishes it even when the caller gave up waiting (the lost-answer case).
            data, bad = await read_json(request)
            fault_response, mode = await injected(e.name, write=True)
            if fault_response is not None:
                return fault_response
            if bad is not None or data is None:
                return bad or _error(400, "body", None, "empty")
            try:
                e.native.model_validate(data)
            except ValidationError as exc:
                err = from_pydantic(exc)
                return _error(422, err.field, str(err.value), err.rule)
            result = store.write(
                e,
                data,
                local_id=local_id,
                key=request.headers.get("idempotency-key"),
                double=mode == "double",
            )
            if mode == "error5xx" and result.status < 300:
                return JSONResponse({"error": "internal error after commit (simulated)"}, 500)
            return result.response()

        async def create(request: Request) -> Response:
            return await write(request)

        async def update(request: Request, local_id: str) -> Response:
            return await write(request, local_id)

        async def listing(since: int = 0, limit: int = 100) -> Response:
            fault_response, _ = await injected(e.name, write=False)
            if fault_response is not None:
                return fault_response
            rows = store.changes(e, since, min(max(limit, 1), 1000))
            items = [
                {
                    "local_id": r["local_id"],
                    "change_seq": r["change_seq"],
                    "changed_at": r["changed_at"],
                    "record": json.loads(r["payload"]),
                }
                for r in rows
            ]
            return JSONResponse({"items": items, "next": rows[-1]["change_seq"] if rows else since})

        async def one(local_id: str) -> Response:
            fault_response, _ = await injected(e.name, write=False)
            if fault_response is not None:
                return fault_response
            row = store.get(e, local_id)
            if row is None:
                return _error(404, "local_id", local_id, f"no such {e.name}")
            return JSONResponse({"local_id": local_id, "record": json.loads(row["payload"])})

        app.add_api_route(e.path, create, methods=["POST"], name=f"create_{e.name}")
        app.add_api_route(
            e.path + "/{local_id:path}", update, methods=["PUT"], name=f"update_{e.name}"
        )
        app.add_api_route(e.path, listing, methods=["GET"], name=f"list_{e.name}")
        app.add_api_route(e.path + "/{local_id:path}", one, methods=["GET"], name=f"get_{e.name}")

    for e in spec.entities:
        register(e)

    @app.get("/_sim/stats")
    async def stats() -> dict[str, Any]:
        return store.stats()

    @app.get("/_sim/faults")
    async def get_faults() -> dict[str, Any]:
        return faults.describe()

    @app.post("/_sim/faults")
    async def set_faults(req: FaultRequest) -> Response:
        if req.mode not in FAULT_MODES:
            return _error(422, "mode", req.mode, f"must be one of {', '.join(FAULT_MODES)}")
        faults.mode = req.mode
        faults.delay_s = req.delay_s
        faults.remaining = req.count
        faults.probability = req.probability
        faults.after_commit = req.after_commit
        faults.entities = frozenset(req.entities) if req.entities else None
        faults.rng = random.Random(req.seed)
        return JSONResponse(faults.describe())

    @app.post("/_sim/reset")
    async def reset() -> dict[str, str]:
        store.reset_counters()
        faults.mode, faults.remaining = "none", None
        return {"status": "reset"}

    @app.get("/_sim/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "system": spec.system}

    if spec.extra_routes is not None:
        spec.extra_routes(app, store)
    return app


# --------------------------------------------------------------------- traffic
async def paced(
    records: Iterator[tuple[str, dict[str, Any]]], rate: float
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Yield records at ``rate`` per second (0 or less: as fast as the consumer takes them)."""
    interval = 1.0 / rate if rate > 0 else 0.0
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    for item in records:
        if interval:
            next_at += interval
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        else:
            await asyncio.sleep(0)
        yield item


async def push(
    client: Any,
    hub_url: str,
    system: str,
    entity: str,
    record: dict[str, Any],
    *,
    attempts: int = 5,
) -> bool:
    """POST one native record to the hub webhook; back off while the hub is starting."""
    import httpx

    url = f"{hub_url.rstrip('/')}/connectors/{system}/{entity}"
    delay = 0.2
    for _ in range(attempts):
        try:
            r = await client.post(url, json=record)
            if r.status_code < 500:
                if r.status_code >= 400:
                    log.warning(
                        "hub refused %s.%s: %s %s", system, entity, r.status_code, r.text[:200]
                    )
                return bool(r.status_code < 400)
        except httpx.TransportError as exc:
            log.debug("hub unreachable (%s), retrying", exc)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)
    return False


async def pump(
    spec: SimulatorSpec,
    store: SimStore,
    records: AsyncIterator[tuple[str, dict[str, Any]]],
    *,
    hub_url: str | None,
    hub_token: str | None = None,
    push_entities: frozenset[str] | None = None,
    limit: int | None = None,
) -> int:
    """Store generated records as the system's users would, and push them to the hub."""
    import httpx

    headers = {"Authorization": f"Bearer {hub_token}"} if hub_token else {}
    pushable = spec.pushable if push_entities is None else push_entities
    rng = random.Random(f"react:{spec.system}")
    n = 0
    async with httpx.AsyncClient(timeout=10.0, headers=headers) as client:

        async def one(entity: str, record: dict[str, Any]) -> None:
            e = spec.entity(entity)
            result = store.write(e, record, origin="user", upsert=True)
            stored = result.record or record
            if hub_url and entity in pushable:
                ok = await push(client, hub_url, spec.system, entity, stored)
                store.count("pushed" if ok else "push_failed", entity)

        async for entity, record in records:
            await one(entity, record)
            if spec.react is not None:
                for more in spec.react(store, rng, datetime.now(CN_TZ)):
                    await one(*more)
            n += 1
            if limit is not None and n >= limit:
                break
    return n


async def serve_simulator(
    spec: SimulatorSpec,
    *,
    port: int,
    host: str = "127.0.0.1",
    db_path: str | Path | None = None,
    hub_url: str | None = None,
    seed: int = 0,
    rate: float = 1.0,
    duplicates: float = 0.2,
    hub_token: str | None = None,
    push_entities: frozenset[str] | None = None,
    started: asyncio.Event | None = None,
) -> None:
    """Serve the simulator until cancelled; generate traffic at ``rate`` when rate > 0."""
    import uvicorn

    path = db_path or Path("var") / "sim" / f"{spec.system}.sqlite"
    app = create_sim_app(spec, path, seed)
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    )
    serve = asyncio.create_task(server.serve())
    while not server.started and not serve.done():  # noqa: ASYNC110 - uvicorn offers no event
        await asyncio.sleep(0.02)
    if started is not None:
        started.set()
    traffic_task: asyncio.Task[int] | None = None
    if rate > 0:
        traffic_task = asyncio.create_task(
            pump(
                spec,
                app.state.store,
                paced(spec.generate(seed, duplicates), rate),
                hub_url=hub_url,
                hub_token=hub_token,
                push_entities=push_entities,
            )
        )
    try:
        await serve
    finally:
        if traffic_task is not None:
            traffic_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await traffic_task
        server.should_exit = True
