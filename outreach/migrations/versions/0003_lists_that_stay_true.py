"""lists that stay true: close reasons, misses, attempts, snoozes; customer contact details;
flash messages on page sessions (issue 17)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 12:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("value_tier", sa.String(length=16), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("close_reason", sa.String(length=200), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("flag", sa.String(length=200), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("missed", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("snoozed_until", sa.DateTime(timezone=True)))
        batch_op.create_index(batch_op.f("ix_tasks_missed"), ["missed"], unique=False)
    with op.batch_alter_table("customers", schema=None) as batch_op:
        for name, length in (("name", 120), ("phone", 40), ("email", 200), ("address", 300)):
            batch_op.add_column(
                sa.Column(name, sa.String(length=length), nullable=False, server_default="")
            )
        batch_op.add_column(sa.Column("value_eur", sa.Float()))
        batch_op.add_column(sa.Column("left_at", sa.DateTime(timezone=True)))
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("flash", sa.JSON()))


def downgrade() -> None:
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.drop_column("flash")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        for name in ("left_at", "value_eur", "address", "email", "phone", "name"):
            batch_op.drop_column(name)
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tasks_missed"))
        for name in ("snoozed_until", "attempts", "missed", "flag", "close_reason", "value_tier"):
            batch_op.drop_column(name)
