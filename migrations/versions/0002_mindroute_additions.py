"""MindRoute's additions to the document's schema (listed in README's schema section).

- providers.protocol: the wire protocol a provider speaks.
- apikeys.prefix: the visible start of a key, to tell keys apart without storing the key.
- loginattempts: sign-in attempts, so throttling survives restarts and spans app processes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mindroute.models import new_uuid, utc_now

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("providers") as batch:
        batch.add_column(sa.Column("protocol", sa.String(30), nullable=False, server_default="openai"))
        batch.create_check_constraint(
            "providers_protocol_check", "protocol IN ('openai', 'anthropic', 'google', 'openai-compatible')"
        )
    with op.batch_alter_table("apikeys") as batch:
        batch.add_column(sa.Column("prefix", sa.String(20), nullable=False, server_default=""))
    op.create_table(
        "loginattempts",
        sa.Column("id", sa.Uuid(), primary_key=True, server_default=new_uuid()),
        sa.Column("email", sa.String(255), nullable=False),
        sa.Column("ip", sa.String(50)),
        sa.Column("succeeded", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("createdat", sa.DateTime(), nullable=False, server_default=utc_now()),
    )
    op.create_index("loginattempts_email_createdat_idx", "loginattempts", ["email", "createdat"])
    op.create_index("loginattempts_ip_createdat_idx", "loginattempts", ["ip", "createdat"])


def downgrade() -> None:
    op.drop_table("loginattempts")
    with op.batch_alter_table("apikeys") as batch:
        batch.drop_column("prefix")
    with op.batch_alter_table("providers") as batch:
        batch.drop_constraint("providers_protocol_check", type_="check")
        batch.drop_column("protocol")
