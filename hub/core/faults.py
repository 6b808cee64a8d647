"""Named fault points for the crash tests: with EAI_FAULT_POINT=<name> the process SIGKILLs
itself the first time it reaches that point. Unset in production, where this is a no-op."""

from __future__ import annotations

import os
import signal

_point = os.environ.get("EAI_FAULT_POINT") or None


def reached(name: str) -> None:
    if _point is not None and _point == name:
        os.kill(os.getpid(), signal.SIGKILL)
