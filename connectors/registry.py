"""System name -> Connector, the one place the hub looks a system up.

``CONNECTORS`` uses each system's default value maps. A site with its own code lists builds
its registry with :func:`build_connectors` and a path per system, or points the environment
variable ``EAI_HUB_VALUEMAPS_DIR`` at a folder holding ``<system>.yaml`` overrides.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from connectors import crm, drp, erp, oa, pdm
from connectors.common.base import Connector

BUILDERS = {
    "crm": crm.build,
    "erp": erp.build,
    "pdm": pdm.build,
    "oa": oa.build,
    "drp": drp.build,
}


def _env_overrides() -> dict[str, Path]:
    folder = os.environ.get("EAI_HUB_VALUEMAPS_DIR")
    if not folder:
        return {}
    return {
        s: Path(folder) / f"{s}.yaml" for s in BUILDERS if (Path(folder) / f"{s}.yaml").exists()
    }


def build_connectors(
    valuemap_overrides: Mapping[str, str | Path] | None = None,
) -> dict[str, Connector]:
    """Every connector, with the operator's value-map file for the systems that have one."""
    overrides: dict[str, str | Path] = {**_env_overrides(), **(valuemap_overrides or {})}
    unknown = set(overrides) - set(BUILDERS)
    if unknown:
        raise ValueError(f"value-map overrides for unknown systems: {', '.join(sorted(unknown))}")
    return {system: build(overrides.get(system)) for system, build in BUILDERS.items()}


CONNECTORS: dict[str, Connector] = build_connectors()


def connector(system: str) -> Connector:
    try:
        return CONNECTORS[system]
    except KeyError:
        raise KeyError(f"no connector {system!r} (known: {', '.join(CONNECTORS)})") from None
