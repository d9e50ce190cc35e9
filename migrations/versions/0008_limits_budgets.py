"""Budgets and rate limits: `limits` (the rules), `limitcounters` (this minute's requests and tokens per
target; UNLOGGED on PostgreSQL), `budgetspend` (spend per target and budget period) and `budgetalerts`
(one row per crossing of a warning threshold or a spent budget). See docs/limits-design.md.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mindroute.models import new_uuid, utc_now

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "limits",
        sa.Column("id", sa.Uuid(), primary_key=True, server_default=new_uuid()),
        sa.Column("target", sa.String(80), nullable=False),
        sa.Column("scope", sa.String(20), nullable=False),
        sa.Column("setby", sa.String(10), nullable=False, server_default="admin"),
        sa.Column("userid", sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE", name="limits_userid_fkey")),
        sa.Column("apikeyid", sa.Uuid(), sa.ForeignKey("apikeys.id", ondelete="CASCADE", name="limits_apikeyid_fkey")),
        sa.Column(
            "providerid",
            sa.Uuid(),
            sa.ForeignKey("providers.id", ondelete="CASCADE", name="limits_providerid_fkey"),
        ),
        sa.Column("rpm", sa.Integer()),
        sa.Column("tpm", sa.BigInteger()),
        sa.Column("budgetusd", sa.Float()),
        sa.Column("budgettokens", sa.BigInteger()),
        sa.Column("period", sa.String(10), nullable=False, server_default="month"),
        sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"),
        sa.Column("warnpercent", sa.Integer(), nullable=False, server_default="80"),
        sa.Column("createdat", sa.DateTime(), nullable=False, server_default=utc_now()),
        sa.Column("updatedat", sa.DateTime(), nullable=False, server_default=utc_now()),
        sa.UniqueConstraint("target", name="limits_target_key"),
        sa.CheckConstraint("scope IN ('default', 'user', 'key', 'provider')", name="limits_scope_check"),
        sa.CheckConstraint("setby IN ('admin', 'owner')", name="limits_setby_check"),
        sa.CheckConstraint("period IN ('day', 'week', 'month', 'total')", name="limits_period_check"),
        sa.CheckConstraint("warnpercent BETWEEN 1 AND 100", name="limits_warnpercent_check"),
    )
    op.create_index("limits_updatedat_idx", "limits", ["updatedat"])
    unlogged = ["UNLOGGED"] if op.get_bind().dialect.name == "postgresql" else []
    op.create_table(
        "limitcounters",
        sa.Column("counterkey", sa.String(80), primary_key=True),
        sa.Column("windowstart", sa.BigInteger(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("tokens", sa.BigInteger(), nullable=False, server_default="0"),
        prefixes=unlogged,
    )
    op.create_table(
        "budgetspend",
        sa.Column("target", sa.String(80), primary_key=True),
        sa.Column("periodkey", sa.String(120), primary_key=True),
        sa.Column("spentusd", sa.Float(), nullable=False, server_default="0"),
        sa.Column("tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("unpricedcalls", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("updatedat", sa.DateTime(), nullable=False, server_default=utc_now()),
    )
    op.create_table(
        "budgetalerts",
        sa.Column("id", sa.Uuid(), primary_key=True, server_default=new_uuid()),
        sa.Column("limittarget", sa.String(80), nullable=False),
        sa.Column("periodkey", sa.String(120), nullable=False),
        sa.Column("level", sa.String(10), nullable=False),
        sa.Column("metric", sa.String(10), nullable=False),
        sa.Column("budget", sa.Float(), nullable=False),
        sa.Column("spent", sa.Float(), nullable=False),
        sa.Column("createdat", sa.DateTime(), nullable=False, server_default=utc_now()),
        sa.Column("webhookstatus", sa.String(20)),
        sa.Column("webhookat", sa.DateTime()),
        sa.Column("webhookerror", sa.Text()),
        sa.UniqueConstraint(
            "limittarget", "periodkey", "level", "metric", name="budgetalerts_limittarget_periodkey_level_metric_key"
        ),
        sa.CheckConstraint("level IN ('warning', 'spent')", name="budgetalerts_level_check"),
        sa.CheckConstraint("metric IN ('usd', 'tokens')", name="budgetalerts_metric_check"),
    )
    op.create_index("budgetalerts_createdat_idx", "budgetalerts", ["createdat"])


def downgrade() -> None:
    op.drop_table("budgetalerts")
    op.drop_table("budgetspend")
    op.drop_table("limitcounters")
    op.drop_table("limits")
