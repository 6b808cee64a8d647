"""Approval urges (催办): policy, business calendar, ladder, texts and analytics.

Pure decision logic; the hub persists the state and delivers what :func:`next_action` and
:func:`one_click` return.
"""

from flows.urge.calendar import (
    BusinessCalendar,
    CalendarCoverageError,
    CalendarError,
    library_coverage,
)
from flows.urge.ladder import (
    Action,
    ApprovalFacts,
    ApprovalLike,
    ApprovalPlan,
    OneClickResult,
    PlanError,
    PlannedStep,
    SendUrge,
    SentUrge,
    UrgeState,
    Wait,
    ladder_urge_id,
    next_action,
    next_allowed_send_time,
    one_click,
    one_click_urge_id,
    plan,
    simulate,
)
from flows.urge.policy import (
    DEFAULT_POLICY_PATH,
    Duration,
    PolicyError,
    PolicyIssue,
    UrgePolicy,
    default_policy,
    load_policy,
    parse_policy,
)

__all__ = [
    "DEFAULT_POLICY_PATH",
    "Action",
    "ApprovalFacts",
    "ApprovalLike",
    "ApprovalPlan",
    "BusinessCalendar",
    "CalendarCoverageError",
    "CalendarError",
    "Duration",
    "OneClickResult",
    "PlanError",
    "PlannedStep",
    "PolicyError",
    "PolicyIssue",
    "SendUrge",
    "SentUrge",
    "UrgePolicy",
    "UrgeState",
    "Wait",
    "default_policy",
    "ladder_urge_id",
    "library_coverage",
    "load_policy",
    "next_action",
    "next_allowed_send_time",
    "one_click",
    "one_click_urge_id",
    "parse_policy",
    "plan",
    "simulate",
]
