"""Every setting is read in one place, from the environment or secrets.toml (the environment wins)."""

from __future__ import annotations

import pytest

from mindroute import config
from mindroute.services import oidc


def test_secrets_toml_is_read_for_the_api_and_operations_settings(tmp_path, monkeypatch) -> None:
    secrets_file = tmp_path / "secrets.toml"
    secrets_file.write_text(
        'MINDROUTE_API_MAX_BODY_BYTES = "2_000_000"\n'
        'MINDROUTE_API_ROUTE_CACHE_S = "2.5"\n'
        'MINDROUTE_LOG_FORMAT = "json"\n'
        'MINDROUTE_LOG_RETENTION_DAYS = "90"\n'
        'MINDROUTE_OIDC_ADMIN_EMAILS = "Boss@Example.com, ops@example.com"\n'
        'MINDROUTE_PASSWORD_SIGNIN = "false"\n'
    )
    monkeypatch.setenv("MINDROUTE_SECRETS_FILE", str(secrets_file))
    monkeypatch.setenv("MINDROUTE_API_ROUTE_CACHE_S", "0")  # the environment wins
    config.get_settings.cache_clear()
    settings = config.get_settings()
    assert settings.api_max_body_bytes == 2_000_000
    assert settings.api_route_cache_s == 0.0
    assert settings.log_format == "json" and settings.log_level == "info"
    assert settings.log_retention_days == 90
    assert settings.password_signin is False
    policy = oidc.policy_from(settings)
    assert policy.admin_emails == frozenset({"boss@example.com", "ops@example.com"})
    assert policy.groups_claim == "groups" and not policy.create_users


def test_the_defaults() -> None:
    settings = config.get_settings()
    assert settings.api_max_body_bytes == 25 * 1024 * 1024
    assert settings.api_route_cache_s == 60.0
    assert settings.log_queue_max == 100_000
    assert (settings.redis_url, settings.alert_webhook_url, settings.metrics_token) == (None, None, None)
    assert settings.log_retention_days is None and settings.password_signin is True


def test_a_redis_url_with_a_password_is_never_echoed(monkeypatch) -> None:
    monkeypatch.setenv("MINDROUTE_REDIS_URL", "http://:hunter2-secret@cache:6379")
    config.get_settings.cache_clear()
    with pytest.raises(config.ConfigError) as err:
        config.get_settings()
    assert "hunter2" not in str(err.value)
