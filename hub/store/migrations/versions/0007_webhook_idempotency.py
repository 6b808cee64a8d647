"""webhook_idempotency: answers to webhook calls with an Idempotency-Key, replayed to retries

Revision ID: 0007
Revises: 0001
Create Date: 2026-12-07 05:00:00
"""

from alembic import op  # noqa: I001
import sqlalchemy as sa


revision = "0007"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_idempotency",
        sa.Column("system", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("entity", sa.String(length=64), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("system", "key", name=op.f("pk_webhook_idempotency")),
    )
    op.create_index("ix_webhook_idempotency_created_at", "webhook_idempotency", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_idempotency_created_at", table_name="webhook_idempotency")
    op.drop_table("webhook_idempotency")
