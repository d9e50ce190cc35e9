"""Stop ends a playground call at once (issue 13, item 12): also before the provider's first byte,
the upstream request is closed (the provider sees it go within a second), and the one Logs row
(499) is written right then. Against a real local server that holds the answer until the client
goes away, on both databases."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from mindroute import security
from mindroute.config import get_settings
from mindroute.db import transaction
from mindroute.models import Log, Provider, User, UserProvider
from mindroute.providers.cancel import is_cancellable
from mindroute.providers.shapes import ChatMessage, ChatRequest
from mindroute.providers.transport_httpx import shared_client
from mindroute.services.call_tracker import Caller
from mindroute.services.chat import StreamingChat, WholeChat
from tests.providers.fakes import OPENAI_KEY, FakeServer, expected_answer
from tests.providers.holding import HoldingOpenAI

CALLER = Caller(source="playground", ip="192.0.2.10", user_agent="pytest")
PROMPT_WAIT_S = 1.0  # "at once": a stop takes effect, and the provider sees the close, within this


@pytest.fixture(scope="module")
def holding() -> Iterator[FakeServer]:
    server = FakeServer(HoldingOpenAI()).start()
    yield server
    server.stop()


@pytest.fixture
def setup(engine, holding):
    holding.fake.reset()
    box = security.SecretBox(get_settings().secret_keys)
    with transaction(engine) as session:
        user = User(email="u@example.com", name="U", password="x")
        provider = Provider(
            name="Slow OpenAI",
            protocol="openai",
            endpoint_url=holding.url + "/v1",
            api_key=box.encrypt(OPENAI_KEY),
            settings={"models": [], "default_model": None, "prices": {}},
        )
        session.add_all([user, provider])
        session.flush()
        session.add(UserProvider(user_id=user.id, provider_id=provider.id, allowed=True))
    return engine, user, provider, holding.fake


def ask(model: str, stream: bool) -> ChatRequest:
    return ChatRequest(model=model, messages=[ChatMessage("user", "are you there?")], stream=stream)


def rows(engine) -> list[Log]:
    with transaction(engine) as session:
        return session.scalars(select(Log)).all()


def wait_until(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def read_for(pieces: Iterator[str | None], seconds: float) -> list[str | None]:
    """What the page does while it waits: take pieces (None = nothing yet) for a while."""
    got: list[str | None] = []
    deadline = time.monotonic() + seconds
    for piece in pieces:
        got.append(piece)
        if time.monotonic() >= deadline:
            break
    return got


def assert_stopped_at_once(engine, fake, call, text: str = "") -> None:
    """finish() (what the page's `finally` runs when Stop interrupts it) returns within a second,
    with the one row written and the upstream request closed."""
    assert rows(engine) == []  # nothing is logged while the call waits
    began = time.monotonic()
    outcome = call.finish()
    assert time.monotonic() - began < PROMPT_WAIT_S
    assert (outcome.status_code, outcome.stopped_by_user, outcome.text) == (499, True, text)
    [row] = rows(engine)  # written by then, exactly one
    assert (row.status_code, row.error_message) == (499, "Stopped by the user")
    if isinstance(call, WholeChat):
        assert row.response_body is None  # no answer at all came
    else:
        assert row.response_body["stopped_by_user"] is True and row.response_body["text"] == text
    assert row.id == outcome.log_id
    assert fake.last.disconnected.wait(PROMPT_WAIT_S)  # the provider saw the request closed
    assert call.finish() is outcome and len(rows(engine)) == 1  # finishing again writes nothing


def test_the_sync_pools_are_cancellable() -> None:
    # The hook in base.shared_client(): without it nothing below can stop before the first byte.
    assert is_cancellable(shared_client("http://127.0.0.1:9/v1"))


def test_stop_before_the_first_byte_closes_the_request_and_logs_499_at_once(setup) -> None:
    engine, user, provider, fake = setup
    call = StreamingChat(engine, user, provider.id, ask("hold", stream=True), CALLER)
    pieces = call.pieces(0.05)
    got = read_for(pieces, 0.5)
    assert got and set(got) == {None}  # the page's thread is never blocked: it hears "nothing yet"
    assert len(fake.requests) == 1 and not fake.last.disconnected.is_set()  # the request is out, waiting
    assert_stopped_at_once(engine, fake, call)


def test_stop_after_the_head_but_before_any_text(setup) -> None:
    engine, user, provider, fake = setup
    call = StreamingChat(engine, user, provider.id, ask("hold-after-head", stream=True), CALLER)
    assert set(read_for(call.pieces(0.05), 0.5)) == {None}
    assert_stopped_at_once(engine, fake, call)


def test_stop_after_the_first_token_keeps_it(setup) -> None:
    engine, user, provider, fake = setup
    call = StreamingChat(engine, user, provider.id, ask("hold-after-token", stream=True), CALLER)
    got = read_for(call.pieces(0.05), 0.5)
    assert [p for p in got if p] == ["Hel"]
    assert_stopped_at_once(engine, fake, call, text="Hel")
    assert rows(engine)[0].response_body["text"] == "Hel"


def test_stop_from_another_thread_wakes_a_read_blocked_on_the_socket(setup) -> None:
    """chunks() read in the caller's own thread: stop() from elsewhere ends its blocked read."""
    engine, user, provider, fake = setup
    call = StreamingChat(engine, user, provider.id, ask("hold", stream=True), CALLER)
    ended = threading.Event()
    got: list[str] = []

    def read() -> None:
        got.extend(call.chunks())
        ended.set()

    threading.Thread(target=read, daemon=True).start()
    wait_until(lambda: len(fake.requests) == 1)
    time.sleep(0.2)
    assert not ended.is_set()
    call.stop()
    assert ended.wait(PROMPT_WAIT_S) and got == []
    assert_stopped_at_once(engine, fake, call)


def test_a_whole_answer_can_be_stopped_too(setup) -> None:
    engine, user, provider, fake = setup
    call = WholeChat(engine, user, provider.id, ask("hold", stream=False), CALLER)
    assert set(read_for(call.pieces(0.05), 0.5)) == {None}
    assert_stopped_at_once(engine, fake, call)


def test_answers_that_come_are_logged_as_before_and_the_pool_still_works(setup) -> None:
    engine, user, provider, _ = setup
    stopped = StreamingChat(engine, user, provider.id, ask("hold", stream=True), CALLER)
    read_for(stopped.pieces(0.05), 0.2)
    stopped.finish()
    streamed = StreamingChat(engine, user, provider.id, ask("fine", stream=True), CALLER)
    try:
        text = "".join(p for p in streamed.pieces(0.05) if p)
    finally:
        streamed_outcome = streamed.finish()
    whole = WholeChat(engine, user, provider.id, ask("fine", stream=False), CALLER)
    try:
        assert set(whole.pieces(0.05)) <= {None}
    finally:
        whole_outcome = whole.finish()
    assert text == streamed_outcome.text == whole_outcome.text == expected_answer("are you there?")
    assert (streamed_outcome.status_code, whole_outcome.status_code) == (200, 200)
    assert not streamed_outcome.stopped_by_user and not whole_outcome.stopped_by_user
    assert sorted(r.status_code for r in rows(engine)) == [200, 200, 499]


def test_a_stop_while_another_call_waits_leaves_that_call_alone(setup) -> None:
    engine, user, provider, fake = setup
    first = StreamingChat(engine, user, provider.id, ask("hold-after-token", stream=True), CALLER)
    second = StreamingChat(engine, user, provider.id, ask("hold-after-token", stream=True), CALLER)
    read_for(first.pieces(0.05), 0.3)
    got_second = read_for(second.pieces(0.05), 0.3)
    wait_until(lambda: len(fake.requests) == 2)
    first.finish()
    assert fake.requests[0].disconnected.wait(PROMPT_WAIT_S)
    time.sleep(0.3)
    assert not fake.requests[1].disconnected.is_set()  # the other caller's request is still open
    assert [p for p in got_second if p] == ["Hel"]
    assert second.finish().text == "Hel"
    assert fake.requests[1].disconnected.wait(PROMPT_WAIT_S)


def test_finishing_from_two_threads_at_once_writes_one_row(setup) -> None:
    engine, user, provider, _ = setup
    call = StreamingChat(engine, user, provider.id, ask("hold", stream=True), CALLER)
    read_for(call.pieces(0.05), 0.2)
    outcomes = []
    threads = [threading.Thread(target=lambda: outcomes.append(call.finish())) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert len(outcomes) == 2 and outcomes[0] is outcomes[1]
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(Log)) == 1
