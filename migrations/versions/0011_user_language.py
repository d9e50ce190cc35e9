"""A user's console language: `users.language` ('en', 'ko'; NULL: the browser's, else English).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("language", sa.String(10), nullable=True))
        batch.create_check_constraint("users_language_check", "language IS NULL OR language IN ('en', 'ko')")


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("users_language_check", type_="check")
        batch.drop_column("language")
