"""Saved Playground conversations: `conversations` (one per conversation, its owner's only) and
`conversationmessages` (its messages in order, with what the page shows under an answer). See
docs/playground-design.md.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mindroute.models import JSONType, new_uuid, utc_now

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", sa.Uuid(), primary_key=True, server_default=new_uuid()),
        sa.Column(
            "userid",
            sa.Uuid(),
            sa.ForeignKey("users.id", ondelete="CASCADE", name="conversations_userid_fkey"),
            nullable=False,
        ),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column(
            "providerid",
            sa.Uuid(),
            sa.ForeignKey("providers.id", ondelete="SET NULL", name="conversations_providerid_fkey"),
        ),
        sa.Column("modelid", sa.String(255)),
        sa.Column("settings", JSONType),
        sa.Column("createdat", sa.DateTime(), nullable=False, server_default=utc_now()),
        sa.Column("updatedat", sa.DateTime(), nullable=False, server_default=utc_now()),
    )
    op.create_index("conversations_userid_updatedat_idx", "conversations", ["userid", "updatedat"])
    op.create_table(
        "conversationmessages",
        sa.Column("id", sa.Uuid(), primary_key=True, server_default=new_uuid()),
        sa.Column(
            "conversationid",
            sa.Uuid(),
            sa.ForeignKey("conversations.id", ondelete="CASCADE", name="conversationmessages_conversationid_fkey"),
            nullable=False,
        ),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("content", sa.Text(), nullable=False, server_default=""),
        sa.Column("meta", JSONType),
        sa.Column("createdat", sa.DateTime(), nullable=False, server_default=utc_now()),
        sa.UniqueConstraint("conversationid", "position", name="conversationmessages_conversationid_position_key"),
        sa.CheckConstraint("role IN ('user', 'assistant')", name="conversationmessages_role_check"),
    )


def downgrade() -> None:
    op.drop_table("conversationmessages")
    op.drop_index("conversations_userid_updatedat_idx", table_name="conversations")
    op.drop_table("conversations")
