"""SQLite: the rate-limit counters move to their own file (`<database>-counters`, attached to every connection as
`counters` by mindroute.db), so taking a call's counters never waits for the write lock the Logs writer holds.

The table there is created by each connection (CREATE TABLE IF NOT EXISTS); this revision drops the one in
the database file, which would otherwise be found first. The counts are this minute's only: nothing is
carried over. PostgreSQL and a SQLite database in memory (nothing attached) keep the table where it is.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _counters_attached() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return False
    return any(row[1] == "counters" for row in bind.exec_driver_sql("PRAGMA database_list"))


def upgrade() -> None:
    if _counters_attached():
        op.execute("DROP TABLE IF EXISTS main.limitcounters")


def downgrade() -> None:
    if _counters_attached():
        op.create_table(
            "limitcounters",
            sa.Column("counterkey", sa.String(80), primary_key=True),
            sa.Column("windowstart", sa.BigInteger(), nullable=False),
            sa.Column("requests", sa.Integer(), nullable=False, server_default="0"),
            sa.Column("tokens", sa.BigInteger(), nullable=False, server_default="0"),
            schema="main",
        )
