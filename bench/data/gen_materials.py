"""Deterministic labelled material (part) records with known true clusters.

A part is designed in PDM and typed again by hand into ERP, DRP and the purchasing sheets: the
description abbreviated or written with another common word (螺钉 / 螺丝), the specification
as M3x8, M3*8, M3×8, Ｍ３×８ or M3X8mm, the unit as 个 / PCS / pc / 只, the category left out,
the code of the other system's own numbering or the PDM number re-typed with other separators
(and sometimes a typo). Hard negatives are the normal case in a parts catalogue: the same
description in the next size (M3x8 / M3x10), the same size in another material or grade.

The generator knows nothing about the matcher; its variant lists are written independently.

    python -m bench.data.gen_materials --records 10000 --out var/m.jsonl --truth var/t.jsonl
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.data.gen_customers import records_per_entity, to_full_width, write_jsonl

# family: (category, uom, name variants (first = PDM wording), spec maker, materials)
Spec = tuple[str, ...]  # the parts of a specification, rendered with a separator


@dataclass(frozen=True)
class Family:
    category: str
    uoms: tuple[str, ...]
    names: tuple[str, ...]
    english: str
    specs: tuple[Spec, ...]
    grades: tuple[str, ...]


def _screws() -> tuple[Spec, ...]:
    return tuple(
        (f"M{d}", str(length))
        for d in (2, 2.5, 3, 4, 5, 6, 8, 10, 12)
        for length in range(4, 61, 2)
    )


FAMILIES: tuple[Family, ...] = (
    Family(
        "紧固件",
        ("个", "PCS", "pc", "只"),
        ("内六角圆柱头螺钉", "内六角螺钉", "内六角圆柱头螺丝", "杯头螺丝"),
        "socket head cap screw",
        _screws(),
        ("不锈钢304", "碳钢镀锌", "12.9级合金钢", "不锈钢316"),
    ),
    Family(
        "紧固件",
        ("个", "PCS", "pc"),
        ("十字盘头螺钉", "十字盘头螺丝", "盘头十字螺钉", "圆头螺丝"),
        "pan head screw",
        _screws(),
        ("不锈钢304", "碳钢镀锌", "碳钢镀镍"),
    ),
    Family(
        "紧固件",
        ("个", "PCS", "只"),
        ("六角螺母", "六角螺帽", "螺母"),
        "hex nut",
        tuple((f"M{d}",) for d in (2, 2.5, 3, 4, 5, 6, 8, 10, 12, 14, 16, 20, 24)),
        ("不锈钢304", "碳钢镀锌", "8级碳钢", "尼龙"),
    ),
    Family(
        "轴承",
        ("套", "PCS", "个"),
        ("深沟球轴承", "深沟轴承", "球轴承"),
        "deep groove ball bearing",
        tuple(
            (c,)
            for c in (
                "6000",
                "6001",
                "6002",
                "6003",
                "6200",
                "6201",
                "6202",
                "6203",
                "6204",
                "6205",
                "6300",
                "6301",
                "6302",
                "608",
                "609",
                "625",
                "626",
            )
        ),
        ("开式", "2RS", "ZZ"),
    ),
    Family(
        "电子元件",
        ("个", "PCS", "颗"),
        ("贴片电阻", "片式电阻", "SMD电阻"),
        "chip resistor",
        tuple(
            (v, p)
            for v in ("0R", "10R", "100R", "1K", "4.7K", "10K", "47K", "100K", "1M")
            for p in ("0402", "0603", "0805", "1206")
        ),
        ("1%", "5%"),
    ),
    Family(
        "密封件",
        ("个", "PCS", "只"),
        ("O型密封圈", "O型圈", "O形密封圈"),
        "O-ring",
        tuple(
            (str(d), str(w))
            for d in (5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50)
            for w in (1, 1.5, 1.9, 2.4, 3.1)
        ),
        ("丁腈橡胶", "氟橡胶", "硅胶"),
    ),
)
UOM_VARIANTS = {
    "个": ("个", "PCS", "pc", "EA"),
    "只": ("只", "个", "PCS"),
    "套": ("套", "SET"),
    "颗": ("颗", "个", "PCS"),
    "PCS": ("PCS", "个", "pcs"),
    "pc": ("pc", "PCS", "个"),
}
SYSTEMS = ("pdm", "erp", "drp", "mes")


@dataclass(frozen=True)
class Part:
    eid: str
    family: Family
    spec: Spec
    grade: str
    uom: str
    pn: str  # PDM part number


def render_spec(rng: random.Random, spec: Spec) -> str:
    if len(spec) == 1:
        return spec[0] if rng.random() < 0.8 else to_full_width(spec[0])
    sep = rng.choice(["x", "X", "*", "×", "x", " x "])
    text = sep.join(spec)
    if spec[0].startswith("M") and rng.random() < 0.2:
        text += "mm"
    if rng.random() < 0.1:
        text = to_full_width(text)
    return text


def render_code(rng: random.Random, pn: str) -> str:
    """The PDM number re-typed: separators, case, now and then one wrong digit."""
    digits = pn.split("-")[1]
    code = rng.choice(
        [pn, pn.replace("-", ""), pn.replace("-", "."), pn.lower(), f"{pn[:1]} {digits}"]
    )
    if rng.random() < 0.05:
        k = rng.randrange(len(code))
        if code[k].isdigit():
            code = code[:k] + str((int(code[k]) + 1) % 10) + code[k + 1 :]
    return code


def render(rng: random.Random, p: Part, system: str, sid: str, first: bool) -> dict[str, Any]:
    f = p.family
    if first:
        name = f"{f.names[0]} {p.grade}"
    elif rng.random() < 0.1:
        name = f"{f.english} {p.grade}"
    else:
        name = rng.choice(f.names)
        name = rng.choice(
            [f"{name} {p.grade}", f"{name}/{p.grade}", f"{p.grade}{name}", f"{name}({p.grade})"]
        )
    if rng.random() < 0.05:
        name = to_full_width(name)
    body: dict[str, Any] = {
        "name": name,
        "specification": render_spec(rng, p.spec),
        "uom": p.uom if first else rng.choice(UOM_VARIANTS.get(p.uom, (p.uom,))),
    }
    if system == "pdm":
        body["code"] = p.pn
    elif rng.random() < 0.5:
        body["code"] = render_code(rng, p.pn)
    else:
        body["code"] = f"{system.upper()}{rng.randrange(10**6):06d}"  # its own numbering
    if first or rng.random() < 0.6:
        body["category"] = f.category
    return body


def generate(n: int, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """About n records of parts; (input rows, truth rows) in input order."""
    rng = random.Random(seed)
    parts: list[Part] = []
    used: set[tuple[int, Spec, str]] = set()
    rows: list[tuple[Part, int]] = []
    catalogue = sum(len(f.specs) * len(f.grades) for f in FAMILIES)
    while len(rows) < n:
        if len(used) >= catalogue:
            # every (family, size, grade) is drawn once: without this the loop never ends
            # (between 4,000 and 5,000 records use up the 2,167 parts; the 10,000-part run that
            # "did not finish" in decision 25 was this loop, not the matcher)
            raise ValueError(f"the catalogue has {catalogue} parts: too few for {n} records")
        fi = rng.randrange(len(FAMILIES))
        f = FAMILIES[fi]
        # siblings: most parts share a family and a grade with many others, a size with some
        spec, grade = rng.choice(f.specs), rng.choice(f.grades)
        if (fi, spec, grade) in used:
            continue
        used.add((fi, spec, grade))
        part = Part(
            f"P{len(parts)}", f, spec, grade, rng.choice(f.uoms), f"P-{rng.randrange(10**7):07d}"
        )
        parts.append(part)
        rows.extend((part, k) for k in range(min(records_per_entity(rng), n - len(rows))))
    rng.shuffle(rows)
    out: list[dict[str, Any]] = []
    truth: list[dict[str, Any]] = []
    first_seen: set[str] = set()
    for i, (part, _k) in enumerate(rows):
        first = part.eid not in first_seen
        first_seen.add(part.eid)
        system = "pdm" if first else rng.choice(SYSTEMS[1:])
        sid = f"{system}-{i:07d}"
        out.append(
            {
                "source_system": system,
                "source_id": sid,
                "record": render(rng, part, system, sid, first),
            }
        )
        truth.append({"source_system": system, "source_id": sid, "cluster_id": part.eid})
    return out, truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--truth", type=Path, required=True)
    args = parser.parse_args()
    rows, truth = generate(args.records, args.seed)
    write_jsonl(args.out, rows)
    write_jsonl(args.truth, truth)


if __name__ == "__main__":
    main()
