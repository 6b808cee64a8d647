"""identity: golden records, members, candidate index, review queue, identity events

Revision ID: 0005
Revises: 0001
Create Date: 2026-11-26 09:00:00
"""

from alembic import op  # noqa: I001
import sqlalchemy as sa


revision = "0005"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "golden_records",
        sa.Column("golden_id", sa.String(length=64), nullable=False),
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("profile", sa.JSON(), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("winners", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("merged_into", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=256), nullable=True),
        sa.Column("search_text", sa.Text(), nullable=False),
        sa.Column("member_count", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("golden_id", name=op.f("pk_golden_records")),
    )
    op.create_index(
        "ix_golden_records_entity_status",
        "golden_records",
        ["entity", "status", "golden_id"],
        unique=False,
    )

    op.create_table(
        "golden_members",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("source_system", sa.String(length=64), nullable=False),
        sa.Column("source_id", sa.String(length=256), nullable=False),
        sa.Column("golden_id", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=True),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_golden_members")),
        sa.UniqueConstraint(
            "source_id",
            "source_system",
            "entity",
            name=op.f("uq_golden_members_source_id_source_system_entity"),
        ),
    )
    op.create_index(
        op.f("ix_golden_members_golden_id"), "golden_members", ["golden_id"], unique=False
    )

    op.create_table(
        "block_keys",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("golden_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("key", "entity", "golden_id", name=op.f("pk_block_keys")),
    )
    op.create_index("ix_block_keys_golden", "block_keys", ["golden_id"], unique=False)

    op.create_table(
        "block_key_counts",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", "entity", name=op.f("pk_block_key_counts")),
    )

    op.create_table(
        "review_queue",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("source_system", sa.String(length=64), nullable=False),
        sa.Column("source_id", sa.String(length=256), nullable=False),
        sa.Column("golden_id", sa.String(length=64), nullable=False),
        sa.Column("candidate_id", sa.String(length=64), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(length=128), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_queue")),
    )
    op.create_index("ix_review_queue_status_id", "review_queue", ["status", "id"], unique=False)

    op.create_table(
        "identity_events",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("golden_id", sa.String(length=64), nullable=False),
        sa.Column("other_golden_id", sa.String(length=64), nullable=True),
        sa.Column("source_system", sa.String(length=64), nullable=True),
        sa.Column("source_id", sa.String(length=256), nullable=True),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_events")),
    )
    op.create_index(
        op.f("ix_identity_events_golden_id"), "identity_events", ["golden_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_identity_events_golden_id"), table_name="identity_events")
    op.drop_table("identity_events")
    op.drop_index("ix_review_queue_status_id", table_name="review_queue")
    op.drop_table("review_queue")
    op.drop_table("block_key_counts")
    op.drop_index("ix_block_keys_golden", table_name="block_keys")
    op.drop_table("block_keys")
    op.drop_index(op.f("ix_golden_members_golden_id"), table_name="golden_members")
    op.drop_table("golden_members")
    op.drop_index("ix_golden_records_entity_status", table_name="golden_records")
    op.drop_table("golden_records")
