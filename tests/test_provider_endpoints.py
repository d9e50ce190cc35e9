"""A stored provider key goes only to the host it was entered for; link-local endpoints are refused."""

from __future__ import annotations

import socket
import time

import pytest
from sqlalchemy import select, update

from mindroute import config
from mindroute.db import transaction
from mindroute.models import Provider, User
from mindroute.providers import models_list
from mindroute.services import providers
from mindroute.validation import ValidationError, is_link_local_host, resolves_to_link_local
from tests.test_admin_services import PASSWORD_HASH, add_provider
from tests.test_models_list import GOOD_KEY, serve  # noqa: F401 - the fixture, used by name below

KEY = "sk-proj-SECRETsecret0123456789abcdWXYZ"
ENDPOINT = "https://api.example.com/v1"


@pytest.fixture
def admin(engine) -> User:
    with transaction(engine) as session:
        user = User(email="admin@example.com", name="Admin", role="admin", password=PASSWORD_HASH)
        session.add(user)
    return user


def stored(engine) -> tuple[str, str | None]:
    with transaction(engine) as session:
        provider = session.scalar(select(Provider))
        return provider.endpoint_url, provider.api_key


def save(engine, admin, view, **changes) -> providers.ProviderView:
    with transaction(engine) as session:
        return providers.update_provider(
            session, admin, view.id, expected_updated_at=view.updated_at, **{**view.form_values(), **changes}
        )


@pytest.mark.parametrize(
    "changes",
    [
        {"endpoint_url": "https://attacker.example/v1"},  # host
        {"endpoint_url": "http://api.example.com/v1"},  # scheme
        {"endpoint_url": "https://api.example.com:8443/v1"},  # port
        {"endpoint_url": "https://api.example.com.attacker.example/v1"},
        {"endpoint_url": "", "protocol": "anthropic"},  # blank: the new protocol's default host
    ],
    ids=["host", "scheme", "port", "suffix", "protocol-default"],
)
def test_moving_the_endpoint_to_another_host_needs_the_key_again(engine, admin, changes) -> None:
    with transaction(engine) as session:
        view = add_provider(session, admin, endpoint_url=ENDPOINT, api_key=KEY)
    before = stored(engine)
    with pytest.raises(ValidationError) as err:
        save(engine, admin, view, **changes)
    assert err.value.field == "api_key" and "enter the API key again" in err.value.message
    assert KEY not in err.value.message and "WXYZ" not in err.value.message
    assert stored(engine) == before  # nothing written

    # The same change with the key typed again, or with the stored key removed, is saved.
    view = save(engine, admin, view, api_key="sk-retyped-000000000000005555", **changes)
    assert view.masked_key == "••••5555" and view.endpoint_url != ENDPOINT


@pytest.mark.parametrize(
    "endpoint",
    ["https://api.example.com/v2", "HTTPS://API.EXAMPLE.COM/v1", "https://api.example.com:443/v1/"],
    ids=["path", "case", "default-port"],
)
def test_the_same_host_keeps_the_stored_key(engine, admin, endpoint) -> None:
    with transaction(engine) as session:
        view = add_provider(session, admin, endpoint_url=ENDPOINT, api_key=KEY)
    view = save(engine, admin, view, endpoint_url=endpoint)
    assert view.masked_key == "••••WXYZ"


def test_clearing_the_key_or_having_none_lets_the_host_change(engine, admin) -> None:
    with transaction(engine) as session:
        view = add_provider(session, admin, protocol="openai-compatible", endpoint_url=ENDPOINT, api_key=KEY)
    view = save(engine, admin, view, endpoint_url="https://other.example/v1", clear_api_key=True)
    assert not view.has_key
    view = save(engine, admin, view, endpoint_url="https://third.example/v1")  # no key: nothing to protect
    assert view.endpoint_url == "https://third.example/v1"


def test_test_connection_never_sends_the_stored_key_to_a_new_host(engine, admin, serve) -> None:  # noqa: F811
    """The red-team scenario: the endpoint edited to a host that records what it receives."""
    real, attacker = serve("openai", key=GOOD_KEY), serve("openai", key=GOOD_KEY)
    with transaction(engine) as session:
        view = add_provider(session, admin, endpoint_url=real.endpoint, api_key=GOOD_KEY)
    with pytest.raises(ValidationError):
        save(engine, admin, view, endpoint_url=attacker.endpoint)  # another port of 127.0.0.1
    with transaction(engine) as session:
        conn = providers.provider_connection(session, admin, view.id)
    assert models_list.test_connection(conn.protocol, conn.endpoint_url, conn.api_key).ok
    assert len(real.requests) == 1 and attacker.requests == []


LINK_LOCAL = [
    "http://169.254.169.254/latest/meta-data",
    "http://169.254.1.1:8080/v1",
    "http://[fe80::1]/v1",
    "http://[fe80::1%25eth0]:11434/v1",
    "http://[febf:ffff::1]/v1",
    "http://[::ffff:169.254.169.254]/v1",
    "http://[::ffff:a9fe:a9fe]/v1",
    "http://[64:ff9b::169.254.169.254]/v1",
    "http://2852039166/v1",
    "http://0xa9fea9fe/v1",
    "http://0251.0376.0251.0376/v1",
    "http://169.254.43518/v1",
    "http://169.254.169.254./v1",
]


@pytest.mark.parametrize("url", LINK_LOCAL)
def test_link_local_endpoints_are_refused_when_adding_and_editing(engine, admin, url) -> None:
    with pytest.raises(ValidationError) as err, transaction(engine) as session:
        add_provider(session, admin, protocol="openai-compatible", endpoint_url=url)
    assert err.value.field == "endpoint_url" and "MINDROUTE_ALLOW_LINK_LOCAL_ENDPOINTS" in err.value.message
    with transaction(engine) as session:
        assert session.scalar(select(Provider)) is None
        view = add_provider(session, admin, protocol="openai-compatible", endpoint_url="http://127.0.0.1:11434/v1")
    with pytest.raises(ValidationError) as err:
        save(engine, admin, view, endpoint_url=url)
    assert err.value.field == "endpoint_url"
    assert stored(engine)[0] == "http://127.0.0.1:11434/v1"


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "10.0.0.1", "::1", "fec0::1", "api.openai.com", "169.253.255.255", "169.255.0.1", "1"]
)
def test_other_hosts_are_not_link_local(host) -> None:
    assert not is_link_local_host(host)


def test_an_admin_setting_allows_link_local_endpoints(engine, admin, monkeypatch) -> None:
    monkeypatch.setenv("MINDROUTE_ALLOW_LINK_LOCAL_ENDPOINTS", "1")
    config.get_settings.cache_clear()
    with transaction(engine) as session:
        view = add_provider(session, admin, protocol="openai-compatible", endpoint_url="http://169.254.10.20:8000/v1")
    assert view.endpoint_url == "http://169.254.10.20:8000/v1"


def test_a_stored_link_local_endpoint_is_not_called(engine, admin) -> None:
    """An endpoint saved while the setting allowed it (or before the rule) is refused by test connection."""
    with transaction(engine) as session:
        view = add_provider(session, admin, protocol="openai-compatible", endpoint_url="http://127.0.0.1:9/v1")
        session.execute(update(Provider).values(endpoint_url="http://169.254.169.254/v1"))
    with pytest.raises(ValidationError) as err, transaction(engine) as session:
        providers.provider_connection(session, admin, view.id)
    assert err.value.field == "endpoint_url"


@pytest.mark.parametrize("url", ["http://api.example.com:99999/v1", "http://api.example.com:port/v1"])
def test_an_endpoint_port_that_is_not_a_port_is_refused(engine, admin, url) -> None:
    with pytest.raises(ValidationError) as err, transaction(engine) as session:
        add_provider(session, admin, endpoint_url=url)
    assert err.value.field == "endpoint_url" and "port" in err.value.message


def test_names_are_resolved_once_when_saving() -> None:
    """A name is refused when it resolves to a link-local address now (like 169.254.169.254.nip.io);
    one that does not resolve, or not within the time bound, is not refused for that."""
    assert not resolves_to_link_local("localhost")  # the real resolver: 127.0.0.1 / ::1
    assert not resolves_to_link_local("no-such-host.invalid")

    def metadata_dns(host, port, **_):  # what a resolver answers for 169.254.169.254.nip.io
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 0))]

    def mapped_dns(host, port, **_):
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::ffff:169.254.169.254", 0, 0, 0))]

    def slow_dns(host, port, **_):
        time.sleep(3)
        return metadata_dns(host, port)

    assert resolves_to_link_local("169.254.169.254.nip.io", resolve=metadata_dns)
    assert resolves_to_link_local("metadata.example", resolve=mapped_dns)
    started = time.monotonic()
    assert not resolves_to_link_local("slow.example", resolve=slow_dns, timeout_s=0.2)
    assert time.monotonic() - started < 1
