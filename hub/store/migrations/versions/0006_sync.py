"""sync: golden fan-out state, parked messages, routed orders, BOM lines sent

Revision ID: 0006
Revises: 0001
Create Date: 2026-11-25 15:00:00
"""

from alembic import op  # noqa: I001
import sqlalchemy as sa


revision = "0006"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sync_state",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("quarantined", sa.Boolean(), nullable=False),
        sa.Column("targets", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", When, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_state")),
        sa.UniqueConstraint("entity", "key", name=op.f("uq_sync_state_entity_key")),
    )
    op.create_table(
        "parked",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("flow", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("waiting_on", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("parked_at", When, nullable=False),
        sa.Column("checked_at", When, nullable=False),
        sa.Column("checks", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_parked")),
        sa.UniqueConstraint("target", "message_id", name=op.f("uq_parked_target_message_id")),
    )
    with op.batch_alter_table("parked", schema=None) as batch_op:
        batch_op.create_index("ix_parked_key", ["target", "entity", "key", "id"], unique=False)
        batch_op.create_index("ix_parked_age", ["parked_at"], unique=False)
    op.create_table(
        "sync_orders",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("origin_system", sa.String(length=64), nullable=False),
        sa.Column("origin_id", sa.String(length=256), nullable=False),
        sa.Column("customer_key", sa.String(length=300), nullable=True),
        sa.Column("amount", sa.Numeric(20, 4), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("open", sa.Boolean(), nullable=False),
        sa.Column("credit_flagged", sa.Boolean(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("updated_at", When, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_orders")),
        sa.UniqueConstraint("key", name=op.f("uq_sync_orders_key")),
    )
    with op.batch_alter_table("sync_orders", schema=None) as batch_op:
        batch_op.create_index("ix_sync_orders_customer", ["customer_key", "open"], unique=False)
    op.create_table(
        "sync_boms",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("revision", sa.String(length=32), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.Column("updated_at", When, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_boms")),
        sa.UniqueConstraint("key", "target", name=op.f("uq_sync_boms_key_target")),
    )


def downgrade() -> None:
    op.drop_table("sync_boms")
    with op.batch_alter_table("sync_orders", schema=None) as batch_op:
        batch_op.drop_index("ix_sync_orders_customer")
    op.drop_table("sync_orders")
    with op.batch_alter_table("parked", schema=None) as batch_op:
        batch_op.drop_index("ix_parked_age")
        batch_op.drop_index("ix_parked_key")
    op.drop_table("parked")
    op.drop_table("sync_state")
