"""Which of two versions of one source record is newer. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Verdict(StrEnum):
    newer = "applied"
    stale = "stale"
    same = "unchanged"


@dataclass(frozen=True)
class Version:
    """``number`` is the source's own version counter, ``ts`` its change timestamp."""

    number: int | None
    ts: datetime


def compare(incoming: Version, stored: Version, same_content: bool) -> tuple[Verdict, str]:
    """Version numbers decide when both sides have one; timestamps otherwise.

    Equal versions with different content keep what is stored: a source that reuses a version
    number for new content is breaking its own contract, and overwriting would let the arrival
    order (not the source) decide.
    """
    if incoming.number is not None and stored.number is not None:
        if incoming.number > stored.number:
            return Verdict.newer, f"version {incoming.number} > stored {stored.number}"
        if incoming.number < stored.number:
            return Verdict.stale, f"version {incoming.number} < stored {stored.number}"
        if same_content:
            return Verdict.same, f"version {incoming.number} already stored"
        return Verdict.stale, f"version {incoming.number} equals stored but content differs"
    if incoming.ts > stored.ts:
        return (
            Verdict.newer,
            f"timestamp {incoming.ts.isoformat()} > stored {stored.ts.isoformat()}",
        )
    if incoming.ts < stored.ts:
        return (
            Verdict.stale,
            f"timestamp {incoming.ts.isoformat()} < stored {stored.ts.isoformat()}",
        )
    if same_content:
        return Verdict.same, "same timestamp and content already stored"
    return Verdict.stale, f"timestamp {incoming.ts.isoformat()} equals stored but content differs"
