"""The audit trail: `auditlog`, one hash-chained row per admin action or security event (listed in README).

Rows are only ever inserted (mindroute.services.audit); `seq` orders the chain and `hash` is sha256 over
`prevhash` and the row's canonical content, so `python -m mindroute audit verify` finds an edited row.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mindroute.models import JSONType, new_uuid, utc_now

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "auditlog",
        sa.Column("id", sa.Uuid(), primary_key=True, server_default=new_uuid()),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("createdat", sa.DateTime(), nullable=False, server_default=utc_now()),
        sa.Column("actoruserid", sa.Uuid()),
        sa.Column("actorlabel", sa.String(255), nullable=False),
        sa.Column("ip", sa.String(50)),
        sa.Column("useragent", sa.Text()),
        sa.Column("action", sa.String(50), nullable=False),
        sa.Column("targettype", sa.String(50)),
        sa.Column("targetid", sa.String(255)),
        sa.Column("changes", JSONType),
        sa.Column("prevhash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("seq", name="auditlog_seq_key"),
    )
    op.create_index("auditlog_createdat_idx", "auditlog", ["createdat"])
    op.create_index("auditlog_actoruserid_createdat_idx", "auditlog", ["actoruserid", "createdat"])
    op.create_index("auditlog_action_createdat_idx", "auditlog", ["action", "createdat"])
    op.create_index("auditlog_targettype_targetid_idx", "auditlog", ["targettype", "targetid"])


def downgrade() -> None:
    op.drop_table("auditlog")
