"""The request type (chat, completion, embedding: Logs.requestType) as a dimension of the usage rollups.

Adds `requesttype` (default 'chat') to usagerollups, usagedailyrollups and usagemodelrollups, so the
Usage page can filter and break its numbers down by request type. A row's `dimkey` leaves the request
type out when it is 'chat' (mindroute.analytics.levels), so the existing rows keep their keys; the
UTC days holding Logs rows of any other type (none unless imported) are rebuilt from Logs.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("usagerollups", "usagedailyrollups", "usagemodelrollups")


def _day(value: object) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("requesttype", sa.String(50), nullable=False, server_default="chat"))
    bind = op.get_bind()
    other = sa.text("SELECT createdat FROM logs WHERE requesttype <> 'chat'")
    days = sorted({_day(row[0]) for row in bind.execute(other) if row[0] is not None})
    if days:
        from sqlalchemy.orm import Session

        from mindroute.analytics.rollups import rebuild_days

        session = Session(bind=bind)
        for day in days:
            rebuild_days(session, day, day + timedelta(days=1))
        session.flush()


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("requesttype")
