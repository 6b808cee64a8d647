"""The urge flow: accepted approval requests and decisions -> the approvals table and its timer.

Consumes ``changes.approval`` (requests: op ``request``/``upsert``, body ApprovalRequest;
decisions: op ``decide``, body ApprovalDecision; op ``delete`` = withdrawn). Requests from
other systems are forwarded to ``outbound.oa``, OA being where approvals are decided and
urges read (docs/decisions.md 23). Per batch: one query for the approvals concerned, one for
early decisions, then bulk writes. Sending urges is the scheduler's job
(``hub.urge_scheduler``); this flow only keeps each approval's facts, plan, status and
``next_due_at`` (the first moment anything could be due, never later: the scheduler asks
:func:`flows.urge.next_action` what is really due, so an early timer costs one look).

Identity. An approval is keyed hub-wide by ``origin_system:approval_id``. The canonical
``approval_id`` is the id in the system where the approval started, so a decision that OA sends
about an ERP requisition carries the ERP number with ``source_system`` oa: a message whose exact
key is unknown is matched to the open approval with the same ``approval_id`` (and, for
requests, the same type). A decision that arrives before its request is kept and applied
when the request comes, if it is not older than the submission.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import delete, insert, or_, select, update

from contracts import topics
from contracts.approval import ApprovalDecision, ApprovalRequest
from contracts.envelope import Entity, Envelope, Op
from flows.urge.calendar import BusinessCalendar, CalendarError
from flows.urge.ladder import URGE_NAMESPACE, ApprovalFacts, ApprovalPlan, PlanError, plan
from flows.urge.policy import DEFAULT_POLICY_PATH, UrgePolicy, load_policy
from hub.core.errors import PermanentError
from hub.core.processor import FlowContext, FlowSpec, Handler, Item
from hub.store.urge_models import Approval, PendingDecision

NAME = "urges"
# Where approvals are decided and urges delivered: requests from the other systems go there.
WORKFLOW_SYSTEM = "oa"
OPEN = "open"
DECISIONS = ("approved", "rejected", "withdrawn")
# Request attributes that carry the workflow status in the origin system: a request whose
# status there is already a decision is recorded as decided (no urge for a closed form).
STATUS_ATTRIBUTES = ("oa.status", "status")
# OA's own number of its copy of another system's request (OA's connector sets it).
OA_FORM_ID = "oa.flow_id"
# Clocks of different systems disagree a little: a decision stamped this much before the
# submission still belongs to it.
CLOCK_SKEW = dt.timedelta(minutes=10)

log = logging.getLogger(__name__)


# -- helpers shared with the scheduler and the API -------------------------------------------


def approval_key(origin_system: str, approval_id: str) -> str:
    return f"{origin_system}:{approval_id}"


def urge_scope(key: str, round_: int) -> str:
    """What ladder urge ids are derived from: the key, plus the round after the first, so a
    new approver (or a resubmission) gets a ladder of its own."""
    return key if round_ <= 1 else f"{key}#{round_}"


def facts_of(request: Mapping[str, Any], scope: str) -> ApprovalFacts:
    """The stored canonical request as the ladder's input, identified by ``scope``."""
    return dataclasses.replace(ApprovalFacts.of(request), approval_id=scope)


def plan_for(
    request: Mapping[str, Any], scope: str, policy: UrgePolicy, calendar: BusinessCalendar
) -> tuple[ApprovalFacts, ApprovalPlan]:
    """Facts and plan; raises :class:`PlanError` (also for calendar problems)."""
    facts = facts_of(request, scope)
    try:
        return facts, plan(facts, policy, calendar)
    except CalendarError as exc:
        raise PlanError(str(exc)) from None


def plan_json(p: ApprovalPlan) -> dict[str, Any]:
    return {
        "type_key": p.type_key,
        "type_fallback": p.type_fallback,
        "band_index": p.band_index,
        "authority": p.authority,
        "weight": str(p.weight),
        "amount_in_policy_currency": None
        if p.amount_in_policy_currency is None
        else str(p.amount_in_policy_currency),
        "deadline": p.deadline.isoformat(),
        "deadline_source": p.deadline_source,
        "ladder": p.ladder,
        "tie": p.tie,
        "escalation_recipient": p.escalation_recipient,
        "calendar_approximate": p.calendar_approximate,
        "policy_fingerprint": p.policy_fingerprint,
        "warnings": list(p.warnings),
        "steps": [
            {
                "level": s.level,
                "channel": s.channel,
                "after": str(s.after),
                "due_at": s.due_at.isoformat(),
                "recipient": s.recipient,
            }
            for s in p.steps
        ],
    }


def plan_columns(p: ApprovalPlan) -> dict[str, Any]:
    """The approval columns that follow from a plan."""
    return {
        "type_key": p.type_key,
        "deadline": p.deadline,
        "band_index": p.band_index,
        "authority": p.authority,
        "escalate_to": p.escalation_recipient,
        "tie": p.tie,
        "plan": plan_json(p),
        "policy_fingerprint": p.policy_fingerprint,
    }


# -- the batch handler ----------------------------------------------------------------------


@dataclass
class _Held:
    """An approval as the batch sees it: stored values plus changes of earlier messages."""

    values: dict[str, Any]
    new: bool = False
    dirty: bool = False


@dataclass(frozen=True)
class _Decision:
    approval_id: str
    source_system: str
    decision: str
    decided_by: str
    decided_at: dt.datetime
    message_id: str
    comment: str | None = None
    env: Envelope | None = None


class _Batch:
    def __init__(
        self,
        ctx: FlowContext,
        policy: UrgePolicy,
        calendar: BusinessCalendar,
        rows: list[dict[str, Any]],
        pending: list[dict[str, Any]],
    ) -> None:
        self.ctx = ctx
        self.policy = policy
        self.calendar = calendar
        self.now = dt.datetime.now(dt.UTC)
        self.held: dict[str, _Held] = {r["key"]: _Held(r) for r in rows}
        self.pending: dict[str, list[dict[str, Any]]] = {}
        for p in pending:
            self.pending.setdefault(p["approval_id"], []).append(p)
        self.pending_used: set[int] = set()
        self.new_pending: list[dict[str, Any]] = []

    # -- lookups --------------------------------------------------------------------------

    def _by_approval_id(self, approval_id: str, type_: str | None) -> _Held | None:
        """The approval with this id from another origin: open ones first, then the newest."""
        found = [
            h
            for h in self.held.values()
            if h.values["approval_id"] == approval_id
            and (type_ is None or h.values["type"] == type_)
        ]
        if not found:
            return None
        found.sort(key=lambda h: (h.values["status"] == OPEN, h.values["submitted_at"]))
        return found[-1]

    # -- requests -------------------------------------------------------------------------

    def request(self, env: Envelope, body: ApprovalRequest) -> None:
        origin = _origin_of(env, body)
        key = approval_key(origin, body.approval_id)
        cur = self.held.get(key) or self._by_approval_id(body.approval_id, body.type)
        data = body.model_dump(mode="json")
        facts = _fact_columns(body)
        if cur is None:
            values = self._new(key, origin, env, body, data, facts)
            held = self.held[key] = _Held(values, new=True, dirty=True)
            if values["status"] != OPEN:
                # OA's copy of another system's request, already decided when the hub first
                # sees it: the decision goes back like any other.
                self._answer(held, self._form_decision(env, body, str(values["status"])), OPEN)
            self._apply_pending(held)
            self._forward(env, body, key)
            return
        v = cur.values
        if v["origin_system"] == WORKFLOW_SYSTEM and origin != WORKFLOW_SYSTEM:
            # OA's form came first and did not name its source system; the request of the
            # system where the approval started says it now. Decided meanwhile: send it back.
            v["origin_system"] = origin
            cur.dirty = True
            if v["status"] != OPEN and v["decided_at"] is not None:
                self._answer(
                    cur,
                    _Decision(
                        str(v["approval_id"]),
                        WORKFLOW_SYSTEM,
                        str(v["status"]),
                        str(v["decided_by"]),
                        v["decided_at"],
                        str(v["last_message_id"]),
                    ),
                    OPEN,
                )
        form_id = (v["request"] or {}).get("attributes", {}).get(OA_FORM_ID)
        if form_id and env.source_system != WORKFLOW_SYSTEM:
            # OA already holds a form for this approval (it told the hub of it): the request
            # goes to that form, by its number, never to a new one.
            data["attributes"] = {**data["attributes"], OA_FORM_ID: form_id}
        round_ = int(v["round"])
        if v["status"] != OPEN:
            if v["decided_at"] is not None and body.submitted_at > v["decided_at"]:
                # Submitted again after a decision: a new round of urging.
                round_ += 1
                v.update(status=OPEN, decided_at=None, decided_by=None)
        elif body.approver != v["approver"]:
            round_ += 1  # someone else has to decide now: their own ladder
        _facts, p = self._plan(v["key"], data, round_)
        v.update(facts)
        v.update(plan_columns(p))
        v.update(
            round=round_,
            request=data,
            next_due_at=p.first_due_at if v["status"] == OPEN else None,
            last_error=None,
            last_message_id=str(env.message_id),
            version=int(v["version"]) + 1,
            updated_at=self.now,
        )
        status = _status_attribute(body)
        if status is not None and v["status"] == OPEN:
            self._decide(cur, status, body.approver, _ts(env), str(env.message_id))
            self._answer(cur, self._form_decision(env, body, status), OPEN)
        cur.dirty = True
        self._forward(env, body, v["key"], data if form_id else None)

    @staticmethod
    def _form_decision(env: Envelope, body: ApprovalRequest, status: str) -> _Decision:
        """A form status is a decision like a decide message: OA's decide message may come
        later, stamped earlier, or never. The form names no decider; its current approver is
        the person OA was waiting on."""
        return _Decision(
            body.approval_id,
            env.source_system,
            status,
            body.approver,
            _ts(env),
            str(env.message_id),
            None,
            env,
        )

    def _forward(
        self,
        env: Envelope,
        body: ApprovalRequest,
        key: str,
        data: dict[str, Any] | None = None,
    ) -> None:
        """A request from another system goes to the workflow system (OA), where the
        approver decides it and where its urges land. Keyed by the approval: delivery keeps
        the form's OA id under that key, so a changed request updates the same form.
        ``data``: the body to send instead of the request's own (it names OA's form)."""
        if env.source_system == WORKFLOW_SYSTEM or _status_attribute(body) is not None:
            return  # OA's own form (no echo), or one already decided where it started
        changes: dict[str, Any] = {} if data is None else {"body": data}
        out = env.caused(
            # Deterministic: a batch applied again emits the same message, which the
            # delivery flow's ledger drops.
            message_id=uuid.uuid5(URGE_NAMESPACE, f"forward/{env.message_id}"),
            **changes,
        )
        self.ctx.emit(topics.outbound(WORKFLOW_SYSTEM), out, key=key)

    def _plan(
        self, key: str, data: Mapping[str, Any], round_: int
    ) -> tuple[ApprovalFacts, ApprovalPlan]:
        try:
            return plan_for(data, urge_scope(key, round_), self.policy, self.calendar)
        except PlanError as exc:
            raise PermanentError(f"approval {key} cannot be planned: {exc}") from None

    def _new(
        self,
        key: str,
        origin: str,
        env: Envelope,
        body: ApprovalRequest,
        data: dict[str, Any],
        facts: dict[str, Any],
    ) -> dict[str, Any]:
        _facts, p = self._plan(key, data, 1)
        values: dict[str, Any] = {
            "key": key,
            "origin_system": origin,
            "approval_id": body.approval_id,
            "round": 1,
            **facts,
            **plan_columns(p),
            "request": data,
            "status": OPEN,
            "decided_at": None,
            "decided_by": None,
            "next_due_at": p.first_due_at,
            "lease_until": None,
            "leased_by": None,
            "version": 1,
            "urge_count": 0,
            "last_urged_at": None,
            "last_error": None,
            "correlation_id": str(env.correlation),
            "last_message_id": str(env.message_id),
            "created_at": self.now,
            "updated_at": self.now,
        }
        status = _status_attribute(body)
        if status is not None:
            values.update(
                status=status, decided_at=_ts(env), decided_by=body.approver, next_due_at=None
            )
        return values

    def _apply_pending(self, held: _Held) -> None:
        v = held.values
        early = self.pending.get(v["approval_id"], [])
        fresh = [p for p in early if p["id"] not in self.pending_used]
        for p in fresh:
            self.pending_used.add(p["id"])
        usable = [p for p in fresh if p["decided_at"] >= v["submitted_at"] - CLOCK_SKEW]
        for p in fresh:
            if p not in usable:
                log.info(
                    "urges: early decision %s on %s (%s) predates the submission %s; dropped",
                    p["decision"],
                    v["key"],
                    p["decided_at"].isoformat(),
                    v["submitted_at"].isoformat(),
                )
        if usable and v["status"] == OPEN:
            last = max(usable, key=lambda p: p["decided_at"])
            self._decide(
                held, last["decision"], last["decided_by"], last["decided_at"], last["message_id"]
            )
            self._answer(
                held,
                _Decision(
                    v["approval_id"],
                    last["source_system"],
                    last["decision"],
                    last["decided_by"],
                    last["decided_at"],
                    last["message_id"],
                ),
                OPEN,
            )

    # -- decisions ------------------------------------------------------------------------

    def decision(self, d: _Decision) -> None:
        key = approval_key(d.source_system, d.approval_id)
        cur = self.held.get(key) or self._by_approval_id(d.approval_id, None)
        if cur is None:
            self.new_pending.append(
                {
                    "approval_id": d.approval_id,
                    "source_system": d.source_system,
                    "decision": d.decision,
                    "decided_by": d.decided_by,
                    "decided_at": d.decided_at,
                    "message_id": d.message_id,
                    "received_at": self.now,
                }
            )
            # Visible to a request later in this very batch.
            self.pending.setdefault(d.approval_id, []).append(
                {**self.new_pending[-1], "id": -len(self.new_pending)}
            )
            return
        v = cur.values
        if d.decided_at < v["submitted_at"] - CLOCK_SKEW:
            log.info(
                "urges: decision %s on %s at %s predates its submission %s; ignored",
                d.decision,
                v["key"],
                d.decided_at.isoformat(),
                v["submitted_at"].isoformat(),
            )
            return
        if v["status"] != OPEN and v["decided_at"] is not None:
            if d.decision == v["status"]:
                # The decision the approval already has, whatever its timestamp: OA's decide
                # message after the form status that showed it (or the other way round), or a
                # retry. It was applied, and sent back, when it first came.
                return
            if d.decided_at <= v["decided_at"]:
                return  # an older different decision: the newest one stands
        previous = str(v["status"])
        self._decide(cur, d.decision, d.decided_by, d.decided_at, d.message_id)
        self._answer(cur, d, previous)

    def _answer(self, held: _Held, d: _Decision, previous: str) -> None:
        """The workflow system's decision goes back to the system that asked, if the policy
        names it (``decisions_back_to``), keyed by the approval: the ERP's release of a
        requisition is created by the first decision and updated by a later one.

        ``previous`` is the approval's status before this decision. The message id is
        derived from what changed (approval, round, previous status -> decision), not from
        the message that carried it, so one decision learned twice (form status and decide
        message, a retried batch) is one message and the delivery ledger drops the copy,
        while a changed decision (approved -> withdrawn) is a message of its own."""
        origin = str(held.values["origin_system"])
        if (
            d.source_system != WORKFLOW_SYSTEM
            or origin == WORKFLOW_SYSTEM
            or origin not in self.policy.decisions_back_to
        ):
            return
        body = ApprovalDecision(
            approval_id=held.values["approval_id"],
            decision=d.decision,
            decided_by=d.decided_by,
            decided_at=d.decided_at,
            comment=d.comment,
        ).model_dump(mode="json")
        scope = urge_scope(str(held.values["key"]), int(held.values["round"]))
        message_id = uuid.uuid5(URGE_NAMESPACE, f"answer/{scope}/{previous}->{d.decision}")
        if d.env is not None:
            out = d.env.caused(message_id=message_id, op=Op.decide, body=body)
        else:  # kept while its request was on the way: the decision message is gone
            correlation = held.values["correlation_id"]
            out = Envelope(
                message_id=message_id,
                entity=Entity.approval,
                op=Op.decide,
                source_system=d.source_system,
                source_id=str(held.values["approval_id"]),
                trace=(d.source_system,),
                correlation_id=uuid.UUID(correlation) if correlation else None,
                body=body,
            )
        self.ctx.emit(topics.outbound(origin), out, key=str(held.values["key"]))

    def _decide(
        self, held: _Held, decision: str, by: str, at: dt.datetime, message_id: str
    ) -> None:
        held.values.update(
            status=decision,
            decided_at=at,
            decided_by=by,
            next_due_at=None,  # the ladder stops at once
            last_message_id=message_id,
            version=int(held.values["version"]) + 1,
            updated_at=self.now,
        )
        held.dirty = True

    # -- writes ---------------------------------------------------------------------------

    async def flush(self) -> None:
        s = self.ctx.session
        inserts = [h.values for h in self.held.values() if h.new]
        updates = [h.values for h in self.held.values() if h.dirty and not h.new]
        if inserts:
            await s.execute(insert(Approval), [_without(v, "id") for v in inserts])
        if updates:
            await s.execute(update(Approval), [_update_values(v) for v in updates])
        stored_pending = [i for i in self.pending_used if i > 0]
        if stored_pending:
            await s.execute(delete(PendingDecision).where(PendingDecision.id.in_(stored_pending)))
        used_new = {-i for i in self.pending_used if i < 0}
        keep = [p for n, p in enumerate(self.new_pending, 1) if n not in used_new]
        if keep:
            await s.execute(insert(PendingDecision), keep)


_FACT_FIELDS = (
    "type",
    "title",
    "currency",
    "requester",
    "requester_department",
    "approver",
    "approver_department",
    "superior",
    "submitted_at",
)


def _fact_columns(body: ApprovalRequest) -> dict[str, Any]:
    values: dict[str, Any] = {f: getattr(body, f) for f in _FACT_FIELDS}
    values["amount"] = None if body.amount is None else str(body.amount)
    return values


def _status_attribute(body: ApprovalRequest) -> str | None:
    for name in STATUS_ATTRIBUTES:
        value = body.attributes.get(name)
        if isinstance(value, str) and value in DECISIONS:
            return value
    return None


def _origin_of(env: Envelope, body: ApprovalRequest) -> str:
    """The system where the approval started. OA's copy of another system's request names it
    (来源系统, ``oa.ext_system``), so an OA form that reaches the hub before that system's own
    request is keyed, and answered, as that system's approval."""
    if env.source_system == WORKFLOW_SYSTEM:
        ext = body.attributes.get("oa.ext_system")
        if isinstance(ext, str) and ext and ext != WORKFLOW_SYSTEM:
            return ext
    return env.source_system


def _ts(env: Envelope) -> dt.datetime:
    return env.source_ts or env.occurred_at


def _without(values: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k not in names}


_UPDATABLE = frozenset(c.key for c in Approval.__table__.columns) - {
    "key",
    "approval_id",
    "created_at",
    "lease_until",
    "leased_by",
    "urge_count",
    "last_urged_at",
}


def _update_values(values: dict[str, Any]) -> dict[str, Any]:
    # ORM bulk UPDATE by primary key; lease and urge counters belong to the scheduler.
    return {k: v for k, v in values.items() if k in _UPDATABLE}


def _decision_of(item: Item) -> _Decision | None:
    env, body = item.env, item.body
    if env.op is Op.decide:
        if not isinstance(body, ApprovalDecision):
            raise PermanentError(f"a decide message needs an ApprovalDecision body, not {body!r}")
        return _Decision(
            body.approval_id,
            env.source_system,
            body.decision,
            body.decided_by,
            body.decided_at,
            str(env.message_id),
            body.comment,
            env,
        )
    if env.op is Op.delete:
        # A deleted request is a withdrawn one.
        return _Decision(
            env.source_id,
            env.source_system,
            "withdrawn",
            env.source_system,
            _ts(env),
            str(env.message_id),
            None,
            env,
        )
    return None


class UrgeHandler:
    """The batch handler; keeps the policy so the scheduler can be given the same one."""

    def __init__(self, policy: UrgePolicy, calendar: BusinessCalendar) -> None:
        self.policy = policy
        self.calendar = calendar

    async def __call__(self, ctx: FlowContext, items: list[Item]) -> None:
        for item in items:
            op = item.env.op
            if op in (Op.request, Op.upsert) and not isinstance(item.body, ApprovalRequest):
                raise PermanentError(f"op {op.value} needs an ApprovalRequest body")
            if op not in (Op.request, Op.upsert, Op.decide, Op.delete):
                raise PermanentError(
                    f"op {op.value} is not an approval request, decision or withdrawal"
                )
        ids: set[str] = set()
        keys: set[str] = set()
        request_ids: set[str] = set()
        for item in items:
            env, body = item.env, item.body
            if isinstance(body, ApprovalRequest | ApprovalDecision):
                aid = body.approval_id
            else:
                aid = env.source_id
            ids.add(aid)
            keys.add(approval_key(env.source_system, aid))
            if isinstance(body, ApprovalRequest):
                request_ids.add(aid)
        s = ctx.session
        cols = Approval.__table__.columns
        rows = [
            dict(r)
            for r in (
                await s.execute(
                    select(*cols).where(or_(Approval.key.in_(keys), Approval.approval_id.in_(ids)))
                )
            ).mappings()
        ]
        pending: list[dict[str, Any]] = []
        if request_ids:
            pending = [
                dict(r)
                for r in (
                    await s.execute(
                        select(*PendingDecision.__table__.columns).where(
                            PendingDecision.approval_id.in_(request_ids)
                        )
                    )
                ).mappings()
            ]
        batch = _Batch(ctx, self.policy, self.calendar, rows, pending)
        for item in items:
            decision = _decision_of(item)
            if decision is not None:
                batch.decision(decision)
            else:
                assert isinstance(item.body, ApprovalRequest)
                batch.request(item.env, item.body)
        await batch.flush()


def configured_policy(path: str | os.PathLike[str] | None = None) -> UrgePolicy:
    """The urge policy at ``path``, else at the ``EAI_URGE_POLICY`` setting (environment or
    ``.env``), else the shipped ``default_policy.yaml``; validated once per file
    (:class:`PolicyError` lists every problem). The flow and the scheduler of one process get
    the same object."""
    if path is None:
        from hub.settings import Settings

        path = Settings().urge_policy
    return _load(os.fspath(path or DEFAULT_POLICY_PATH))


@lru_cache(maxsize=8)
def _load(path: str) -> UrgePolicy:
    return load_policy(path)


def spec(policy: UrgePolicy | None = None, calendar: BusinessCalendar | None = None) -> FlowSpec:
    """The urge flow; ``policy`` defaults to :func:`configured_policy`. Its scheduler takes
    the same policy: :func:`policy_of`."""
    p = policy or configured_policy()
    handler: Handler = UrgeHandler(p, calendar or p.build_calendar())
    return FlowSpec(name=NAME, topics=[topics.changes(Entity.approval)], handle=handler)


def policy_of(spec: FlowSpec) -> tuple[UrgePolicy, BusinessCalendar]:
    """The policy and calendar an urge flow spec was built with (for its scheduler)."""
    if not isinstance(spec.handle, UrgeHandler):
        raise TypeError(f"flow {spec.name!r} is not the urge flow")
    return spec.handle.policy, spec.handle.calendar
