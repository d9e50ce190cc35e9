"""Two more levels of the usage rollups, so the Usage page reads few rows (README's analytics section).

- usagedailyrollups: the same as usagerollups per UTC day, for the totals of long ranges.
- usagemodelrollups: calls per UTC hour and (provider, model) only, for the page's charts.

Both are kept in step with Logs as calls are written and filled by `rebuild-rollups`; this
migration fills them from usagerollups, which has every dimension of both.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _sums() -> list[sa.Column]:
    return [
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("prompttokens", sa.BigInteger(), nullable=False),
        sa.Column("completiontokens", sa.BigInteger(), nullable=False),
        sa.Column("durationsum", sa.BigInteger(), nullable=False),
        sa.Column("durationcount", sa.BigInteger(), nullable=False),
        sa.Column("latency", sa.LargeBinary(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "usagedailyrollups",
        sa.Column("bucket", sa.DateTime(), nullable=False),
        sa.Column("dimkey", sa.String(64), nullable=False),
        sa.Column("userid", sa.Uuid()),
        sa.Column("providerid", sa.Uuid()),
        sa.Column("modelid", sa.String(100)),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("apikeyid", sa.String(64)),
        sa.Column("statuscode", sa.Integer()),
        *_sums(),
        sa.PrimaryKeyConstraint("bucket", "dimkey", name="usagedailyrollups_pkey"),
    )
    op.create_index("usagedailyrollups_userid_bucket_idx", "usagedailyrollups", ["userid", "bucket"])
    op.create_table(
        "usagemodelrollups",
        sa.Column("bucket", sa.DateTime(), nullable=False),
        sa.Column("dimkey", sa.String(64), nullable=False),
        sa.Column("providerid", sa.Uuid()),
        sa.Column("modelid", sa.String(100)),
        *_sums(),
        sa.PrimaryKeyConstraint("bucket", "dimkey", name="usagemodelrollups_pkey"),
    )
    # Existing rollups (if any) are carried into the new levels by the app's first `rebuild-rollups`;
    # the Usage page reads the new levels, so it is run here for databases that already have data.
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT 1 FROM usagerollups LIMIT 1")).first() is not None:
        from mindroute.analytics.rollups import derive_levels_from_hourly

        derive_levels_from_hourly(bind)


def downgrade() -> None:
    op.drop_table("usagemodelrollups")
    op.drop_table("usagedailyrollups")
