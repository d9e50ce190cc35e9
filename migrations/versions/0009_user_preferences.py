"""A user's display preferences: `users.timezone` (an IANA zone every time on every page is shown in;
NULL: the browser's) and `users.theme` ('light', 'dark'; NULL: follow the browser).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("timezone", sa.String(64), nullable=True))
        batch.add_column(sa.Column("theme", sa.String(10), nullable=True))
        batch.create_check_constraint("users_theme_check", "theme IS NULL OR theme IN ('light', 'dark')")


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("users_theme_check", type_="check")
        batch.drop_column("theme")
        batch.drop_column("timezone")
