"""A fake OpenAI that answers "after 30 s": it holds the answer until the client closes the request."""

from __future__ import annotations

from tests.providers.fakes import FakeOpenAI, Reply

HOLD_S = 60.0  # far past anything a test waits, so only a closed request ends the wait


class HoldingOpenAI(FakeOpenAI):
    """OpenAI that answers "after 30 s", i.e. only once the client is gone: "hold" sends nothing at
    all, "hold-after-head" the status line and the role chunk, "hold-after-token" also one token."""

    def scenario(self, model: str, given_key: str, stream: bool) -> Reply | None:
        if model == "hold":
            return Reply(json_body={}, delay_s=HOLD_S)
        if stream and model in ("hold-after-head", "hold-after-token"):
            events = self.stream_events(model, ["Hel", "lo"], False)
            head = 2 if model == "hold-after-token" else 1  # the role chunk, and then the first token
            return Reply(events=[b"".join(events[:head]), *events[head:]], event_gap_s=HOLD_S)
        return super().scenario(model, given_key, stream)
