"""OA simulator: workflow forms, decisions and a reminders inbox over SQLite.

Generated traffic: complaints, expenses and renewals with amounts across the authority bands
(below 1,000 CNY the sales manager approves, 1,000-5,000 the vice GM, above 5,000 the GM),
customer status upgrades for CRM customers, contracts (some above the customer's credit line),
decisions on earlier forms after a while, and reminders people send by hand, numbered and
chained (第2次催办 refers to the first). Forms the hub delivers (an ERP requisition, a PDM
ECO) are decided by the simulated approvers too (``react``), so a demo closes the loop.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from connectors.common import fakedata as fd
from connectors.common.parse import format_amount, format_datetime
from connectors.common.simulator_base import (
    SimEntity,
    SimStore,
    SimulatorSpec,
    create_sim_app,
    paced,
)
from connectors.oa.native import (
    OaApproval,
    OaContract,
    OaDecision,
    OaReminder,
    OaStatusUpgrade,
)

SYSTEM = "oa"
DT = "%Y-%m-%d %H:%M"
# Authority by amount, from the company's complaint-handling policy.
BANDS = (
    (Decimal(0), Decimal(999), "销售部经理", "副总经理"),
    (Decimal(1000), Decimal(5000), "副总经理", "总经理"),
    (Decimal(5001), Decimal(200000), "总经理", "董事长"),
)
FLOWS = (("CP", "客诉处理"), ("EX", "费用报销"), ("MR", "维保续约"), ("GN", "通用审批"))
SUBJECTS = ("退货", "维修", "差旅", "续约")
APPLICANTS = (("王芳", "销售部"), ("陈志强", "客服部"), ("赵敏", "财务部"), ("李娜", "市场部"))


def _dt(value: datetime) -> str:
    return format_datetime(value, DT)


def _band(rng: random.Random) -> tuple[Decimal, str, str]:
    low, high, approver, superior = rng.choice(BANDS)
    amount = Decimal(rng.randrange(int(low) * 100, int(high) * 100 + 1)) / 100
    return amount, approver, superior


def _chain(approver: str) -> str:
    ladder = ["销售部经理", "副总经理", "总经理"]
    return ">".join(ladder[: ladder.index(approver) + 1]) if approver in ladder else approver


def _base(
    rng: random.Random, flow_id: str, when: datetime, days: int, approver: str, superior: str
) -> dict[str, Any]:
    applicant, dept = rng.choice(APPLICANTS)
    return {
        "flow_id": flow_id,
        "applicant": applicant,
        "applicant_dept": dept,
        "approver": approver,
        "approver_dept": "总经办" if "总" in approver else "销售部",
        "approver_chain": _chain(approver),
        "superior": superior,
        "submit_time": _dt(when),
        "deadline": _dt(when + timedelta(days=days)),
        "relation": rng.choice(("1", "2", "2", "3")),
        "status": "1",
    }


def generate(seed: int, duplicates: float = 0.2) -> Iterator[tuple[str, dict[str, Any]]]:
    """Endless OA traffic for a seed: (native entity, native record)."""
    w = fd.world(seed)
    rng = random.Random(f"{SYSTEM}:{seed}")
    clock = fd.clock(rng)
    pending: list[dict[str, Any]] = []
    reminders: dict[str, tuple[str, int]] = {}  # flow_id -> (last remind_id, seq)
    n = 0
    while True:
        when = clock.tick(30)
        n += 1
        roll = rng.random()
        day = f"{when:%Y%m%d}"
        if roll < 0.3 or not pending:
            code, label = rng.choice(FLOWS)
            amount, approver, superior = _band(rng)
            form = {
                **_base(rng, f"SP{day}{n:04d}", when, 6 if code == "CP" else 3, approver, superior),
                "flow_type": code,
                "title": f"{label}：{rng.choice(w.companies).core}{rng.choice(SUBJECTS)}",
                "amount": format_amount(amount),
                "currency": "CNY",
            }
            pending.append(form)
            yield "approval", form
        elif roll < 0.4:
            upgrade = ("1", "2") if rng.random() < 0.7 else ("2", rng.choice(("3", "4")))
            c = fd.pick_company(rng, w, SYSTEM, duplicates, n)
            form = {
                **_base(rng, f"SJ{day}{n:04d}", when, 3, "销售部经理", "副总经理"),
                # CRM customer numbers: the CRM simulator numbers its cards KH000001 upwards.
                "cust_no": f"KH{rng.randrange(1, 60):06d}",
                "cust_name": c.name_variant(rng),
                "from_status": upgrade[0],
                "to_status": upgrade[1],
                "reason": rng.choice(("已签订首单", "试点项目验收通过", "年度采购额达标")),
            }
            pending.append(form)
            yield "status_upgrade", form
        elif roll < 0.5:
            c = fd.pick_company(rng, w, SYSTEM, duplicates, n)
            amount = Decimal(rng.choice((80, 300, 1200, 5000))) * 1000
            start = when.date() + timedelta(days=rng.randrange(1, 30))
            form = {
                **_base(rng, f"HT{day}{n:04d}", when, 5, "总经理", "董事长"),
                "contract_no": f"HT2026-{n:04d}",
                "contract_name": f"{c.core}{c.trade}年度{rng.choice(('销售', '维保服务'))}合同",
                "nature": rng.choice(("S", "S", "V", "P")),
                "party_no": f"KH{rng.randrange(1, 60):06d}",
                "party_name": c.name_variant(rng),
                "amount": format_amount(amount),
                "currency": "CNY",
                "sign_date": (start - timedelta(days=1)).isoformat(),
                "start_date": start.isoformat(),
                "end_date": (start + timedelta(days=365)).isoformat(),
                "over_limit": "Y" if amount > c.credit_limit else "N",
            }
            pending.append(form)
            yield "contract", form
        elif roll < 0.75:
            form = pending.pop(0)
            reminders.pop(form["flow_id"], None)
            yield (
                "decision",
                {
                    "flow_id": form["flow_id"],
                    "result": rng.choices(("1", "2", "3"), weights=(8, 2, 1))[0],
                    "approver": form["approver"],
                    "approve_time": _dt(when),
                    "opinion": rng.choice(("同意", "同意，请尽快执行", "金额偏高，驳回重报", None)),
                },
            )
        else:
            form = rng.choice(pending)
            prev, seq = reminders.get(form["flow_id"], (None, 0))
            seq += 1
            remind_id = f"CB{day}{n:04d}"
            channel = ("MAIL", "IM", "SMS", "TEL", "ESC")[min(seq - 1, 4)]
            text = (
                f"您好，{form['flow_id']}待您审批，请于{form['deadline']}前处理。"
                if seq == 1
                else f"转发我上周的消息：{form['flow_id']}仍待审批（第{seq}次催办）。"
            )
            rec = {
                "remind_id": remind_id,
                "flow_id": form["flow_id"],
                "source": "OA",
                "remind_level": str(min(seq, 5)),
                "channel": channel,
                "to_user": form["approver"],
                "content": text,
                "seq": str(seq),
                "due_time": form["deadline"],
                "send_time": _dt(when),
            }
            if prev:
                rec["prev_remind_id"] = prev
            if channel == "ESC":
                rec["escalate_to"] = form["superior"]
            reminders[form["flow_id"]] = (remind_id, seq)
            yield "reminder", rec


def react(store: SimStore, rng: random.Random, now: datetime) -> list[tuple[str, dict[str, Any]]]:
    """Approvers decide some of the forms the hub delivered and nobody decided yet."""
    store.db.execute("CREATE TABLE IF NOT EXISTS oa_decided (local_id TEXT PRIMARY KEY)")
    out: list[tuple[str, dict[str, Any]]] = []
    for name in ("approval", "status_upgrade", "contract"):
        table = SPEC.entity(name).table
        rows = store.db.execute(
            f'SELECT local_id, payload FROM "{table}" WHERE origin = ? '
            "AND local_id NOT IN (SELECT local_id FROM oa_decided)",
            ("api",),
        ).fetchall()
        for row in rows:
            if rng.random() > 0.2:
                continue  # not today: some forms wait, which is what urges are for
            store.db.execute("INSERT INTO oa_decided(local_id) VALUES (?)", (row["local_id"],))
            form = json.loads(row["payload"])
            decision = {
                "flow_id": row["local_id"],
                "result": "1" if rng.random() < 0.85 else "2",
                "approver": form["approver"],
                "approve_time": _dt(now),
                "opinion": "同意",
            }
            if form.get("ext_ref"):
                decision["ext_ref"] = form["ext_ref"]
            out.append(("decision", decision))
    return out


async def traffic(
    seed: int = 0, rate: float = 1.0, duplicates: float = 0.2
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    async for item in paced(generate(seed, duplicates), rate):
        yield item


SPEC = SimulatorSpec(
    system=SYSTEM,
    title="OA",
    entities=(
        SimEntity("approval", "/api/approvals", "oa_approval", "flow_id", "SP{n:012d}", OaApproval),
        SimEntity(
            "status_upgrade",
            "/api/status-upgrades",
            "oa_status_upgrade",
            "flow_id",
            "SJ{n:012d}",
            OaStatusUpgrade,
        ),
        SimEntity("contract", "/api/contracts", "oa_contract", "flow_id", "HT{n:012d}", OaContract),
        SimEntity(
            "decision",
            "/api/decisions",
            "oa_decision",
            "flow_id",
            "D{n:012d}",
            OaDecision,
            writes_id=False,
        ),
        SimEntity(
            "reminder", "/api/reminders", "oa_reminder", "remind_id", "CB{n:012d}", OaReminder
        ),
    ),
    generate=generate,
    pushable=frozenset({"approval", "status_upgrade", "contract", "decision", "reminder"}),
    react=react,
)


def create_app(db_path: str | Path, seed: int = 0) -> FastAPI:
    return create_sim_app(SPEC, db_path, seed)
