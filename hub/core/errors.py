"""Error kinds that decide what the core does with a failing message."""

from __future__ import annotations


class TransientError(RuntimeError):
    """Worth retrying: the whole batch is rolled back and consumed again after a backoff."""


class PermanentError(ValueError):
    """This message can never succeed as it is: it goes to the dead-letter topic."""

    def __init__(self, reason: str, *, stage: str = "process") -> None:
        super().__init__(reason)
        self.stage = stage
