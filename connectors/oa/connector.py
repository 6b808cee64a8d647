"""OA as the hub sees it: approvals from and to every system, decisions, reminders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from connectors.common.base import Connector, EntityBinding
from connectors.common.valuemaps import load_value_maps
from connectors.oa import mapping as m
from connectors.oa.native import (
    OaApproval,
    OaContract,
    OaDecision,
    OaReminder,
    OaStatusUpgrade,
)
from contracts.approval import ApprovalDecision, ApprovalRequest, Urge
from contracts.envelope import Entity, Op

VALUEMAPS = Path(__file__).with_name("valuemaps.yaml")


def _approval_key(record: Any) -> str:
    # Requests and decisions of one approval share a key, so Kafka keeps them in order.
    return str(record.approval_id)


def build(valuemaps_override: str | Path | None = None) -> Connector:
    def request(name: str, native: Any, to_c: Any, from_c: Any, path: str, what: str) -> Any:
        return EntityBinding(
            name=name,
            entity=Entity.approval,
            native=native,
            canonical=ApprovalRequest,
            to_canonical=to_c,
            from_canonical=from_c,
            op=Op.request,
            id_field="flow_id",
            piece_id=_approval_key,
            ts_field="submit_time",
            api_path=path,
            table=f"oa_{name}",
            description=what,
        )

    return Connector(
        system="oa",
        title="OA (approval workflows, decisions, reminders inbox)",
        bindings={
            "approval": request(
                "approval",
                OaApproval,
                m.approval_to_canonical,
                m.approval_from_canonical,
                "/api/approvals",
                "审批单: approval forms (complaints, requisitions, expenses, ECOs ...)",
            ),
            "status_upgrade": request(
                "status_upgrade",
                OaStatusUpgrade,
                m.status_upgrade_to_canonical,
                m.status_upgrade_from_canonical,
                "/api/status-upgrades",
                "客户状态升级: customer status-upgrade workflows",
            ),
            "contract": request(
                "contract",
                OaContract,
                m.contract_to_canonical,
                m.contract_from_canonical,
                "/api/contracts",
                "合同审批: contracts awaiting approval",
            ),
            "decision": EntityBinding(
                name="decision",
                entity=Entity.approval,
                native=OaDecision,
                canonical=ApprovalDecision,
                to_canonical=m.decision_to_canonical,
                from_canonical=m.decision_from_canonical,
                op=Op.decide,
                id_field="flow_id",
                piece_id=_approval_key,
                ts_field="approve_time",
                api_path="/api/decisions",
                table="oa_decision",
                description="审批意见: decisions on approvals",
            ),
            "reminder": EntityBinding(
                name="reminder",
                entity=Entity.urge,
                native=OaReminder,
                canonical=Urge,
                to_canonical=m.reminder_to_canonical,
                from_canonical=m.reminder_from_canonical,
                id_field="remind_id",
                ts_field=("send_time", "due_time"),
                api_path="/api/reminders",
                table="oa_reminder",
                description="催办: reminders in the approvers' inbox",
            ),
        },
        value_maps=load_value_maps("oa", VALUEMAPS, valuemaps_override),
        valuemaps_default=VALUEMAPS,
    )
