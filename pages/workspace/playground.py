"""Playground: chat with a provider you may use; every call lands in the same logs as the API."""

from mindroute.ui.session import require_user

user = require_user()

import json  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

import streamlit as st  # noqa: E402

from mindroute.services.call_tracker import Caller  # noqa: E402
from mindroute.services.chat import (  # noqa: E402
    Attachment,
    ChatMessage,
    ChatRequest,
    StreamingChat,
    WholeChat,
    attachment_kind,
)
from mindroute.services.permissions import usable_providers  # noqa: E402
from mindroute.ui.format import tokens  # noqa: E402
from mindroute.ui.render import MarkdownStream, escape_markdown, safe_markdown  # noqa: E402
from mindroute.ui.runtime import engine  # noqa: E402
from mindroute.ui.session import client_ip, user_agent  # noqa: E402

HISTORY = "playground_history"
UPLOAD_LIMIT_MB = st.get_option("server.maxUploadSize")
STREAM_DONE = "playground_stream_done"
FINISH_WAIT_S = 10.0
RENDER_EVERY_S = 0.05  # redraw a streaming answer at most 20 times a second
LIMITED = 429  # a rate limit or a spent budget refused the call (or the provider's own rate limit)
POLL_S = 0.1  # while no text arrives, redraw this often: a Stop click takes effect within it
FILE_TYPES = {
    "images": ["png", "jpg", "jpeg", "gif", "webp"],
    "videos": ["mp4", "mov", "webm"],
    "files": ["pdf", "txt", "md", "csv", "json"],
}

st.title("Playground")

providers = usable_providers(engine(), user)
if not providers:
    st.info("You may not use any provider yet. Ask an administrator to give you access.")
    st.stop()

by_id = {str(p.id): p for p in providers}
with st.sidebar:
    st.subheader("Settings")
    provider = by_id[st.selectbox("Provider", list(by_id), format_func=lambda i: by_id[i].name, key="pg_provider")]
    if provider.models:
        default_index = (
            provider.models.index(provider.default_model) if provider.default_model in provider.models else 0
        )
        model = st.selectbox("Model", provider.models, index=default_index, key=f"pg_model_{provider.id}")
    else:
        model = st.text_input(
            "Model",
            value=provider.default_model or "",
            key=f"pg_model_{provider.id}",
            help="This provider accepts any model name",
        )
    system_prompt = st.text_area("System prompt", key="pg_system", height=100)
    temperature = st.slider("Temperature", 0.0, 2.0, 0.7, 0.1, key="pg_temperature")
    limit = provider.effective_max_tokens
    max_tokens = st.number_input(
        "Max tokens",
        min_value=1,
        max_value=limit or 1_000_000,
        value=min(1024, limit or 1024),
        step=64,
        key=f"pg_max_tokens_{provider.id}",
    )
    if limit is not None:
        st.caption(f"At most {limit:,} tokens per call: {provider.limit_source}.")
    stream_answers = st.toggle("Stream answers", value=True, key="pg_stream")

# A Stop click starts the next run while the interrupted one is still stopping its call and
# logging it (fast reruns): wait for that, so the history drawn below shows the answer as it ended.
finishing = st.session_state.get(STREAM_DONE)
if finishing is not None and not finishing.is_set():
    finishing.wait(timeout=FINISH_WAIT_S)
history: list[dict] = st.session_state.setdefault(HISTORY, [])


def outcome_caption(meta: dict) -> str:
    parts = []
    if meta.get("prompt_tokens") is not None or meta.get("completion_tokens") is not None:
        parts.append(f"{tokens(meta.get('prompt_tokens'))} in · {tokens(meta.get('completion_tokens'))} out")
    else:
        parts.append("no token counts reported")
    parts.append(f"{meta['duration_ms']:,} ms")
    if meta.get("ttft_ms") is not None:
        parts.append(f"first token {meta['ttft_ms']:,} ms")
    if meta.get("cost_usd") is not None:
        parts.append(f"≈ ${meta['cost_usd']:.6f}")
    if meta.get("stopped"):
        parts.append("stopped")
    return " · ".join(parts)


def show_message(entry: dict) -> None:
    with st.chat_message(entry["role"]):
        if entry["role"] == "user":
            st.text(entry["text"])  # the user's own words, shown as typed
            for name in entry.get("attachments", []):
                st.caption(escape_markdown(f"📎 {name}"))
        elif entry.get("pending"):  # its run is still ending the call (see FINISH_WAIT_S)
            st.caption(escape_markdown(f"{entry['provider']} · {entry['model']} · waiting for the answer to end"))
        else:
            if entry.get("text"):
                st.markdown(safe_markdown(entry["text"]))
            if entry.get("error") and not entry.get("stopped"):  # a stop is the caption's "stopped"
                if entry.get("status") == LIMITED:  # a limit or budget: which one, and when it resets
                    st.warning(escape_markdown(entry["error"]), icon=":material/hourglass_top:")
                else:
                    st.error(escape_markdown(entry["error"]))
            st.caption(escape_markdown(f"{entry['provider']} · {entry['model']} · " + outcome_caption(entry)))


for entry in history:
    show_message(entry)

kinds = [
    k
    for k, allowed in (
        ("images", provider.allow_images),
        ("videos", provider.allow_videos),
        ("files", provider.allow_files),
    )
    if allowed
]
accept = [ext for kind in kinds for ext in FILE_TYPES[kind]]
placeholder = f"Message {provider.name}"
if accept:
    placeholder += f" (attach {', '.join(kinds)} up to {UPLOAD_LIMIT_MB} MB each)"
prompt = st.chat_input(
    placeholder, accept_file="multiple" if accept else False, file_type=accept or None, key="pg_input"
)

cols = st.columns([1, 1, 1, 5])
if cols[0].button("Clear", key="pg_clear", disabled=not history):
    st.session_state[HISTORY] = []
    st.rerun()
transcript = [{k: v for k, v in e.items() if k != "attachment_data"} for e in history]
cols[1].download_button(
    "Markdown",
    "\n\n".join(f"**{e['role']}**: {e.get('text', '')}" for e in transcript),
    file_name="conversation.md",
    mime="text/markdown",
    disabled=not history,
    key="pg_download_md",
)
cols[2].download_button(
    "JSON",
    json.dumps(transcript, indent=2, ensure_ascii=False),
    file_name="conversation.json",
    mime="application/json",
    disabled=not history,
    key="pg_download_json",
)

if prompt is None:
    st.stop()

text = prompt if isinstance(prompt, str) else (prompt.text or "")
uploads = [] if isinstance(prompt, str) else list(prompt.files or [])
attachments = [
    Attachment(
        kind=attachment_kind(f.type or ""),
        mime_type=f.type or "application/octet-stream",
        data=f.getvalue(),
        filename=f.name,
    )
    for f in uploads
]
user_entry = {"role": "user", "text": text, "attachments": [a.label for a in attachments]}
show_message(user_entry)

messages = [ChatMessage("system", system_prompt)] if system_prompt.strip() else []
messages += [
    ChatMessage("user" if e["role"] == "user" else "assistant", e.get("text", "")) for e in history if e.get("text")
]
messages.append(ChatMessage("user", text, attachments))
request = ChatRequest(
    model=model, messages=messages, temperature=temperature, max_tokens=int(max_tokens), stream=stream_answers
)
caller = Caller(source="playground", ip=client_ip(), user_agent=user_agent())
answer = {
    "role": "assistant",
    "provider": provider.name,
    "model": model,
    "at": datetime.now(UTC).isoformat(),
    "pending": True,
}
# The question and its answer-to-be go into the conversation before the call starts: a Stop (or
# any click) interrupts this run, and the next run draws them, the answer as this run's `finally`
# left it. The run that Stop starts waits for that (STREAM_DONE) before it draws.
done = st.session_state[STREAM_DONE] = threading.Event()
history.extend([user_entry, answer])


def remember(outcome) -> None:  # noqa: ANN001 - a ChatOutcome
    # In place, not through st.session_state: this also runs while a Stop click is interrupting
    # the script, when Streamlit refuses session_state writes.
    answer.update(
        text=outcome.text,
        error=outcome.error,
        status=outcome.status_code,
        prompt_tokens=outcome.prompt_tokens,
        completion_tokens=outcome.completion_tokens,
        duration_ms=outcome.duration_ms,
        ttft_ms=outcome.time_to_first_token_ms,
        cost_usd=outcome.cost_usd,
        stopped=outcome.stopped_by_user,
        pending=False,
    )


# The upstream call runs in a worker thread (pieces() reads it), so this script thread never
# blocks on the provider: it draws at least every POLL_S, and each draw is where Streamlit stops
# an interrupted run, at once, even before the first token.
try:
    call = (StreamingChat if stream_answers else WholeChat)(engine(), user, provider.id, request, caller)
    try:
        with st.chat_message("assistant"):
            st.button("Stop", key="pg_stop", help="Stops the answer; what arrived so far is kept and logged")
            slot = st.empty()
            received, shown, shown_for, last_draw, started = "", "", -1, 0.0, time.monotonic()
            stream_view = MarkdownStream()  # safe_markdown, without parsing the whole answer on every redraw
            for piece in call.pieces(POLL_S):
                if piece:
                    received += piece
                now = time.monotonic()
                if piece is None or now - last_draw >= RENDER_EVERY_S:
                    if not received:
                        slot.caption(f"Waiting for the answer… {now - started:.0f} s")
                    else:
                        if shown_for != len(received):  # parsed again only when more text came
                            shown, shown_for = stream_view.render(received) + " ▌", len(received)
                        slot.markdown(shown)
                    last_draw = now
    finally:
        # Runs also when "Stop" (or any widget) interrupts the script: the call is stopped (the
        # upstream request closed) and logged now, with what arrived so far.
        remember(call.finish())
finally:
    if answer["pending"]:  # the call could not even be logged (say the database is away): say so
        answer.update(text="", error="The call ended without an answer", duration_ms=0, pending=False)
    done.set()
st.rerun()
