"""deliveries: an index for housekeeping's history deletes (status, finished_at)

Housekeeping (hub/housekeeping.py) deletes delivered and suppressed rows finished before the
retention cut-off, a few thousand at a time; without this index each chunk scanned the table.

Revision ID: 0004a
Revises: 0004
Create Date: 2026-12-06 16:30:00
"""

from alembic import op

revision = "0004a"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deliveries_finished", "deliveries", ["status", "finished_at"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_finished", table_name="deliveries")
