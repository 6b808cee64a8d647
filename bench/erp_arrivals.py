"""The ERP simulator in a process of its own, timestamping every customer it receives.

``python -m bench.erp_arrivals PORT DB``: the simulator's app behind an ASGI wrapper that
notes the ``time.monotonic()`` of each customer's first POST/PUT (by ``NAME1``).
``GET /_bench/count`` answers how many arrived, ``GET /_bench/arrivals`` all of them.

Why a process of its own: in the same process the simulator's request handling and SQLite
writes share the hub's core and event loop, so the benchmark measured both together.
``time.monotonic()`` is CLOCK_MONOTONIC, one clock for every process of the machine, so the
bench compares these times with its own.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import uvicorn


class Arrivals:
    """ASGI wrapper: the monotonic time each customer name reaches the ERP simulator."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.at: dict[str, float] = {}

    async def _answer(self, send: Any, doc: Any) -> None:
        body = json.dumps(doc).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/_bench/count":
            await self._answer(send, {"count": len(self.at)})
            return
        if scope["type"] == "http" and scope["path"] == "/_bench/arrivals":
            await self._answer(send, self.at)
            return
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            msg = await receive()
            chunks.append(msg.get("body", b""))
            more = msg.get("more_body", False)
        now = time.monotonic()
        body = b"".join(chunks)
        if scope["path"].startswith("/api/customers"):
            with contextlib.suppress(ValueError, KeyError, TypeError):
                self.at.setdefault(json.loads(body)["NAME1"], now)
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return dict(await receive())
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def serve() -> None:
    # not main(): `python -m bench` runs every module's main() as a benchmark
    from connectors.erp.simulator import create_app

    port, db = int(sys.argv[1]), Path(sys.argv[2])
    sim = create_app(db)
    # The simulator writes in autocommit (several commits per request), and SQLite's default
    # synchronous=FULL fsyncs each: ~100 requests/s on this machine, which capped the whole
    # benchmark at the simulator's disk. NORMAL in WAL mode syncs at checkpoints only and
    # still loses nothing when a process dies (only on power loss): the ERP is not measured.
    sim.state.store.db.execute("PRAGMA synchronous=NORMAL")
    app = Arrivals(sim)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    serve()
