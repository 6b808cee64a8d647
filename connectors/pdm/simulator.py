"""PDM simulator: parts, indented design BOMs and ECOs in SQLite tables the hub can poll.

Traffic starts with the product structures being released (every part, then the BOM of each
product), then goes on with engineering changes: an ECO, the new part revision it releases,
and the BOM re-released under the ECO number. With probability ``duplicates`` an engineer
creates a standard part again under a new drawing number (the PDM's own re-entry problem).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from connectors.common import fakedata as fd
from connectors.common.parse import format_datetime, format_quantity
from connectors.common.simulator_base import SimEntity, SimulatorSpec, create_sim_app, paced
from connectors.pdm.native import PdmBom, PdmEco, PdmPart

SYSTEM = "pdm"
UNITS = {"PCE": "件", "SET": "套", "MTR": "米"}
CATEGORY = {"FG": "05", "SF": "04", "RM-MT": "03", "RM-PL": "02", "RM-EL": "03"}
DESIGNERS = ("周工", "吴工", "郑工", "孙工")
DT = "%Y-%m-%d %H:%M:%S"
CHANGES = ("尺寸调整", "材料变更", "供应商切换", "公差优化")


def _next_rev(rev: str) -> str:
    return chr(ord(rev) + 1) if rev < "Z" else "Z"


def _part(p: fd.Part, rev: str, rng: random.Random, when: datetime) -> dict[str, Any]:
    rec = {
        "part_no": p.drawing_no,
        "revision": rev,
        "part_name": p.name,
        "spec": p.spec,
        "unit": UNITS[p.unit],
        "category": "01" if p.name == "自攻螺丝" else CATEGORY[p.category],
        "state": "RL",
        "designer": rng.choice(DESIGNERS),
        "created_at": format_datetime(when, DT),
    }
    if p.category.startswith("RM"):
        rec["weight"] = format_quantity(Decimal(rng.randrange(1, 5000)) / 10)
    return rec


def _bom(
    w: fd.World, top: str, revs: dict[str, str], when: datetime, eco: str | None
) -> dict[str, Any]:
    items = []
    counters: dict[int, int] = {}
    for level, part, qty in w.tree(top):
        # Find numbers restart under every parent: 10, 20, 30 ...
        counters = {k: v for k, v in counters.items() if k <= level}
        counters[level] = counters.get(level, 0) + 10
        items.append(
            {
                "level": str(level),
                "find_no": str(counters[level]),
                "part_no": part.drawing_no,
                "revision": revs[part.drawing_no],
                "qty": format_quantity(qty),
                "unit": UNITS[part.unit],
            }
        )
    rec: dict[str, Any] = {
        "top_part_no": top,
        "top_revision": revs[top],
        "bom_state": "RL",
        "released_at": format_datetime(when, DT),
        "items": items,
    }
    if eco:
        rec["eco_no"] = eco
    return rec


def generate(seed: int, duplicates: float = 0.2) -> Iterator[tuple[str, dict[str, Any]]]:
    """Endless PDM traffic for a seed: (native entity, native record)."""
    w = fd.world(seed)
    rng = random.Random(f"{SYSTEM}:{seed}")
    clock = fd.clock(rng)
    revs = {no: p.revision for no, p in w.parts.items()}
    done: set[str] = set()
    for top in w.products:
        # Leaves before the assemblies that use them, as engineers release bottom-up.
        for _, part, _ in reversed(w.tree(top)):
            if part.drawing_no in done:
                continue
            done.add(part.drawing_no)
            yield "part", _part(part, revs[part.drawing_no], rng, clock.tick(5))
        yield "part", _part(w.parts[top], revs[top], rng, clock.tick(5))
        yield "bom", _bom(w, top, revs, clock.tick(10), None)
    n_eco = n_dup = 0
    while True:
        when = clock.tick(60)
        if rng.random() < duplicates * 0.3:
            n_dup += 1
            screw = next(p for p in w.leaves() if p.name == "自攻螺丝")
            rec = _part(screw, "A", rng, when)
            rec["part_no"] = f"GB845-ST2.2x6-{n_dup:02d}"
            rec["part_name"] = rng.choice(("十字盘头自攻螺钉", "自攻螺丝", "自攻螺钉"))
            yield "part", rec
            continue
        n_eco += 1
        eco_no = f"ECO-2026-{n_eco:04d}"
        top = rng.choice(w.products)
        part = rng.choice([p for _, p, _ in w.tree(top)])
        old = revs[part.drawing_no]
        new = _next_rev(old)
        need = when + timedelta(days=rng.randrange(2, 15))
        yield (
            "eco",
            {
                "eco_no": eco_no,
                "title": f"{part.name}{rng.choice(CHANGES)}",
                "reason": rng.choice(("01", "02", "03", "04")),
                "urgency": rng.choice(("H", "M", "M", "L")),
                "initiator": rng.choice(DESIGNERS),
                "dept": "研发部",
                "approver": rng.choice(("研发经理", "技术副总")),
                "submit_time": format_datetime(when, DT),
                "need_date": format_datetime(need, "%Y-%m-%d"),
                "state": "02",
                "items": [
                    {
                        "part_no": part.drawing_no,
                        "action": "M",
                        "from_rev": old,
                        "to_rev": new,
                        "description": "按ECO更新图纸",
                    }
                ],
            },
        )
        # The ECO is approved a while later: the new revision and the BOM are released.
        revs[part.drawing_no] = new
        yield "part", _part(part, new, rng, clock.tick(90))
        yield "bom", _bom(w, top, revs, clock.tick(10), eco_no)


async def traffic(
    seed: int = 0, rate: float = 1.0, duplicates: float = 0.2
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    async for item in paced(generate(seed, duplicates), rate):
        yield item


SPEC = SimulatorSpec(
    system=SYSTEM,
    title="PDM",
    entities=(
        SimEntity("part", "/api/parts", "pdm_part", "part_no", "P{n:06d}", PdmPart),
        SimEntity("bom", "/api/boms", "pdm_bom", "top_part_no", "B{n:06d}", PdmBom),
        SimEntity("eco", "/api/ecos", "pdm_eco", "eco_no", "ECO-{n:06d}", PdmEco),
    ),
    generate=generate,
    pushable=frozenset({"part", "bom", "eco"}),
)


def create_app(db_path: str | Path, seed: int = 0) -> FastAPI:
    return create_sim_app(SPEC, db_path, seed)
