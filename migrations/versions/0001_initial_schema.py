"""The whole schema of the schema document: seven tables, their constraints and indexes.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mindroute.models import JSONType, new_uuid, utc_now

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.Column:
    return sa.Column("id", sa.Uuid(), primary_key=True, server_default=new_uuid())


def _timestamps(updated: bool = True) -> list[sa.Column]:
    cols = [sa.Column("createdat", sa.DateTime(), nullable=False, server_default=utc_now())]
    if updated:
        cols.append(sa.Column("updatedat", sa.DateTime(), nullable=False, server_default=utc_now()))
    return cols


def _fk(column: str, target: str, ondelete: str, nullable: bool) -> sa.Column:
    return sa.Column(column, sa.Uuid(), sa.ForeignKey(target, ondelete=ondelete), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "users",
        _id(),
        sa.Column("email", sa.String(255), nullable=False),
        sa.Column("password", sa.String(255), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(10), nullable=False, server_default="user"),
        sa.Column("isactive", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("lastlogin", sa.DateTime()),
        *_timestamps(),
        sa.UniqueConstraint("email", name="users_email_key"),
        sa.CheckConstraint("role IN ('admin', 'user')", name="users_role_check"),
    )
    op.create_table(
        "refreshtokens",
        _id(),
        _fk("userid", "users.id", "CASCADE", nullable=False),
        sa.Column("token", sa.String(255), nullable=False),
        sa.Column("expiresat", sa.DateTime(), nullable=False),
        sa.Column("isrevoked", sa.Boolean(), nullable=False, server_default=sa.false()),
        *_timestamps(),
        sa.UniqueConstraint("token", name="refreshtokens_token_key"),
    )
    op.create_table(
        "apikeys",
        _id(),
        _fk("userid", "users.id", "CASCADE", nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("lastusedat", sa.DateTime()),
        sa.Column("expiresat", sa.DateTime()),
        *_timestamps(),
        sa.UniqueConstraint("key", name="apikeys_key_key"),
    )
    op.create_table(
        "providers",
        _id(),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("apikey", sa.Text()),
        sa.Column("endpointurl", sa.String(255)),
        sa.Column("allowimages", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("allowvideos", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("allowfiles", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("maxtokens", sa.Integer()),
        sa.Column("settings", JSONType),
        sa.Column("isactive", sa.Boolean(), nullable=False, server_default=sa.true()),
        *_timestamps(),
        sa.UniqueConstraint("name", name="providers_name_key"),
    )
    op.create_table(
        "userproviders",
        _id(),
        _fk("userid", "users.id", "CASCADE", nullable=False),
        _fk("providerid", "providers.id", "CASCADE", nullable=False),
        sa.Column("allowed", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("maxtokensoverride", sa.Integer()),
        sa.Column("settings", JSONType),
        *_timestamps(),
        sa.UniqueConstraint("userid", "providerid", name="userproviders_userid_providerid_key"),
    )
    op.create_table(
        "logs",
        _id(),
        _fk("userid", "users.id", "SET NULL", nullable=True),
        _fk("providerid", "providers.id", "SET NULL", nullable=True),
        sa.Column("modelid", sa.String(100)),
        sa.Column("requesttype", sa.String(50), nullable=False),
        sa.Column("requestbody", JSONType),
        sa.Column("responsebody", JSONType),
        sa.Column("tokensused", sa.Integer()),
        sa.Column("prompttokens", sa.Integer()),
        sa.Column("completiontokens", sa.Integer()),
        sa.Column("statuscode", sa.Integer()),
        sa.Column("errormessage", sa.Text()),
        sa.Column("duration", sa.Integer()),
        sa.Column("ip", sa.String(50)),
        sa.Column("useragent", sa.Text()),
        *_timestamps(updated=False),
    )
    op.create_table(
        "tickets",
        _id(),
        _fk("userid", "users.id", "CASCADE", nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False, server_default="open"),
        sa.Column("adminresponse", sa.Text()),
        _fk("adminid", "users.id", "SET NULL", nullable=True),
        *_timestamps(),
        sa.Column("resolvedat", sa.DateTime()),
        sa.CheckConstraint("status IN ('open', 'in_progress', 'resolved', 'closed')", name="tickets_status_check"),
    )

    # The document's indexes, under the document's names.
    for name, table, column in INDEXES:
        op.create_index(name, table, [column])


INDEXES = [
    ("logs_userid_idx", "logs", "userid"),
    ("logs_providerid_idx", "logs", "providerid"),
    ("logs_createdat_idx", "logs", "createdat"),
    ("logs_modelid_idx", "logs", "modelid"),
    ("refreshtokens_userid_idx", "refreshtokens", "userid"),
    ("refreshtokens_token_idx", "refreshtokens", "token"),
    ("refreshtokens_expiresat_idx", "refreshtokens", "expiresat"),
    ("apikeys_userid_idx", "apikeys", "userid"),
    ("apikeys_key_idx", "apikeys", "key"),
    ("apikeys_expiresat_idx", "apikeys", "expiresat"),
    ("tickets_userid_idx", "tickets", "userid"),
    ("tickets_status_idx", "tickets", "status"),
    ("tickets_createdat_idx", "tickets", "createdat"),
]


def downgrade() -> None:
    for table in ("tickets", "logs", "userproviders", "providers", "apikeys", "refreshtokens", "users"):
        op.drop_table(table)
