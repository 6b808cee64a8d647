"""SQLite under asyncio with one thread hop per statement (decision 66).

aiosqlite runs each sqlite3 call in the connection's own thread and wakes the event loop when
it is done. SQLAlchemy's aiosqlite adapter makes four such calls per statement that returns
rows (create the cursor, execute, fetch all, close) and three per statement that does not; a
hop is a queue put, a thread wake-up and a loop wake-up, 0.3 ms on this machine when the loop
is idle and up to the interpreter's switch interval (5 ms) when it is busy, because the
connection's thread must take the GIL from the loop's. A one-record batch of the records flow
made 28 hops for 6 statements: 9 ms of its 27 ms, all of it inside the write gate that every
writer of the process queues at (hub.store.db._WriteGate).

Here the cursor does the whole statement in one hop: a sqlite3 cursor is made, executed,
drained and closed in the connection's thread, and the rows, description, rowcount and
lastrowid come back together. Everything else (connections, commit, rollback, server-side
cursors, errors) is SQLAlchemy's adapter unchanged. It is passed to `create_async_engine` as
the dialect's DBAPI (`module=`), so URLs stay `sqlite+aiosqlite://`.

`aiosqlite.Connection._execute` (queue a function for the connection's thread) is private;
aiosqlite is pinned (pyproject.toml) and tests/unit/test_sqlite_onehop.py fails if it changes.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Sequence
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

# what one hop brings back: description, rows, rowcount, lastrowid
_Outcome = tuple[Any, list[Any], int, int | None]


def _run(conn: sqlite3.Connection, many: bool, operation: str, parameters: Any) -> _Outcome:
    cursor = conn.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    """A buffered cursor whose statements each cost one hop to the connection's thread."""

    __slots__ = ("_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: Any) -> None:
        # no aiosqlite cursor (its creation and its close were two hops of their own)
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows: collections.deque[Any] = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]

    @property
    def arraysize(self) -> int:
        return 1

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        pass  # every row is fetched in the statement's hop

    async def _async_soft_close(self) -> None:
        return None  # nothing open in the connection's thread

    def close(self) -> None:
        self._rows.clear()

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        try:
            return await_(self._hop(False, operation, parameters))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    def executemany(self, operation: Any, seq_of_parameters: Sequence[Any]) -> Any:
        try:
            return await_(self._hop(True, operation, seq_of_parameters))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    async def _hop(self, many: bool, operation: Any, parameters: Any) -> None:
        connection: Any = self._connection  # an aiosqlite.Connection
        async with self._adapt_connection._execute_mutex:
            outcome: _Outcome = await connection._execute(
                _run, connection._conn, many, operation, parameters
            )
        self._description, rows, self._rowcount, self._lastrowid = outcome
        self._rows = collections.deque(rows)

    def nextset(self) -> None:
        return None  # sqlite3 has one result set per statement

    def setinputsizes(self, *inputsizes: Any) -> None:
        return None  # sqlite3's own is a no-op


class OneHopConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneHopCursor


class OneHopDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """SQLAlchemy's aiosqlite DBAPI adapter, making `OneHopConnection`s."""

    def connect(self, *arg: Any, **kw: Any) -> OneHopConnection:
        adapted = super().connect(*arg, **kw)
        return OneHopConnection(self, adapted._connection)


def onehop_dbapi() -> OneHopDBAPI:
    return OneHopDBAPI(aiosqlite, sqlite3)
