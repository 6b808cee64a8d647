"""Which store errors redo a batch (`hub.store.db.is_store_contention`): since decision 47 the
identity flow and the core's ledger claim send driver SQL to asyncpg, whose errors arrive
unwrapped; a race met there must still redo the batch, not dead-letter a message that did
nothing wrong, and a plain mistake must not be retried for ever."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc

from hub.store.db import is_store_contention


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.UniqueViolationError("duplicate key value violates unique constraint"),
        asyncpg.DeadlockDetectedError("deadlock detected"),
        asyncpg.SerializationError("could not serialize access"),
        asyncpg.LockNotAvailableError("could not obtain lock"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        ConnectionResetError("reset by peer"),
        sa_exc.IntegrityError("INSERT", {}, Exception("duplicate")),
        sa_exc.OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked")),
    ],
)
def test_races_and_lost_connections_redo_the_batch(error: BaseException) -> None:
    assert is_store_contention(error)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.UndefinedColumnError('column "nope" does not exist'),
        asyncpg.InvalidTextRepresentationError("invalid input syntax for type integer"),
        sa_exc.ProgrammingError("SELECT", {}, Exception("syntax error")),
        ValueError("a bug"),
    ],
)
def test_mistakes_are_not_retried(error: BaseException) -> None:
    assert not is_store_contention(error)
