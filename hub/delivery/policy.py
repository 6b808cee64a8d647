"""The pure decisions of delivery: echo suppression, the retry schedule, what an outcome means.

No clock, store or network here; the deliverer passes ``now``-free inputs and a random source,
so every rule is unit-tested exactly.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from connectors.common.sink import DeliveryResult, Outcome
from contracts.envelope import Envelope, Op

# Answers addressed to the system a thing started in: an ERP order's status going back to the
# CRM that took the order, an approver's decision going back to the system that asked. They
# travel to a system on the trace on purpose; a change made *in* a system never goes back to it.
REPLY_OPS = frozenset({Op.status, Op.decide})

# A Retry-After beyond this is a misconfigured target, not a plan: retry at the cap.
RETRY_AFTER_CAP_S = 3600.0


def is_echo(env: Envelope, system: str) -> bool:
    """DESIGN rule 4: a change never returns to the system it came from as a new change.

    Suppressed: anything whose ``source_system`` is the target, and anything that already
    visited the target (its ``trace``) unless it is a reply (``REPLY_OPS``).
    """
    if env.source_system == system:
        return True
    return system in env.trace and env.op not in REPLY_OPS


def backoff_delay(
    failures: int,
    initial_s: float,
    max_s: float,
    *,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after the ``failures``-th failed attempt (1, 2, ...).

    Exponential (initial, 2x initial, 4x ...) capped at ``max_s``, with "equal jitter": half
    of the step is fixed and half random, so delays always grow to the cap while keys that
    failed together (a target that went down) do not come back in one burst. A Retry-After
    from the target is a floor (up to ``RETRY_AFTER_CAP_S``), never shortened.
    """
    if failures < 1:
        raise ValueError("failures counts failed attempts and starts at 1")
    step = min(max_s, initial_s * 2.0 ** min(failures - 1, 62))
    delay = step / 2 + rand() * step / 2
    if retry_after is not None and retry_after > 0:
        delay = max(delay, min(retry_after, RETRY_AFTER_CAP_S))
    return delay


class Verdict(StrEnum):
    delivered = "delivered"  # record the local id, the key goes on
    retry = "retry"  # the key waits until next_attempt_at, other keys go on
    dead = "dead"  # dead-letter it, the key goes on


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    delay_s: float = 0.0
    reason: str = ""
    error_class: str = ""


def decide(
    result: DeliveryResult,
    attempts: int,
    max_attempts: int,
    *,
    initial_s: float,
    max_s: float,
    rand: Callable[[], float] = random.random,
    failing_for_s: float = 0.0,
    retry_timeout_s: float | None = None,
) -> Decision:
    """What one attempt's outcome means, ``attempts`` counting this one.

    With ``retry_timeout_s`` the budget is time, as Kafka Connect's ``errors.retry.timeout``:
    a message failing for that long since its first failure (``failing_for_s``) is given up,
    however many attempts that took, and ``max_attempts`` does not apply. An outage is
    measured in minutes, not in attempts, and the backoff makes attempts a poor clock.
    """
    if result.ok:
        return Decision(Verdict.delivered, reason=result.reason)
    if result.outcome is Outcome.permanent:
        return Decision(
            Verdict.dead,
            reason=f"{result.reason} (refused permanently at attempt {attempts})",
            error_class="DeliveryRefused",
        )
    if retry_timeout_s is not None:
        if failing_for_s >= retry_timeout_s:
            return Decision(
                Verdict.dead,
                reason=(
                    f"{result.reason} (gave up after {attempts} attempts, failing for "
                    f"{failing_for_s:.0f}s, retry timeout {retry_timeout_s:.0f}s)"
                ),
                error_class="DeliveryRetriesExhausted",
            )
    elif attempts >= max_attempts:
        return Decision(
            Verdict.dead,
            reason=f"{result.reason} (gave up after {attempts} attempts)",
            error_class="DeliveryRetriesExhausted",
        )
    delay = backoff_delay(attempts, initial_s, max_s, retry_after=result.retry_after, rand=rand)
    if retry_timeout_s is not None:
        # the last wait ends at the deadline: one more attempt exactly when the budget is spent
        delay = max(0.0, min(delay, retry_timeout_s - failing_for_s))
    return Decision(Verdict.retry, delay_s=delay, reason=result.reason)
