"""Canonical approval requests, decisions and urges (催办) exchanged with OA."""

from __future__ import annotations

from decimal import Decimal
from typing import Final, Literal

from pydantic import AwareDatetime, Field, model_validator

from contracts.common import (
    DEFAULT_CURRENCY,
    Attributes,
    CanonicalModel,
    Currency,
    Key,
    Text,
    violation,
)

# The type is an open string so operators can add types without a contract change.
KNOWN_APPROVAL_TYPES: Final = (
    "purchase_requisition",
    "customer_status_upgrade",
    "contract",
    "credit_overrun",
    "replenishment",
    "complaint",
    "maintenance_renewal",
)

Tie = Literal["weak", "normal", "strong"]
Decision = Literal["approved", "rejected", "withdrawn"]
UrgeChannel = Literal["email", "im", "sms", "phone", "escalation"]


class ApprovalRequest(CanonicalModel):
    approval_id: Key = Field(description="Id in the origin system")
    type: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    title: Text
    amount: Decimal | None = Field(default=None, ge=0)
    currency: Currency = DEFAULT_CURRENCY
    requester: Key
    requester_department: str | None = Field(default=None, max_length=128)
    approver: Key
    approver_department: str | None = Field(default=None, max_length=128)
    approver_chain: tuple[Key, ...] = ()
    superior: Key | None = None
    submitted_at: AwareDatetime
    deadline: AwareDatetime | None = None
    tie: Tie = "normal"
    subject_ref: str | None = Field(
        default=None, max_length=256, description="Key of the customer, order, ... concerned"
    )
    attributes: Attributes = Field(default_factory=dict)

    @model_validator(mode="after")
    def _deadline(self) -> ApprovalRequest:
        if self.deadline is not None and self.deadline < self.submitted_at:
            raise violation(
                "ApprovalRequest",
                ("deadline",),
                self.deadline,
                "deadline_before_submit",
                f"deadline must not be before submitted_at {self.submitted_at.isoformat()}",
            )
        return self

    @property
    def known_type(self) -> bool:
        return self.type in KNOWN_APPROVAL_TYPES


class ApprovalDecision(CanonicalModel):
    approval_id: Key
    decision: Decision
    decided_by: Key
    decided_at: AwareDatetime
    comment: str | None = Field(default=None, max_length=4000)


class Urge(CanonicalModel):
    urge_id: Key
    approval_id: Key
    origin_system: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_-]*$")
    level: int = Field(ge=1)
    channel: UrgeChannel
    recipient: Key
    text: Text
    sequence: int = Field(ge=1, description="1 for the first urge of an approval, then 2, 3...")
    previous_urge_id: Key | None = None
    due_at: AwareDatetime
    sent_at: AwareDatetime | None = None
    escalated_to: Key | None = None

    @model_validator(mode="after")
    def _rules(self) -> Urge:
        if self.sequence == 1 and self.previous_urge_id is not None:
            raise violation(
                "Urge",
                ("previous_urge_id",),
                self.previous_urge_id,
                "first_urge_has_previous",
                "the first urge (sequence 1) has no previous_urge_id",
            )
        if self.sequence > 1 and self.previous_urge_id is None:
            raise violation(
                "Urge",
                ("previous_urge_id",),
                None,
                "urge_chain",
                f"an urge with sequence {self.sequence} must name its previous_urge_id",
            )
        if self.previous_urge_id == self.urge_id:
            raise violation(
                "Urge",
                ("previous_urge_id",),
                self.previous_urge_id,
                "urge_self_reference",
                "previous_urge_id must differ from urge_id",
            )
        if self.channel == "escalation" and self.escalated_to is None:
            raise violation(
                "Urge",
                ("escalated_to",),
                None,
                "escalation_target",
                "an urge on channel escalation must name escalated_to (the superior)",
            )
        return self
