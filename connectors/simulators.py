"""Run a system simulator: ``eai-hub simulate <system>`` and ``make demo`` call in here.

Each simulator serves its native API on a port, keeps its own SQLite database (default
``var/sim/<system>.sqlite``), and, when ``rate`` > 0, plays its users: records are written to
its database (where the ERP and PDM pollers find them) and, when ``hub_url`` is given, pushed
to ``POST {hub_url}/connectors/<system>/<entity>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from connectors.common.simulator_base import SimulatorSpec, serve_simulator

SYSTEMS = ("crm", "erp", "pdm", "oa", "drp")


def simulator_module(system: str) -> ModuleType:
    if system not in SYSTEMS:
        raise KeyError(f"no simulator {system!r} (known: {', '.join(SYSTEMS)})")
    return importlib.import_module(f"connectors.{system}.simulator")


def spec(system: str) -> SimulatorSpec:
    result: SimulatorSpec = simulator_module(system).SPEC
    return result


def traffic(
    system: str, seed: int = 0, rate: float = 1.0, duplicates: float = 0.2
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """The system's deterministic traffic: (native entity, native record) at ``rate``/s."""
    result: AsyncIterator[tuple[str, dict[str, Any]]] = simulator_module(system).traffic(
        seed, rate, duplicates
    )
    return result


async def serve(
    system: str,
    *,
    port: int,
    hub_url: str | None = None,
    seed: int = 0,
    rate: float = 1.0,
    duplicates: float = 0.2,
    host: str = "127.0.0.1",
    db_path: str | Path | None = None,
    hub_token: str | None = None,
    push_entities: Iterable[str] | None = None,
    started: asyncio.Event | None = None,
) -> None:
    """Serve one simulator until cancelled (embed several in one event loop for a demo)."""
    await serve_simulator(
        spec(system),
        port=port,
        host=host,
        db_path=db_path,
        hub_url=hub_url,
        seed=seed,
        rate=rate,
        duplicates=duplicates,
        hub_token=hub_token,
        push_entities=frozenset(push_entities) if push_entities is not None else None,
        started=started,
    )


def run_simulator(
    system: str,
    port: int,
    hub_url: str | None = None,
    seed: int = 0,
    rate: float = 1.0,
    duplicates: float = 0.2,
    **options: Any,
) -> None:
    """Blocking entry point for the CLI: serve until Ctrl+C."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve(
                system,
                port=port,
                hub_url=hub_url,
                seed=seed,
                rate=rate,
                duplicates=duplicates,
                **options,
            )
        )
