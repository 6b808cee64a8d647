"""Bearer tokens of the admin API: roles viewer < operator < admin.

A token is ``eai_`` + ``secrets.token_urlsafe(32)`` (256 random bits). The store keeps only its
SHA-256: a leaked database does not leak usable tokens, and a fast hash is enough because the
token is random, not a password. A token is never logged, never echoed in an error body, and
shown exactly once: when it is created.

``require(role)`` is the FastAPI dependency: 401 (with ``WWW-Authenticate: Bearer``) without a
token or with an unknown or revoked one, 403 when the token's role is below the one needed.
Lookups are cached per process for a few seconds (``CACHE_TTL_S``); a revocation through the API
clears the cache at once, one through the CLI of another process takes effect within the TTL.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub.api.params import PathId
from hub.store.admin_models import ApiToken

if TYPE_CHECKING:
    from hub.api.audit import Audit

log = logging.getLogger(__name__)

PREFIX = "eai_"
CACHE_TTL_S = 5.0
LAST_USED_EVERY = timedelta(seconds=60)
MAX_TOKEN_CHARS = 256
BOOTSTRAP_NAME = "bootstrap-admin"
CONFIGURED_NAME = "admin (EAI_ADMIN_TOKEN)"


class Role(StrEnum):
    viewer = "viewer"
    operator = "operator"
    admin = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


_RANK = {Role.viewer: 1, Role.operator: 2, Role.admin: 3}


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    token_id: int | None = None


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def hint_of(token: str) -> str:
    """Four characters of the secret part: enough to tell tokens apart, useless to guess."""
    keep = len(PREFIX) + 4 if token.startswith(PREFIX) else 4
    return token[:keep] + "…"


async def create_token(
    session: AsyncSession, name: str, role: Role | str, created_by: str
) -> tuple[ApiToken, str]:
    """Insert a new token in the caller's transaction; returns the row and the plaintext."""
    token = new_token()
    row = ApiToken(
        name=name,
        role=Role(role).value,
        token_hash=hash_token(token),
        hint=hint_of(token),
        created_at=datetime.now(UTC),
        created_by=created_by,
    )
    session.add(row)
    await session.flush()
    return row, token


async def revoke_tokens(session: AsyncSession, ident: str) -> list[int]:
    """Revoke active tokens by id or by name; returns the ids revoked."""
    q = select(ApiToken.id).where(ApiToken.revoked_at.is_(None))
    q = q.where(ApiToken.id == int(ident)) if ident.isdigit() else q.where(ApiToken.name == ident)
    ids = list((await session.execute(q)).scalars())
    if ids:
        await session.execute(
            update(ApiToken).where(ApiToken.id.in_(ids)).values(revoked_at=datetime.now(UTC))
        )
    return ids


async def ensure_admin_token(
    sessions: async_sessionmaker[AsyncSession], configured: str | None
) -> str | None:
    """First start: make sure an admin can get in.

    With ``configured`` (EAI_ADMIN_TOKEN) its hash is stored as an admin token if it is not
    there yet; nothing is printed. Without it, if no active admin token exists, one is created
    and returned (the caller prints it once); otherwise None.
    """
    async with sessions() as s, s.begin():
        if s.get_bind().dialect.name == "postgresql":
            from sqlalchemy import text

            # Two hub processes starting at once must not both mint a bootstrap token.
            await s.execute(text("SELECT pg_advisory_xact_lock(724003)"))
        if configured:
            digest = hash_token(configured)
            row = await s.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
            # A changed EAI_ADMIN_TOKEN replaces the one set before: rotating the setting must
            # not leave the old value working (each `eai-hub demo` start sets a new one too).
            replaced = await s.scalars(
                update(ApiToken)
                .where(
                    ApiToken.name == CONFIGURED_NAME,
                    ApiToken.created_by == "settings",
                    ApiToken.token_hash != digest,
                    ApiToken.revoked_at.is_(None),
                )
                .values(revoked_at=datetime.now(UTC))
                .returning(ApiToken.id)
            )
            if replaced.all():
                log.warning("EAI_ADMIN_TOKEN changed: the previous value no longer works")
            if row is None:
                s.add(
                    ApiToken(
                        name=CONFIGURED_NAME,
                        role=Role.admin.value,
                        token_hash=digest,
                        hint=hint_of(configured),
                        created_at=datetime.now(UTC),
                        created_by="settings",
                    )
                )
            elif row.revoked_at is not None:
                log.warning(
                    "EAI_ADMIN_TOKEN was revoked (token id %s): it stays revoked; "
                    "set a new one or create a token with `eai-hub token create`",
                    row.id,
                )
            return None
        active_admin = await s.scalar(
            select(ApiToken.id)
            .where(ApiToken.role == Role.admin.value, ApiToken.revoked_at.is_(None))
            .limit(1)
        )
        if active_admin is not None:
            return None
        _, token = await create_token(s, BOOTSTRAP_NAME, Role.admin, "first start")
        return token


def print_bootstrap_token(token: str) -> None:
    """Shown once, on the terminal: not through logging, so it never lands in a log pipeline."""
    bar = "=" * 72
    sys.stderr.write(
        f"\n{bar}\n"
        "eai-hub: no admin token existed, so one was created. It is shown only now:\n\n"
        f"    {token}\n\n"
        "Use it as 'Authorization: Bearer <token>' (EAI_API_TOKEN for the CLI). Create\n"
        "tokens for people and tools with `eai-hub token create`, then revoke this one.\n"
        f"{bar}\n\n"
    )
    sys.stderr.flush()


# --- the request side ------------------------------------------------------------------------

bearer = HTTPBearer(
    auto_error=False,
    description="An eai-hub API token: `eai-hub token create --role viewer|operator|admin`.",
)


class Authenticator:
    """Per-app token lookup with a short cache (hash -> principal)."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[Principal | None, float]] = {}

    def clear(self) -> None:
        self._cache.clear()

    async def lookup(
        self, sessions: async_sessionmaker[AsyncSession], token: str
    ) -> Principal | None:
        digest = hash_token(token)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        principal: Principal | None = None
        async with sessions() as s:
            row = await s.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
            if row is not None and row.revoked_at is None:
                principal = Principal(row.name, Role(row.role), row.id)
                stamp = datetime.now(UTC)
                if row.last_used_at is None or stamp - row.last_used_at > LAST_USED_EVERY:
                    await s.execute(
                        update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=stamp)
                    )
                    await s.commit()
        if len(self._cache) > 10_000:  # unknown tokens must not grow it without bound
            self._cache.clear()
        self._cache[digest] = (principal, now + CACHE_TTL_S)
        return principal


def authenticator(request: Request) -> Authenticator:
    state = request.app.state
    auth = getattr(state, "eai_auth", None)
    if auth is None:
        auth = state.eai_auth = Authenticator()
    return auth


def unauthorized(detail: str = "a valid bearer token is required") -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


async def authenticate(request: Request, creds: HTTPAuthorizationCredentials | None) -> Principal:
    """The principal of the request's bearer token; 401 otherwise. Never echoes the token."""
    if creds is None or not creds.credentials:
        raise unauthorized()
    token = creds.credentials.strip()
    if len(token) > MAX_TOKEN_CHARS:
        raise unauthorized("invalid bearer token")
    hub = request.app.state.hub
    principal = await authenticator(request).lookup(hub.sessions, token)
    if principal is None:
        raise unauthorized("invalid bearer token")
    request.state.principal = principal
    return principal


def forbidden(principal: Principal, needed: Role) -> HTTPException:
    return HTTPException(
        403, f"role {needed.value} required; token {principal.name!r} has {principal.role.value}"
    )


_REQUIRE: dict[Role, Callable[..., Awaitable[Principal]]] = {}


def require(role: Role | str) -> Callable[..., Awaitable[Principal]]:
    """FastAPI dependency: the caller's Principal if its role is at least ``role``."""
    needed = Role(role)
    dep = _REQUIRE.get(needed)
    if dep is None:

        async def dep(
            request: Request, creds: HTTPAuthorizationCredentials | None = Depends(bearer)
        ) -> Principal:
            principal = await authenticate(request, creds)
            if not principal.role.allows(needed):
                raise forbidden(principal, needed)
            return principal

        dep.__name__ = f"require_{needed.value}"
        _REQUIRE[needed] = dep
    return dep


# --- token administration over the API (admin only) -----------------------------------------


class TokenOut(BaseModel):
    id: int
    name: str
    role: Role
    hint: str
    created_at: datetime
    created_by: str
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: ApiToken) -> TokenOut:
        return cls(
            id=row.id,
            name=row.name,
            role=Role(row.role),
            hint=row.hint,
            created_at=row.created_at,
            created_by=row.created_by,
            last_used_at=row.last_used_at,
            revoked_at=row.revoked_at,
        )


class TokenCreate(BaseModel):
    model_config = {"extra": "forbid"}
    name: str = Field(min_length=1, max_length=128, pattern=r"^[\w .@:/-]+$")
    role: Role


class TokenCreated(TokenOut):
    token: str = Field(description="the token itself: shown this once, never again")


def _routes() -> APIRouter:
    from hub.api.audit import audited

    router = APIRouter(prefix="/tokens", tags=["admin"])

    @router.get("", response_model=list[TokenOut])
    async def list_tokens(
        request: Request,
        include_revoked: bool = False,
        _p: Principal = Depends(require(Role.admin)),
    ) -> list[TokenOut]:
        """API tokens (never the tokens themselves: a hint of their first characters)."""
        q = select(ApiToken).order_by(ApiToken.id)
        if not include_revoked:
            q = q.where(ApiToken.revoked_at.is_(None))
        async with request.app.state.hub.sessions() as s:
            return [TokenOut.of(r) for r in (await s.execute(q)).scalars()]

    @router.post("", response_model=TokenCreated, status_code=201)
    async def create(
        request: Request,
        body: TokenCreate,
        audit: Audit = Depends(audited("tokens.create", Role.admin)),
    ) -> TokenCreated:
        """Create a token; the response holds it once. Audited (without the token)."""
        async with request.app.state.hub.sessions() as s, s.begin():
            row, token = await create_token(s, body.name, body.role, audit.principal.name)
            audit.params["id"] = row.id
            audit.add(s, 201)
        return TokenCreated(**TokenOut.of(row).model_dump(), token=token)

    @router.delete("/{token_id}", response_model=TokenOut)
    async def revoke(
        request: Request,
        token_id: PathId,
        audit: Audit = Depends(audited("tokens.revoke", Role.admin)),
    ) -> TokenOut:
        """Revoke a token: it answers 401 from now on."""
        async with request.app.state.hub.sessions() as s, s.begin():
            row = await s.get(ApiToken, token_id)
            if row is None:
                raise HTTPException(404, f"no token {token_id}")
            if row.revoked_at is None:
                row.revoked_at = datetime.now(UTC)
            audit.add(s)
        authenticator(request).clear()
        return TokenOut.of(row)

    return router


def router() -> APIRouter:
    return _routes()
