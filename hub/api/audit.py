"""The audit log: every mutating call of the admin API, who made it, with which parameters.

A mutating endpoint takes ``audit: Audit = Depends(audited("dead_letters.redrive"))``. The
dependency authenticates (401 is not audited: there is nobody to name, and anonymous calls must
not be able to fill the table), refuses a lower role with 403 (audited: a known principal tried
something it may not do), and hands the endpoint an ``Audit``. The endpoint records it inside
its own transaction with ``audit.add(session)``, so the effect and its audit row commit
together. If the endpoint fails before that, the dependency records the failure (status and
reason) in a transaction of its own.

Parameters are the path and query parameters plus the JSON body, with anything that looks like
a secret replaced by "***" and capped at ``MAX_PARAMS_CHARS``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.api.auth import Principal, Role, authenticate, bearer, forbidden, require
from hub.api.params import INT64_MAX
from hub.store.admin_models import AuditEntry

log = logging.getLogger(__name__)

MAX_PARAMS_CHARS = 16_000
SECRET_KEY = re.compile(r"token|secret|password|passwd|authorization|api[-_]?key|credential", re.I)


def aware(t: datetime) -> datetime:
    """Query datetimes without an offset are taken as UTC."""
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def redact(value: Any) -> Any:
    """A copy of ``value`` with the values of secret-looking keys replaced."""
    if isinstance(value, dict):
        return {str(k): "***" if SECRET_KEY.search(str(k)) else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def bounded(params: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(params, ensure_ascii=False, default=str)
    if len(text) <= MAX_PARAMS_CHARS:
        return dict(json.loads(text))
    return {"truncated": True, "chars": len(text), "head": text[:2000]}


@dataclass
class Audit:
    principal: Principal
    action: str
    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    status: int = 200
    recorded: bool = False

    def entry(self, status: int, detail: str | None = None) -> AuditEntry:
        return AuditEntry(
            at=datetime.now(UTC),
            actor=self.principal.name,
            role=self.principal.role.value,
            action=self.action,
            method=self.method,
            path=self.path[:512],
            params=bounded(redact(self.params)),
            status=status,
            detail=detail[:2000] if detail else None,
        )

    def add(
        self, session: AsyncSession, status: int | None = None, detail: str | None = None
    ) -> None:
        """Record this call in the caller's transaction (commit it with the effect)."""
        session.add(self.entry(status if status is not None else self.status, detail))
        self.recorded = True


async def _write(request: Request, audit: Audit, status: int, detail: str | None) -> None:
    try:
        async with request.app.state.hub.sessions() as s, s.begin():
            s.add(audit.entry(status, detail))
        audit.recorded = True
    except Exception as exc:  # the store is down: the call failed anyway; say so loudly
        log.error("audit row for %s by %s not written: %r", audit.action, audit.principal.name, exc)


async def _params(request: Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.path_params)
    params.update({k: v for k, v in request.query_params.multi_items()})
    body = await request.body()  # already read and cached by FastAPI
    if body:
        try:
            data = json.loads(body)
        except ValueError:
            data = f"<{len(body)} bytes, not JSON>"
        if isinstance(data, dict):
            params.update(data)
        else:
            params["body"] = data
    return params


def audited(
    action: str,
    role: Role = Role.operator,
    params: Callable[[Request], Awaitable[dict[str, Any]]] = _params,
) -> Callable[..., AsyncIterator[Audit]]:
    """Dependency for a mutating endpoint needing ``role``; see the module docstring.
    ``params`` says what of the request is recorded (default: path, query and JSON body)."""

    async def dep(
        request: Request, creds: HTTPAuthorizationCredentials | None = Depends(bearer)
    ) -> AsyncIterator[Audit]:
        principal = await authenticate(request, creds)
        audit = Audit(principal, action, request.method, request.url.path, await params(request))
        if not principal.role.allows(role):
            exc = forbidden(principal, role)
            await _write(request, audit, 403, str(exc.detail))
            raise exc
        try:
            yield audit
        except HTTPException as exc:
            if not audit.recorded:
                await _write(request, audit, exc.status_code, str(exc.detail))
            raise
        except RequestValidationError as exc:
            if not audit.recorded:
                await _write(request, audit, 422, str(exc.errors())[:500])
            raise
        except Exception as exc:
            if not audit.recorded:
                await _write(request, audit, 500, type(exc).__name__)
            raise
        if not audit.recorded:
            await _write(request, audit, audit.status, None)

    dep.__name__ = f"audited_{action.replace('.', '_')}"
    return dep


# --- GET /audit ------------------------------------------------------------------------------


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    role: str
    action: str
    method: str
    path: str
    params: dict[str, Any]
    status: int
    detail: str | None


class AuditPage(BaseModel):
    items: list[AuditOut]
    next_before: int | None


router = APIRouter(tags=["admin"])


@router.get("/audit", response_model=AuditPage)
async def list_audit(
    request: Request,
    actor: str | None = Query(None, max_length=128),
    action: str | None = Query(None, max_length=64),
    since: datetime | None = None,
    until: datetime | None = None,
    before: int | None = Query(None, ge=1, le=INT64_MAX, description="cursor: ids below this one"),
    limit: int = Query(100, ge=1, le=500),
    _p: Principal = Depends(require(Role.admin)),
) -> AuditPage:
    """The audit log, newest first; page with ``before`` = the previous page's next_before."""
    q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if actor:
        q = q.where(AuditEntry.actor == actor)
    if action:
        q = q.where(AuditEntry.action == action)
    if since:
        q = q.where(AuditEntry.at >= aware(since))
    if until:
        q = q.where(AuditEntry.at < aware(until))
    if before:
        q = q.where(AuditEntry.id < before)
    async with request.app.state.hub.sessions() as s:
        rows = list((await s.execute(q)).scalars())
    items = [
        AuditOut(
            id=r.id,
            at=r.at,
            actor=r.actor,
            role=r.role,
            action=r.action,
            method=r.method,
            path=r.path,
            params=r.params,
            status=r.status,
            detail=r.detail,
        )
        for r in rows
    ]
    return AuditPage(items=items, next_before=rows[-1].id if len(rows) == limit else None)
