"""Hourly usage rollups of Logs for the analytics pages (listed in README's analytics section).

- usagerollups: calls per UTC hour and (user, provider, model, source, API key, status code), with
  token and duration sums and a latency histogram (packed bytes). Rebuilt from Logs by `rebuild-rollups`.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "usagerollups",
        sa.Column("bucket", sa.DateTime(), nullable=False),
        sa.Column("dimkey", sa.String(64), nullable=False),
        sa.Column("userid", sa.Uuid()),
        sa.Column("providerid", sa.Uuid()),
        sa.Column("modelid", sa.String(100)),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("apikeyid", sa.String(64)),
        sa.Column("statuscode", sa.Integer()),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("prompttokens", sa.BigInteger(), nullable=False),
        sa.Column("completiontokens", sa.BigInteger(), nullable=False),
        sa.Column("durationsum", sa.BigInteger(), nullable=False),
        sa.Column("durationcount", sa.BigInteger(), nullable=False),
        sa.Column("latency", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "dimkey", name="usagerollups_pkey"),
    )
    op.create_index("usagerollups_userid_bucket_idx", "usagerollups", ["userid", "bucket"])


def downgrade() -> None:
    op.drop_table("usagerollups")
