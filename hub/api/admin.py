"""Wiring of the admin API's security and operator features into an app and a hub.

``install(app)`` adds the routers (tokens, audit, dead letters, replay), each with a request
body limit (1 MiB, or ``settings.api_max_body_bytes``); ``bootstrap_admin(hub)`` makes sure an
admin token exists on first start; ``start_replay_runner(hub)`` starts the runner of replay
jobs. ``install`` and ``bootstrap_admin`` are idempotent.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

if TYPE_CHECKING:
    from hub.replay import ReplayRunner
    from hub.runtime import Hub

DEFAULT_MAX_BODY = 1_048_576


def install(app: FastAPI, *, max_body_bytes: int | None = None) -> FastAPI:
    if getattr(app.state, "eai_admin_installed", False):
        return app
    app.state.eai_admin_installed = True
    from hub.api import audit, auth, deadletters, replay

    hub = getattr(app.state, "hub", None)
    limit: int = max_body_bytes or int(
        getattr(getattr(hub, "settings", None), "api_max_body_bytes", None) or DEFAULT_MAX_BODY
    )
    # FastAPI's own per-router body limit: 413 before the body is parsed.
    for router in (auth.router(), audit.router, deadletters.router, replay.router):
        app.include_router(router, max_body_size=limit)
    return app


def _configured_token(hub: Hub) -> str | None:
    value: Any = getattr(hub.settings, "admin_token", None)
    if value is None:
        return None
    text = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
    return text or None


async def bootstrap_admin(hub: Hub) -> None:
    """First start: store EAI_ADMIN_TOKEN's hash, or mint an admin token and print it once."""
    from hub.api.auth import ensure_admin_token, print_bootstrap_token

    assert hub.sessions is not None
    token = await ensure_admin_token(hub.sessions, _configured_token(hub))
    if token is not None:
        print_bootstrap_token(token)


def start_replay_runner(hub: Hub, **kw: Any) -> tuple[ReplayRunner, asyncio.Task[None]]:
    from hub.replay import ReplayRunner

    runner = ReplayRunner(hub, **kw)
    task = asyncio.create_task(runner.run(), name="replay-runner")
    return runner, task
