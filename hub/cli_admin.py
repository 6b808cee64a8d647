"""Operator commands: `eai-hub token ...` (on the store), `eai-hub dlq ...` and `eai-hub replay ...`
(through the admin API, EAI_API_URL and EAI_API_TOKEN).

``register(app)`` mounts the three groups on the main Typer app.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console()
err = Console(stderr=True)

token_app = typer.Typer(help="API tokens (on the store directly).", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead letters: list, show, re-drive, discard.", no_args_is_help=True)
replay_app = typer.Typer(help="Replay jobs: create, follow, list, cancel.", no_args_is_help=True)

URL = typer.Option(
    "http://127.0.0.1:8080", "--url", envvar="EAI_API_URL", help="admin API base URL"
)
TOKEN = typer.Option(
    None,
    "--token",
    envvar="EAI_API_TOKEN",
    help="API token (better: the EAI_API_TOKEN environment variable)",
    show_default=False,
)
TERMINAL = ("done", "cancelled", "failed")


def register(app: typer.Typer) -> None:
    app.add_typer(token_app, name="token")
    app.add_typer(dlq_app, name="dlq")
    app.add_typer(replay_app, name="replay")


def _fail(msg: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {msg}")
    raise typer.Exit(code)


# --- tokens (store) --------------------------------------------------------------------------


async def _with_store(fn: Any) -> Any:
    from hub.settings import Settings
    from hub.store import db

    settings = Settings()
    engine = db.create_engine(settings.database_url)
    try:
        await db.check_reachable(engine, settings.database_connect_timeout_s)
        await db.migrate(engine)
        return await fn(db.sessionmaker(engine))
    finally:
        await engine.dispose()


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


async def _audit_cli(session: Any, action: str, params: dict[str, Any]) -> None:
    from datetime import UTC

    from hub.store.admin_models import AuditEntry

    session.add(
        AuditEntry(
            at=datetime.now(UTC),
            actor=_actor(),
            role="admin",
            action=action,
            method="CLI",
            path=f"eai-hub {action.replace('.', ' ')}",
            params=params,
            status=0,
        )
    )


@token_app.command("create")
def token_create(
    role: str = typer.Option(..., "--role", help="viewer | operator | admin"),
    name: str = typer.Option(..., "--name", help="who or what uses it"),
) -> None:
    """Create a token and print it once (only its hash is stored)."""
    from hub.api.auth import Role, create_token

    try:
        r = Role(role)
    except ValueError:
        _fail(f"role must be viewer, operator or admin, not {role!r}", 2)
        return

    async def go(sessions: Any) -> tuple[int, str]:
        async with sessions() as s, s.begin():
            row, token = await create_token(s, name, r, _actor())
            await _audit_cli(s, "tokens.create", {"id": row.id, "name": name, "role": r.value})
            return row.id, token

    token_id, token = asyncio.run(_with_store(go))
    err.print(f"[green]token {token_id}[/] ({r.value}, {name}); shown only now:")
    print(token)


@token_app.command("list")
def token_list(all_: bool = typer.Option(False, "--all", help="include revoked tokens")) -> None:
    """Tokens: id, name, role, hint (never the token), created, last used, revoked."""
    from sqlalchemy import select

    from hub.store.admin_models import ApiToken

    async def go(sessions: Any) -> list[ApiToken]:
        async with sessions() as s:
            q = select(ApiToken).order_by(ApiToken.id)
            if not all_:
                q = q.where(ApiToken.revoked_at.is_(None))
            return list((await s.execute(q)).scalars())

    rows = asyncio.run(_with_store(go))
    table = Table("id", "name", "role", "hint", "created", "last used", "revoked")
    for t in rows:
        table.add_row(
            str(t.id),
            t.name,
            t.role,
            t.hint,
            _when(t.created_at),
            _when(t.last_used_at),
            _when(t.revoked_at),
        )
    console.print(table)


@token_app.command("revoke")
def token_revoke(ident: str = typer.Argument(..., help="token id or name")) -> None:
    """Revoke a token (by id, or every active token of that name)."""
    from hub.api.auth import revoke_tokens

    async def go(sessions: Any) -> list[int]:
        async with sessions() as s, s.begin():
            ids = await revoke_tokens(s, ident)
            if ids:
                await _audit_cli(s, "tokens.revoke", {"ident": ident, "ids": ids})
            return ids

    ids = asyncio.run(_with_store(go))
    if not ids:
        _fail(f"no active token {ident!r}")
    console.print(f"revoked: {', '.join(map(str, ids))} (effective within a few seconds)")


# --- the API client --------------------------------------------------------------------------


def _client(url: str, token: str | None) -> httpx.Client:
    if not token:
        _fail("no API token: set EAI_API_TOKEN (or --token)", 2)
    return httpx.Client(
        base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {token}"}, timeout=30.0
    )


def _call(c: httpx.Client, method: str, path: str, **kw: Any) -> Any:
    try:
        r = c.request(method, path, **kw)
    except httpx.HTTPError as exc:
        _fail(f"{c.base_url} unreachable: {type(exc).__name__}: {exc}")
        raise AssertionError from exc
    if r.status_code >= 400:
        try:
            detail = r.json().get("detail", r.text)
        except ValueError:
            detail = r.text
        _fail(f"{method} {path}: {r.status_code} {json.dumps(detail, ensure_ascii=False)}")
    return r.json()


def _when(t: Any) -> str:
    if not t:
        return ""
    if isinstance(t, str):
        t = datetime.fromisoformat(t)
    return str(t.astimezone().strftime("%Y-%m-%d %H:%M:%S"))


def _short(text: str | None, n: int = 70) -> str:
    text = text or ""
    return text if len(text) <= n else text[: n - 1] + "…"


def _patch(value: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    raw = Path(value[1:]).read_text("utf-8") if value.startswith("@") else value
    try:
        data = json.loads(raw)
    except ValueError as exc:
        _fail(f"--patch is not JSON: {exc}", 2)
    if not isinstance(data, dict):
        _fail("--patch must be a JSON object (an RFC 7386 merge patch)", 2)
    return data  # type: ignore[no-any-return]


# --- dlq -------------------------------------------------------------------------------------


@dlq_app.command("list")
def dlq_list(
    topic: str = typer.Option(None),
    flow: str = typer.Option(None),
    stage: str = typer.Option(None),
    reason: str = typer.Option(None, help="substring of the reason"),
    status: str = typer.Option(None, help="new | redriven | discarded"),
    since: str = typer.Option(None, help="ISO time"),
    until: str = typer.Option(None, help="ISO time"),
    limit: int = typer.Option(50),
    before: int = typer.Option(None, help="page: ids below this one"),
    as_json: bool = typer.Option(False, "--json"),
    url: str = URL,
    token: str = TOKEN,
) -> None:
    """Dead letters, newest first."""
    params = {
        k: v
        for k, v in dict(
            topic=topic,
            flow=flow,
            stage=stage,
            reason=reason,
            status=status,
            since=since,
            until=until,
            limit=limit,
            before=before,
        ).items()
        if v is not None
    }
    with _client(url, token) as c:
        page = _call(c, "GET", "/dead-letters", params=params)
    if as_json:
        console.print_json(data=page)
        return
    table = Table("id", "at", "flow", "stage", "origin", "status", "att.", "reason")
    for d in page["items"]:
        table.add_row(
            str(d["id"]),
            _when(d["first_failure_at"]),
            d["flow"],
            d["stage"],
            f"{d['topic']}/{d['partition']}@{d['offset']}",
            d["status"],
            str(d["attempts"]),
            _short(d["reason"]),
        )
    console.print(table)
    if page.get("next_before"):
        console.print(f"[dim]more: --before {page['next_before']}[/]")


@dlq_app.command("show")
def dlq_show(
    dl_id: int = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json"),
    url: str = URL,
    token: str = TOKEN,
) -> None:
    """One dead letter: error, origin, headers, the original value."""
    with _client(url, token) as c:
        d = _call(c, "GET", f"/dead-letters/{dl_id}")
    if as_json:
        console.print_json(data=d)
        return
    meta = Table.grid(padding=(0, 2))
    for k in ("status", "flow", "stage", "error_class", "reason", "topic", "partition"):
        meta.add_row(k, str(d[k]))
    meta.add_row("offset", str(d["offset"]))
    meta.add_row("key", str(d["key"]))
    meta.add_row("message_id", str(d["message_id"]))
    meta.add_row("attempts", str(d["attempts"]))
    meta.add_row("first / last", f"{_when(d['first_failure_at'])} / {_when(d['last_failure_at'])}")
    console.print(Panel(meta, title=f"dead letter {d['id']}"))
    if d["headers"]:
        h = Table("header", "value")
        for x in d["headers"]:
            h.add_row(
                x["key"], x["value"] if x["value"] is not None else f"b64:{x['value_base64']}"
            )
        console.print(h)
    body = d["value_text"] if d["value_text"] is not None else f"base64: {d['value_base64']}"
    console.print(Panel(body, title=f"value ({d['value_bytes']} bytes)"))
    for r in d["redrives"]:
        console.print(f"re-driven {_when(r['at'])} by {r['actor']} (patch: {bool(r['patch'])})")


def _print_outcomes(result: dict[str, Any]) -> None:
    table = Table("id", "outcome", "valid", "message_id", "reason / validation")
    for o in result["items"]:
        table.add_row(
            str(o["id"]),
            o["outcome"],
            "" if o["valid"] is None else ("yes" if o["valid"] else "no"),
            o["message_id"] or "",
            _short(o["reason"] or o["validation"] or "", 80),
        )
    console.print(table)


@dlq_app.command("redrive")
def dlq_redrive(
    ids: list[int] = typer.Argument(None, help="dead letter ids (or use the filter options)"),
    patch: str = typer.Option(None, help="JSON merge patch, or @file.json"),
    dry_run: bool = typer.Option(False, "--dry-run", help="show what would be sent"),
    force: bool = typer.Option(False, "--force", help="send even if it fails validation"),
    topic: str = typer.Option(None, help="filter: origin topic"),
    flow: str = typer.Option(None, help="filter: flow"),
    stage: str = typer.Option(None, help="filter: stage"),
    reason: str = typer.Option(None, help="filter: reason substring"),
    limit: int = typer.Option(100, help="filter: at most this many"),
    url: str = URL,
    token: str = TOKEN,
) -> None:
    """Re-drive dead letters to their original topic (message_id kept: exactly-once effect)."""
    body: dict[str, Any] = {"dry_run": dry_run, "force": force, "patch": _patch(patch)}
    if ids:
        body["ids"] = ids
    else:
        flt = {
            k: v
            for k, v in dict(topic=topic, flow=flow, stage=stage, reason=reason).items()
            if v is not None
        }
        if not flt:
            _fail("give dead letter ids or at least one filter option", 2)
        body["filter"] = flt
        body["limit"] = limit
    with _client(url, token) as c:
        result = _call(c, "POST", "/dead-letters/redrive", json=body)
    _print_outcomes(result)
    if dry_run:
        for o in result["items"]:
            if o.get("value_text") is not None:
                title = (
                    f"{o['id']} would send"
                    if o["outcome"] == "would_send"
                    else (f"{o['id']} {o['outcome']}: would not send")
                )
                console.print(Panel(o["value_text"], title=title))
    console.print(
        f"sent {result['sent']}, would send {result['would_send']}, "
        f"invalid {result['invalid']}, skipped {result['skipped']}"
    )


@dlq_app.command("discard")
def dlq_discard(
    ids: list[int] = typer.Argument(..., help="dead letter ids"),
    reason: str = typer.Option(None, help="why (kept in the audit log)"),
    url: str = URL,
    token: str = TOKEN,
) -> None:
    """Mark dead letters discarded."""
    with _client(url, token) as c:
        result = _call(c, "POST", "/dead-letters/discard", json={"ids": ids, "reason": reason})
    _print_outcomes(result)
    console.print(f"discarded {result['discarded']}")


# --- replay ----------------------------------------------------------------------------------


def _job_table(jobs: list[dict[str, Any]]) -> Table:
    table = Table("id", "status", "topic", "range", "target", "mode", "read", "matched", "progress")
    for j in jobs:
        start = j["from_time"] or j["from_offset"] or 0
        end = j["to_time"] or j["to_offset"] or "end"
        mode = "dry run" if j["dry_run"] else ("force" if j["force"] else "real")
        target = f"flow {j['target_flow']}" if j["target_flow"] else f"topic {j['target_topic']}"
        c = j["counters"]
        table.add_row(
            str(j["id"]),
            j["status"] + (" (cancelling)" if j["cancel_requested"] else ""),
            j["topic"],
            f"{start} .. {end}",
            target,
            mode,
            str(c.get("read", 0)),
            str(c.get("matched", 0)),
            f"{j['progress'] * 100:.0f}%",
        )
    return table


def _report(job: dict[str, Any]) -> None:
    rep = job.get("report") or {}
    per = rep.get("per_entity")
    if per:
        t = Table("entity", "would create", "would update", "unchanged", "stale")
        for entity, n in sorted(per.items()):
            t.add_row(
                entity,
                str(n["would_create"]),
                str(n["would_update"]),
                str(n["unchanged"]),
                str(n["stale"]),
            )
        console.print(t)
    rest = {k: v for k, v in rep.items() if k != "per_entity"}
    if rest:
        console.print("  ".join(f"{k}: {v}" for k, v in rest.items()))
    c = job["counters"]
    console.print(
        f"read {c.get('read', 0)}, matched {c.get('matched', 0)}, "
        f"from journal {c.get('from_journal', 0)}, journal gaps {c.get('journal_gaps', 0)}"
    )
    if job.get("error"):
        console.print(f"[red]error:[/] {job['error']}")


def _follow(c: httpx.Client, job_id: int, interval: float = 0.5) -> dict[str, Any]:
    columns = (
        TextColumn("replay {task.fields[job]} ({task.fields[status]})", markup=False),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("replay", total=None, job=job_id, status="queued")
        while True:
            job: dict[str, Any] = _call(c, "GET", f"/replays/{job_id}")
            total = job["counters"].get("total") or None
            read = job["counters"].get("read", 0)
            bar.update(task, total=total, completed=read, status=job["status"])
            if job["status"] in TERMINAL:
                if job["status"] == "done" and total:
                    bar.update(task, completed=total)
                break
            time.sleep(interval)
    console.print(f"replay job {job_id}: {job['status']}")
    return job


@replay_app.command("create")
def replay_create(
    topic: str = typer.Option(..., help="topic to replay"),
    partitions: str = typer.Option(None, help="e.g. 0,2 (default: all)"),
    from_offset: int = typer.Option(None, "--from-offset"),
    from_time: datetime = typer.Option(None, "--from-time", help="ISO time"),
    to_offset: int = typer.Option(None, "--to-offset", help="stop before this offset"),
    to_time: datetime = typer.Option(None, "--to-time", help="ISO time"),
    key: str = typer.Option(None, help="exact key or glob (crm:C00*)"),
    source_system: str = typer.Option(None, "--source-system"),
    flow: str = typer.Option(None, "--flow", help="replay into this flow"),
    to_topic: str = typer.Option(None, "--to-topic", help="or re-publish to this topic"),
    dry_run: bool = typer.Option(False, "--dry-run", help="report what would change"),
    force: bool = typer.Option(False, "--force", help="bypass the flow's ledger"),
    rate: float = typer.Option(None, "--rate", help="messages per second"),
    follow: bool = typer.Option(True, "--follow/--no-follow", help="show a progress bar"),
    url: str = URL,
    token: str = TOKEN,
) -> None:
    """Create a replay job (and follow it to the end)."""
    body: dict[str, Any] = {
        "topic": topic,
        "partitions": [int(p) for p in partitions.split(",")] if partitions else None,
        "from_offset": from_offset,
        "from_time": from_time.isoformat() if from_time else None,
        "to_offset": to_offset,
        "to_time": to_time.isoformat() if to_time else None,
        "key": key,
        "source_system": source_system,
        "target_flow": flow,
        "target_topic": to_topic,
        "dry_run": dry_run,
        "force": force,
        "rate_limit": rate,
    }
    body = {k: v for k, v in body.items() if v is not None and v is not False}
    with _client(url, token) as c:
        job = _call(c, "POST", "/replays", json=body)
        console.print(f"replay job {job['id']} queued")
        if not follow:
            return
        job = _follow(c, job["id"])
    _report(job)
    if job["status"] != "done":
        raise typer.Exit(1)


@replay_app.command("list")
def replay_list(
    status: str = typer.Option(None),
    limit: int = typer.Option(50),
    url: str = URL,
    token: str = TOKEN,
) -> None:
    """Replay jobs, newest first."""
    params: dict[str, Any] = {"limit": limit}
    if status:
        params["status"] = status
    with _client(url, token) as c:
        page = _call(c, "GET", "/replays", params=params)
    console.print(_job_table(page["items"]))


@replay_app.command("show")
def replay_show(
    job_id: int = typer.Argument(...),
    follow: bool = typer.Option(False, "--follow", help="progress bar until it ends"),
    url: str = URL,
    token: str = TOKEN,
) -> None:
    """One replay job with its counters and report."""
    with _client(url, token) as c:
        job = _follow(c, job_id) if follow else _call(c, "GET", f"/replays/{job_id}")
    console.print(_job_table([job]))
    _report(job)


@replay_app.command("cancel")
def replay_cancel(job_id: int = typer.Argument(...), url: str = URL, token: str = TOKEN) -> None:
    """Cancel a queued or running job."""
    with _client(url, token) as c:
        job = _call(c, "POST", f"/replays/{job_id}/cancel")
    state = (
        "cancelling" if job["cancel_requested"] and job["status"] == "running" else job["status"]
    )
    console.print(f"replay job {job_id}: {state}")
