"""API key revocation and ticket call references and history (listed in README's schema section).

- apikeys.revokedat: when a key stops working by revocation (in the future during a rotation grace).
- tickets.logid: the logged call a ticket is about; the call's deletion only unlinks it.
- ticketmessages: a ticket's history after its first message (follow-ups when it is reopened).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mindroute.models import new_uuid, utc_now

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("apikeys") as batch:
        batch.add_column(sa.Column("revokedat", sa.DateTime()))
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("logid", sa.Uuid()))
        batch.create_foreign_key("tickets_logid_fkey", "logs", ["logid"], ["id"], ondelete="SET NULL")
    op.create_index("tickets_logid_idx", "tickets", ["logid"])
    op.create_table(
        "ticketmessages",
        sa.Column("id", sa.Uuid(), primary_key=True, server_default=new_uuid()),
        sa.Column("ticketid", sa.Uuid(), sa.ForeignKey("tickets.id", ondelete="CASCADE"), nullable=False),
        sa.Column("authorid", sa.Uuid(), sa.ForeignKey("users.id", ondelete="SET NULL")),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("createdat", sa.DateTime(), nullable=False, server_default=utc_now()),
    )
    op.create_index("ticketmessages_ticketid_createdat_idx", "ticketmessages", ["ticketid", "createdat"])


def downgrade() -> None:
    op.drop_table("ticketmessages")
    op.drop_index("tickets_logid_idx", table_name="tickets")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_constraint("tickets_logid_fkey", type_="foreignkey")
        batch.drop_column("logid")
    with op.batch_alter_table("apikeys") as batch:
        batch.drop_column("revokedat")
