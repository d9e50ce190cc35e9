"""Security primitives and settings: passwords, encryption, keys, validation, configuration."""

from __future__ import annotations

import os
import stat

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import func, select, text

from mindroute import config, security
from mindroute.db import transaction
from mindroute.errors import PermissionDenied
from mindroute.models import User
from mindroute.services import users
from mindroute.validation import ValidationError, normalize_email, validate_endpoint_url, validate_password


def test_password_hash_is_bcrypt_cost_12_and_verifies() -> None:
    hashed = security.hash_password("a fine password")
    assert hashed.startswith("$2b$12$")
    assert security.verify_password("a fine password", hashed)
    assert not security.verify_password("a fine passworD", hashed)
    assert not security.verify_password("anything", None)
    assert not security.verify_password("anything", "not-a-bcrypt-hash")


def test_password_over_72_bytes_is_refused_not_truncated() -> None:
    with pytest.raises(ValidationError, match="at most 72 bytes"):
        validate_password("ä" * 37)  # 74 bytes, 37 characters
    with pytest.raises(ValueError):
        security.hash_password("x" * 73)
    assert validate_password("x" * 72) == "x" * 72


@pytest.mark.parametrize(
    "password,email,message",
    [("short", None, "at least 8"), ("Me@Example.com", "me@example.com", "same as the email"), ("", None, "at least")],
)
def test_password_policy_messages(password, email, message) -> None:
    with pytest.raises(ValidationError, match=message) as err:
        validate_password(password, email=email)
    assert err.value.field == "password"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "plain",
        "a@b",
        "two@@example.com",
        "sp ace@example.com",
        "x" * 250 + "@ex.com",
        "a@..com",
        ".a@x.com",
        "a.@x.com",
        "a@-x-.com",
        "a@x..com",
        '"quoted"@example.com',
        "a@[127.0.0.1]",
        "<script>@example.com",
    ],
)
def test_bad_emails_are_refused(bad) -> None:
    with pytest.raises(ValidationError) as err:
        normalize_email(bad)
    assert err.value.field == "email"
    if bad and len(bad) <= 255:  # (an empty or over-long one has its own message)
        assert err.value.message.startswith("Enter an email address like name@example.com")


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("Ann@Example.COM", "ann@example.com"),
        ("  ann@example.com ", "ann@example.com"),
        ("user@예시.한국", "user@예시.한국"),
        ("홍길동@example.com", "홍길동@example.com"),
        ("first.last+tag@sub.example.co.kr", "first.last+tag@sub.example.co.kr"),
    ],
)
def test_good_emails_are_normalised(typed, stored) -> None:
    assert normalize_email(typed) == stored


@pytest.mark.parametrize("bad", ["ftp://x.example", "javascript:alert(1)", "https://", "https://user:pw@h.example"])
def test_endpoint_urls_must_be_http_without_credentials(bad) -> None:
    with pytest.raises(ValidationError):
        validate_endpoint_url(bad)


def test_secret_box_round_trip_tamper_and_wrong_key() -> None:
    key_a, key_b = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    box = security.SecretBox([key_a])
    ciphertext = box.encrypt("sk-live-abcdef123456")
    assert "sk-live" not in ciphertext and box.decrypt(ciphertext) == "sk-live-abcdef123456"
    tampered = ciphertext[:-6] + ("A" if ciphertext[-6] != "A" else "B") + ciphertext[-5:]
    with pytest.raises(security.DecryptionError) as err:
        box.decrypt(tampered)
    assert ciphertext not in str(err.value) and "sk-live" not in str(err.value)
    with pytest.raises(security.DecryptionError):
        security.SecretBox([key_b]).decrypt(ciphertext)
    rotated = security.SecretBox([key_b, key_a]).rotate(ciphertext)
    assert security.SecretBox([key_b]).decrypt(rotated) == "sk-live-abcdef123456"


def test_mask_shows_only_the_last_four() -> None:
    assert security.mask_secret("sk-live-abcdef12a1b2") == "••••a1b2"
    assert security.mask_secret("short") == "••••"
    assert security.mask_secret(None) == ""


def test_api_keys_are_random_prefixed_and_stored_as_digest() -> None:
    first, second = security.generate_api_key(), security.generate_api_key()
    assert first.plaintext.startswith("mr-") and first.plaintext != second.plaintext
    assert first.digest == security.digest(first.plaintext) and len(first.digest) == 64
    assert first.prefix == first.plaintext[:10] and first.plaintext not in first.digest
    assert security.looks_like_api_key(first.plaintext) and not security.looks_like_api_key("sk-123")


def test_create_user_refuses_bad_input_and_writes_nothing(engine) -> None:
    with transaction(engine) as session:
        users.create_user(session, None, email="Dup@Example.com", name="First", password="password one")
    cases = [
        ({"email": "dup@example.com"}, "email", "already registered"),
        ({"role": "root"}, "role", "Unknown role"),
        ({"password": "y" * 73}, "password", "72 bytes"),
        ({"name": "  "}, "name", "required"),
        ({"name": "n" * 101}, "name", "at most 100"),
    ]
    for override, field, message in cases:
        args = {"email": "new@example.com", "name": "New", "password": "password two", "role": "user", **override}
        with pytest.raises(ValidationError, match=message) as err:
            with transaction(engine) as session:
                users.create_user(session, None, **args)
        assert err.value.field == field
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(User)) == 1
        stored = session.execute(text("SELECT email, password FROM users")).one()
        assert stored.email == "dup@example.com" and stored.password.startswith("$2b$12$")


def test_only_admins_create_users_and_first_admin_only_once(engine) -> None:
    with transaction(engine) as session:
        admin = users.create_first_admin(session, email="root@example.com", name="Root", password="password one")
        plain = users.create_user(session, admin, email="u@example.com", name="U", password="password two")
    with pytest.raises(PermissionDenied):
        with transaction(engine) as session:
            users.create_user(session, plain, email="v@example.com", name="V", password="password three")
    with pytest.raises(PermissionDenied):
        with transaction(engine) as session:
            users.create_first_admin(session, email="w@example.com", name="W", password="password four")


# --- configuration --------------------------------------------------------------------------


def test_default_database_is_a_sqlite_file_in_the_data_folder(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("MINDROUTE_SECRET_KEY")
    settings = config.load_settings()
    assert settings.database_url.get_backend_name() == "sqlite"
    assert settings.database_url.database == str(tmp_path / "data" / "mindroute.db")
    key_file = tmp_path / "data" / "secret.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert settings.secret_keys == (key_file.read_text().strip(),)
    assert config.load_settings().secret_keys == settings.secret_keys  # generated once, then reused


def test_sqlite_runs_with_wal_and_foreign_keys(monkeypatch, tmp_path) -> None:
    from mindroute.db import make_engine

    engine = make_engine(config.load_settings().database_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


@pytest.mark.parametrize(
    "name,value,message",
    [
        ("MINDROUTE_DATABASE_URL", "not a url", "MINDROUTE_DATABASE_URL: not a database URL"),
        ("MINDROUTE_DATABASE_URL", "mysql://x@h/db", "MINDROUTE_DATABASE_URL: unsupported database"),
        ("MINDROUTE_SECRET_KEY", "too-short", "MINDROUTE_SECRET_KEY: key #1 is not a Fernet key"),
        ("MINDROUTE_ALLOW_SIGNUP", "maybe", "MINDROUTE_ALLOW_SIGNUP: expected true or false"),
    ],
)
def test_malformed_settings_name_the_setting(monkeypatch, name, value, message) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(config.ConfigError) as err:
        config.load_settings()
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_environment_wins_over_secrets_toml(monkeypatch, tmp_path) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('MINDROUTE_DATABASE_URL = "sqlite:///from-toml.db"\nMINDROUTE_ALLOW_SIGNUP = "true"\n')
    monkeypatch.setenv("MINDROUTE_SECRETS_FILE", str(secrets))
    settings = config.load_settings()
    assert settings.database_url.database == "from-toml.db" and settings.allow_signup is True
    monkeypatch.setenv("MINDROUTE_DATABASE_URL", "postgresql://u@h/env")
    settings = config.load_settings()
    assert settings.database_url.database == "env"
    assert settings.database_url.drivername == "postgresql+psycopg"


def test_secret_key_list_supports_rotation(monkeypatch) -> None:
    new, old = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv("MINDROUTE_SECRET_KEY", f"{new}, {old}")
    assert config.load_settings().secret_keys == (new, old)
