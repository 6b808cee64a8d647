"""POST /connectors/{system}/{entity}: one native record or a JSON array of them."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.requests import ClientDisconnect

from connectors.registry import CONNECTORS
from hub.api.audit import Audit, audited
from hub.api.auth import Role, require
from hub.ingest import idempotency as idem
from hub.ingest.store import write

router = APIRouter(tags=["connectors"])
log = logging.getLogger(__name__)

RETRY_AFTER_S = 2


async def _body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit``: from its
    Content-Length, or while it streams in (chunked), never read whole first."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body of {declared} bytes exceeds EAI_MAX_WEBHOOK_BYTES={limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(
                413, f"body of more than {limit} bytes exceeds EAI_MAX_WEBHOOK_BYTES={limit}"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _charset(content_type: str | None) -> str | None:
    for part in (content_type or "").split(";"):
        k, _, v = part.strip().partition("=")
        if k.lower() == "charset" and v:
            return v.strip('"')
    return None


async def _audit_params(request: Request) -> dict[str, Any]:
    """What the audit log keeps of a webhook call: who sent what kind of request, never the
    records (personal data; their lineage and dead letters say what arrived). The body is
    not read here: the handler reads it under the size limit."""
    return {
        **request.path_params,
        "idempotency_key": request.headers.get("idempotency-key"),
        "content_type": request.headers.get("content-type"),
        "content_length": request.headers.get("content-length"),
    }


@router.post(
    "/connectors/{system}/{entity}",
    status_code=202,
    responses={503: {"description": "the store is busy or away: nothing accepted, retry"}},
)
async def receive(
    system: str,
    entity: str,
    request: Request,
    idempotency_key: str | None = Header(None, max_length=200),
    content_type: str | None = Header(None),
    # systems pushing records hold operator tokens: a webhook call writes to the hub
    audit: Audit = Depends(audited("connectors.receive", Role.operator, _audit_params)),
) -> JSONResponse:
    """Accept native records. 202 when at least one record was accepted, 422 when none was;
    every rejected record is in the dead-letter topic with the field, value and rule.
    With an Idempotency-Key header a retry of the request (same system, key, entity and
    body) within the retention gets the first answer again and publishes nothing; the same
    key with another request is refused with 422 (hub.ingest.idempotency)."""
    hub = request.app.state.hub
    conn = CONNECTORS.get(system)
    if conn is None:
        raise HTTPException(404, f"no connector {system!r} (known: {', '.join(CONNECTORS)})")
    try:
        raw = await _body(request, hub.settings.max_webhook_bytes)
    except ClientDisconnect:
        # The caller gave up (its timeout) before sending the whole body: nothing was read,
        # nothing accepted; its retry, with the same Idempotency-Key, is the one that counts.
        log.info("webhook %s.%s: the client disconnected before its body arrived", system, entity)
        audit.status = 400
        return JSONResponse({"detail": "client disconnected before the body arrived"}, 400)
    charset = _charset(content_type)
    results = conn.decode(entity, raw, charset=charset, source="webhook")
    id_parts = ("webhook", system, entity, idempotency_key) if idempotency_key else None
    request_hash = idem.fingerprint(entity, charset, raw) if idempotency_key else ""
    retention_s = hub.settings.webhook_idempotency_retention_s
    replay: idem.Answer | None = None
    for last_try in (False, True):
        try:
            async with hub.sessions() as s, s.begin():
                now = datetime.now(UTC)
                if idempotency_key:
                    replay = await idem.answered(
                        s, system, idempotency_key, request_hash, now, retention_s
                    )
                if replay is not None:
                    audit.add(s, replay.status, f"replayed the answer of {replay.created_at}")
                    break
                out = await write(
                    s,
                    results,
                    origin=f"webhook:{system}.{entity}",
                    flow="ingest",
                    id_parts=id_parts,
                    charset=charset,
                )
                status = 202 if out.message_ids or not out.rejected else 422
                body: dict[str, Any] = {
                    "accepted": len(out.message_ids),
                    "rejected": out.rejected,
                    "message_ids": out.message_ids,
                }
                if idempotency_key:
                    idem.remember(
                        s, system, entity, idempotency_key, request_hash, status, body, now
                    )
                audit.add(
                    s, status, f"accepted {len(out.message_ids)}, rejected {len(out.rejected)}"
                )
            break
        except idem.KeyReused as exc:
            raise HTTPException(422, str(exc)) from None
        except IntegrityError:
            # Another call with this key committed first (see hub.ingest.idempotency): all
            # of this one is rolled back; its answer is read on the second pass.
            if last_try or not idempotency_key:
                raise
            audit.recorded = False
        except OperationalError as exc:
            # The store is busy or away (SQLite's one writer held past its busy timeout, a
            # PostgreSQL restart): nothing was written, so the caller may send it again.
            log.warning("webhook %s.%s: store unavailable: %s", system, entity, exc.orig)
            # Not audited: the row would wait for the same busy store a second time and
            # delay the 503 that tells the system to back off; the WARNING above records
            # the refusal.
            audit.recorded = True
            return JSONResponse(
                {
                    "detail": "the hub's store is busy or unavailable "
                    f"({type(exc.orig).__name__}); nothing was accepted, retry later"
                },
                status_code=503,
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
    if replay is not None:
        return JSONResponse(replay.body, status_code=replay.status, headers={idem.REPLAYED: "true"})
    hub.relay.wake()
    return JSONResponse(body, status_code=status)


@router.get("/connectors", dependencies=[Depends(require(Role.viewer))])
async def status(request: Request) -> list[dict[str, Any]]:
    """Each connector: entities in and out, and per entity the last message seen and the
    counts accepted, rejected, delivered and failed (this process)."""
    return [
        {
            "system": name,
            "title": c.title,
            "inbound": c.inbound_entities,
            "outbound": [e.value for e in c.outbound_entities],
            "status": c.status.snapshot(),
        }
        for name, c in CONNECTORS.items()
    ]
