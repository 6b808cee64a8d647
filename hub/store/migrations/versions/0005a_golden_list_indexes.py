"""golden records: an index for the admin list (newest change first), trigram search on PG

The admin API's ``GET /golden/{entity}`` pages golden records by ``updated_at`` and searches
``search_text`` by substring. With a million golden records the page sorted the whole table
and a search scanned it (bench/api_latency.py). The list index serves the page from its first
rows; on PostgreSQL a pg_trgm GIN index serves ``LIKE '%...%'`` for patterns of three or more
characters (CJK too). Where the extension cannot be created (no privilege), the search still
works, only without the index: a warning says so.

Revision ID: 0005a
Revises: 0005
Create Date: 2026-11-25 14:30:00
"""

import logging

import sqlalchemy as sa
from alembic import op

revision = "0005a"
down_revision = "0005"
branch_labels = None
depends_on = None

log = logging.getLogger(__name__)


def upgrade() -> None:
    op.create_index(
        "ix_golden_records_list",
        "golden_records",
        ["entity", "status", "updated_at", "golden_id"],
    )
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    try:
        with bind.begin_nested():
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except sa.exc.DBAPIError as exc:
        log.warning("pg_trgm not available (%s): golden search runs without its index", exc)
        return
    op.execute(
        "CREATE INDEX ix_golden_records_search_trgm ON golden_records "
        "USING gin (search_text gin_trgm_ops)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_golden_records_search_trgm")
    op.drop_index("ix_golden_records_list", table_name="golden_records")
