"""The Playground's drawing: settings, the saved conversation and its list, an arriving answer, side by side."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from mindroute import i18n
from mindroute.errors import NotFound
from mindroute.i18n import _, _l, _n
from mindroute.models import User
from mindroute.services import conversations
from mindroute.services.call_tracker import Caller, ChatOutcome
from mindroute.services.chat import ChatMessage, ChatRequest, StreamingChat, WholeChat
from mindroute.services.conversations import NewMessage, StoredMessage
from mindroute.services.permissions import LIMIT_FROM_USER, UsableProvider
from mindroute.ui import session as ui_session
from mindroute.ui import viewer
from mindroute.ui.format import tokens
from mindroute.ui.render import MarkdownStream, escape_markdown, form_errors, safe_markdown
from mindroute.ui.runtime import engine
from mindroute.validation import ValidationError

HISTORY = "playground_history"  # the shown conversation's entries (dicts), as drawn
CONVERSATION = "playground_conversation"  # the id (str) the history belongs to; None: a new, unsaved one
COMPARE_ROUNDS = "playground_compare"  # this tab's side-by-side rounds, newest last
REGENERATE = "playground_regenerate"  # set by the Regenerate button's callback, read before drawing
CONFIRM_DELETE = "playground_confirm_delete"
NOTICE = "playground_notice"  # a message for the next run (after a rerun)
STREAM_DONE = "playground_stream_done"
URL_PARAM = "conversation"
NEW = ""  # the conversation list's entry for a new conversation
FINISH_WAIT_S = 10.0
RENDER_EVERY_S = 0.05  # redraw a streaming answer at most 20 times a second
LIMITED = 429  # a rate limit or a spent budget refused the call (or the provider's own rate limit)
POLL_S = 0.1  # while no text arrives, redraw this often: a Stop click takes effect within it
COMPARE_MAX = 3
DEFAULT_TEMPERATURE = 0.7
# Who said it, in the Markdown transcript (a file for reading; the JSON one keeps the role codes).
ROLE_LABELS = {"user": _l("User"), "assistant": _l("Assistant")}
# The kinds of attachment (codes) and how the page names them.
KIND_LABELS = {"images": _l("images"), "videos": _l("videos"), "files": _l("files")}
FILE_TYPES = {
    "images": ["png", "jpg", "jpeg", "gif", "webp"],
    "videos": ["mp4", "mov", "webm"],
    "files": ["pdf", "txt", "md", "csv", "json"],
}

log = logging.getLogger("mindroute.playground")


@dataclass(frozen=True)
class Settings:
    provider: UsableProvider
    model: str
    system_prompt: str
    temperature: float
    max_tokens: int
    stream: bool

    def stored(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "system_prompt": self.system_prompt,
            "stream": self.stream,
        }


# --- the conversation: loaded from the URL, kept in the tab while it is shown --------------------------


def _entry(message: StoredMessage) -> dict[str, Any]:
    meta = message.meta
    if message.role == "user":
        return {"role": "user", "text": message.content, "attachments": list(meta.get("attachments", []))}
    entry = {"role": "assistant", "text": message.content, "pending": False, "duration_ms": 0}
    entry.update(meta)
    return entry


def _new_message(entry: dict[str, Any]) -> NewMessage:
    meta = {k: v for k, v in entry.items() if k not in ("role", "text", "pending", "at")}
    return NewMessage(entry["role"], entry.get("text") or "", meta)


def _restore_settings(detail: conversations.ConversationDetail, providers: list[UsableProvider]) -> None:
    """Put the loaded conversation's provider, model and settings into the settings widgets (before they are drawn)."""
    by_id = {p.id: p for p in providers}
    provider = by_id.get(detail.summary.provider_id)  # type: ignore[arg-type]
    if provider is not None:
        st.session_state["pg_provider"] = str(provider.id)
        model = detail.summary.model_id
        if model and (not provider.models or model in provider.models):
            st.session_state[f"pg_model_{provider.id}"] = model
    saved = detail.settings
    if isinstance(saved.get("temperature"), int | float):
        st.session_state["pg_temperature"] = min(2.0, max(0.0, float(saved["temperature"])))
    if isinstance(saved.get("system_prompt"), str):
        st.session_state["pg_system"] = saved["system_prompt"]
    if isinstance(saved.get("stream"), bool):
        st.session_state["pg_stream"] = saved["stream"]


def load_conversation(user: User, providers: list[UsableProvider]) -> list[dict[str, Any]]:
    """The entries of the conversation the URL names (loaded from the database when the tab does not hold it);
    with no `?conversation=`, the one this tab last showed, else a new one."""
    wanted = st.query_params.get(URL_PARAM)
    held = st.session_state.get(CONVERSATION)
    if wanted is None and held is not None:
        st.query_params[URL_PARAM] = held  # back on the page in the same tab: carry on where it was
        wanted = held
    if wanted is not None and wanted != held:
        try:
            detail = conversations.get_conversation(engine(), user, uuid.UUID(wanted))
        except (ValueError, NotFound):
            st.session_state[NOTICE] = conversations.CONVERSATION_NOT_FOUND
            del st.query_params[URL_PARAM]
            st.session_state[CONVERSATION] = None
            st.session_state[HISTORY] = []
        else:
            st.session_state[CONVERSATION] = wanted
            st.session_state[HISTORY] = [_entry(m) for m in detail.messages]
            _restore_settings(detail, providers)
    return st.session_state.setdefault(HISTORY, [])


def _open(conversation_id: str | None) -> None:
    st.session_state[HISTORY] = []
    st.session_state[CONVERSATION] = None
    st.session_state.pop(CONFIRM_DELETE, None)
    if conversation_id:
        st.query_params[URL_PARAM] = conversation_id  # loaded by load_conversation on this rerun
    elif URL_PARAM in st.query_params:
        del st.query_params[URL_PARAM]


def _picked() -> None:
    _open(st.session_state.get("pg_conversation") or None)


def conversation_bar(user: User) -> None:
    """The list of the user's conversations (newest first) with New, Rename and Delete, at the top of the page."""
    current = st.session_state.get(CONVERSATION)
    saved = conversations.list_conversations(engine(), user)
    ids = [str(c.id) for c in saved]
    by_id = {str(c.id): c for c in saved}
    options = [NEW, *ids] if current not in by_id else ids
    selected = current if current in by_id else NEW
    st.session_state["pg_conversation"] = selected

    def label(option: str) -> str:
        if option == NEW:
            return _("New conversation")
        return f"{by_id[option].title} · {viewer.when(by_id[option].updated_at)}"

    cols = st.columns([5, 1, 1, 1], vertical_alignment="bottom")
    cols[0].selectbox(
        _("Conversation"),
        options,
        index=options.index(selected),
        format_func=label,
        key="pg_conversation",
        on_change=_picked,
    )
    cols[1].button(_("New"), key="pg_new", on_click=_open, args=(None,), disabled=current is None, width="stretch")
    if saved:
        viewer.zone_note()  # the list's times
    shown = by_id.get(current) if current else None
    with cols[2].popover(_("Rename"), disabled=shown is None, width="stretch", key="pg_rename_popover"):
        if shown is not None:
            with st.form("pg_rename_form", border=False):
                title = st.text_input(
                    _("Title"), value=shown.title, max_chars=conversations.TITLE_MAX, key=f"pg_title_{shown.id}"
                )
                title_slot = st.empty()
                if st.form_submit_button(_("Save"), key="pg_rename"):
                    with form_errors({"title": title_slot}):
                        conversations.rename_conversation(engine(), user, shown.id, title)
                        st.session_state[NOTICE] = _l("Renamed.")
                        st.rerun()
    if cols[3].button(_("Delete"), key="pg_delete", disabled=shown is None, width="stretch"):
        st.session_state[CONFIRM_DELETE] = current
    if shown is not None and st.session_state.get(CONFIRM_DELETE) == current:
        st.warning(escape_markdown(_("Delete “{title}” and its messages? This cannot be undone.", title=shown.title)))
        yes, no, _rest = st.columns([1, 1, 6])
        if yes.button(_("Delete"), type="primary", key="pg_delete_confirm"):
            with form_errors():
                conversations.delete_conversation(engine(), user, shown.id)
                _open(None)
                st.session_state[NOTICE] = _l("Conversation deleted.")
                st.rerun()
        if no.button(_("Cancel"), key="pg_delete_cancel"):
            st.session_state.pop(CONFIRM_DELETE, None)
            st.rerun()
    notice = st.session_state.pop(NOTICE, None)
    if notice:
        st.info(escape_markdown(i18n.text(notice)))  # a Message: shown in the reader's language


# --- settings ------------------------------------------------------------------------------------------


def _current(key: str, default: Any) -> Any:
    return st.session_state.get(key, default)


def settings_panel(providers: list[UsableProvider]) -> Settings:
    """Provider, model, temperature, max tokens, system prompt and streaming, in a popover at the top of the page."""
    by_id = {str(p.id): p for p in providers}
    if st.session_state.get("pg_provider") not in by_id:
        st.session_state.pop("pg_provider", None)
    cols = st.columns([1, 4], vertical_alignment="center")
    # Every default below is the widget's current value: the popover's widgets are drawn in the browser only when
    # it opens, from these defaults, so a value set in session_state (a loaded conversation's) must be one of them.
    with cols[0].popover(_("Settings"), icon=":material/tune:", width="stretch"):
        ids = list(by_id)
        chosen = _current("pg_provider", ids[0])
        provider = by_id[
            st.selectbox(
                _("Provider"), ids, index=ids.index(chosen), format_func=lambda i: by_id[i].name, key="pg_provider"
            )
        ]
        model_key = f"pg_model_{provider.id}"
        if provider.models:
            model = _current(model_key, provider.default_model)
            index = provider.models.index(model) if model in provider.models else 0
            model = st.selectbox(_("Model"), provider.models, index=index, key=model_key)
        else:
            model = st.text_input(
                _("Model"),
                value=_current(model_key, provider.default_model or ""),
                key=model_key,
                help=_("This provider accepts any model name"),
            )
        system_prompt = st.text_area(_("System prompt"), value=_current("pg_system", ""), key="pg_system", height=100)
        temperature = st.slider(
            _("Temperature"), 0.0, 2.0, _current("pg_temperature", DEFAULT_TEMPERATURE), 0.1, key="pg_temperature"
        )
        limit = provider.effective_max_tokens
        max_tokens = st.number_input(
            _("Max tokens"),
            min_value=1,
            max_value=limit or 1_000_000,
            value=min(1024, limit or 1024),
            step=64,
            key=f"pg_max_tokens_{provider.id}",
        )
        if limit is not None:
            st.caption(_limit_note(limit, provider.limit_source))
        stream = st.toggle(_("Stream answers"), value=_current("pg_stream", True), key="pg_stream")
    shown_settings = [
        provider.name,
        model or _("no model"),
        _("temperature {value}", value=i18n.number(temperature, digits=1)),
        _n("up to {n} token", "up to {n} tokens", int(max_tokens)),
    ]
    cols[1].caption(escape_markdown(" · ".join(shown_settings)))
    return Settings(provider, model, system_prompt, float(temperature), int(max_tokens), bool(stream))


def _limit_note(limit: int, source: str | None) -> str:
    """Where the per-call token ceiling comes from, as one sentence (the source's own wording is English)."""
    if source == LIMIT_FROM_USER:
        return _("At most {limit} tokens per call: your per-user limit.", limit=limit)
    return _("At most {limit} tokens per call: provider limit.", limit=limit)


# --- one conversation ----------------------------------------------------------------------------------


def outcome_caption(meta: dict) -> str:
    parts = []
    if meta.get("prompt_tokens") is not None or meta.get("completion_tokens") is not None:
        parts.append(
            _(
                "{prompt} in · {completion} out",
                prompt=tokens(meta.get("prompt_tokens")),
                completion=tokens(meta.get("completion_tokens")),
            )
        )
    else:
        parts.append(_("no token counts reported"))
    parts.append(_("{ms} ms", ms=i18n.number(meta.get("duration_ms") or 0)))
    if meta.get("ttft_ms") is not None:
        parts.append(_("first token {ms} ms", ms=i18n.number(meta["ttft_ms"])))
    if meta.get("cost_usd") is not None:
        parts.append("≈ " + i18n.money(meta["cost_usd"], "USD", digits=6))
    if meta.get("stopped"):
        parts.append(_("stopped"))
    return " · ".join(parts)


def error_text(entry: dict) -> str:
    """Why a call gave no (whole) answer, in the reader's language: MindRoute's own refusals are Messages; the
    provider's own words (and an error read back from a saved conversation) are data, framed by a sentence."""
    error = entry["error"]
    if isinstance(error, i18n.Message):
        return i18n.text(error)
    if entry.get("status") == LIMITED:
        return _("The call was refused: {message}", message=error)
    return _("The call failed: {message}", message=error)


def _answer_body(entry: dict, key: str) -> None:
    if entry.get("text"):
        st.markdown(safe_markdown(entry["text"]))
    if entry.get("error") and not entry.get("stopped"):  # a stop is the caption's "stopped"
        if entry.get("status") == LIMITED:  # a limit or budget: which one, and when it resets
            st.warning(escape_markdown(error_text(entry)), icon=":material/hourglass_top:")
        else:
            st.error(escape_markdown(error_text(entry)))
    if entry.get("save_error"):  # the answer came, but the conversation could not keep it
        st.error(escape_markdown(i18n.text(entry["save_error"])))
    st.caption(escape_markdown(f"{entry.get('provider', '')} · {entry.get('model', '')} · " + outcome_caption(entry)))
    if entry.get("text"):
        with st.popover(_("Copy"), icon=":material/content_copy:", key=f"pg_copy_{key}"):
            st.code(entry["text"], language=None, wrap_lines=True)  # the code block's own copy button


def _ask_regenerate() -> None:
    st.session_state[REGENERATE] = True


def show_message(entry: dict, key: str, *, last: bool = False) -> None:
    with st.chat_message(entry["role"]):
        if entry["role"] == "user":
            st.text(entry["text"])  # the user's own words, shown as typed
            for name in entry.get("attachments", []):
                st.caption(escape_markdown(f"📎 {name}"))
        elif entry.get("pending"):  # its run is still ending the call (see FINISH_WAIT_S)
            waiting = _("waiting for the answer to end")
            st.caption(escape_markdown(f"{entry['provider']} · {entry['model']} · {waiting}"))
        else:
            _answer_body(entry, key)
            if last:
                st.button(
                    _("Regenerate"),
                    key="pg_regenerate",
                    icon=":material/refresh:",
                    on_click=_ask_regenerate,
                    help=_("Asks again with the current settings; the new answer replaces this one"),
                )


def wait_for_the_last_run() -> None:
    # A Stop click starts the next run while the interrupted one is still stopping its call and
    # logging it (fast reruns): wait for that, so the history drawn below shows the answer as it ended.
    finishing = st.session_state.get(STREAM_DONE)
    if finishing is not None and not finishing.is_set():
        finishing.wait(timeout=FINISH_WAIT_S)


def draw_history(history: list[dict]) -> None:
    for index, entry in enumerate(history):
        show_message(entry, str(index), last=index == len(history) - 1)


def markdown_transcript(history: list[dict]) -> str:
    """The conversation as Markdown, each message headed by who said it (in the reader's language)."""
    return "\n\n".join(f"**{i18n.text(ROLE_LABELS.get(e['role'], e['role']))}**: {e.get('text', '')}" for e in history)


def downloads(history: list[dict]) -> None:
    transcript = [{k: v for k, v in e.items() if k != "attachment_data"} for e in history]
    cols = st.columns([1, 1, 6])
    cols[0].download_button(
        "Markdown",
        markdown_transcript(transcript),
        file_name="conversation.md",
        mime="text/markdown",
        disabled=not history,
        key="pg_download_md",
    )
    cols[1].download_button(
        "JSON",
        json.dumps(transcript, indent=2, ensure_ascii=False),
        file_name="conversation.json",
        mime="application/json",
        disabled=not history,
        key="pg_download_json",
    )


def input_placeholder(provider: UsableProvider, kinds: list[str], upload_limit_mb: int) -> str:
    """The chat input's placeholder: whom the message goes to, and what may be attached."""
    if not kinds:
        return _("Message {provider}", provider=provider.name)
    return _(
        "Message {provider} (attach {kinds} up to {mb} MB each)",
        provider=provider.name,
        kinds=", ".join(i18n.text(KIND_LABELS[k]) for k in kinds),
        mb=upload_limit_mb,
    )


def accepted_files(provider: UsableProvider) -> tuple[list[str], list[str]]:
    """The kinds of attachment the provider takes and their file extensions."""
    kinds = [
        k
        for k, allowed in (
            ("images", provider.allow_images),
            ("videos", provider.allow_videos),
            ("files", provider.allow_files),
        )
        if allowed
    ]
    return kinds, [ext for kind in kinds for ext in FILE_TYPES[kind]]


def caller() -> Caller:
    # Through the module, so the address is read when the call is made (tests give one in place of AppTest's None).
    return Caller(source="playground", ip=ui_session.client_ip(), user_agent=ui_session.user_agent())


def chat_messages(settings: Settings, history: list[dict]) -> list[ChatMessage]:
    messages = [ChatMessage("system", settings.system_prompt)] if settings.system_prompt.strip() else []
    return messages + [
        ChatMessage("user" if e["role"] == "user" else "assistant", e.get("text", "")) for e in history if e.get("text")
    ]


def _remember(answer: dict, outcome: ChatOutcome) -> None:
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
        log_id=str(outcome.log_id) if outcome.log_id else None,
        pending=False,
    )


def pending_answer(settings: Settings) -> dict[str, Any]:
    return {
        "role": "assistant",
        "provider": settings.provider.name,
        "model": settings.model,
        "at": datetime.now(UTC).isoformat(),
        "pending": True,
    }


def answer(
    user: User,
    settings: Settings,
    messages: list[ChatMessage],
    history: list[dict],
    question: dict | None,
) -> None:
    """Ask for the next answer (`question` None: regenerate the last one), draw it as it arrives, save the exchange
    in the conversation when it ends, and rerun. The conversation gets its id (and the URL) before the call, so
    a Stop mid-answer, which interrupts this run, still saves it under that id."""
    conversation_id = st.session_state.get(CONVERSATION)
    if conversation_id is None:
        conversation_id = st.session_state[CONVERSATION] = str(uuid.uuid4())
        st.query_params[URL_PARAM] = conversation_id
    request = ChatRequest(
        model=settings.model,
        messages=messages,
        temperature=settings.temperature,
        max_tokens=settings.max_tokens,
        stream=settings.stream,
    )
    entry = pending_answer(settings)
    # The question and its answer-to-be go into the conversation before the call starts: a Stop (or
    # any click) interrupts this run, and the next run draws them, the answer as this run's `finally`
    # left it. The run that Stop starts waits for that (STREAM_DONE) before it draws.
    done = st.session_state[STREAM_DONE] = threading.Event()
    history.extend([question, entry] if question is not None else [entry])
    # The upstream call runs in a worker thread (pieces() reads it), so this script thread never
    # blocks on the provider: it draws at least every POLL_S, and each draw is where Streamlit stops
    # an interrupted run, at once, even before the first token.
    try:
        call = (StreamingChat if settings.stream else WholeChat)(
            engine(), user, settings.provider.id, request, caller()
        )
        try:
            with st.chat_message("assistant"):
                st.button(_("Stop"), key="pg_stop", help=_("Stops the answer; what arrived so far is kept and logged"))
                _draw_arriving(call)
        finally:
            # Runs also when "Stop" (or any widget) interrupts the script: the call is stopped (the
            # upstream request closed) and logged now, with what arrived so far.
            _remember(entry, call.finish())
            _save(user, settings, uuid.UUID(conversation_id), question, entry)
    finally:
        if entry["pending"]:  # the call could not even be logged (say the database is away): say so
            entry.update(text="", error=_l("The call ended without an answer"), duration_ms=0, pending=False)
        done.set()
    st.rerun()


def _draw_arriving(call: StreamingChat | WholeChat) -> None:
    slot = st.empty()
    received, shown, shown_for, last_draw, started = "", "", -1, 0.0, time.monotonic()
    stream_view = MarkdownStream()  # safe_markdown, without parsing the whole answer on every redraw
    for piece in call.pieces(POLL_S):
        if piece:
            received += piece
        now = time.monotonic()
        if piece is None or now - last_draw >= RENDER_EVERY_S:
            if not received:
                slot.caption(_("Waiting for the answer… {seconds} s", seconds=round(now - started)))
            else:
                if shown_for != len(received):  # parsed again only when more text came
                    shown, shown_for = stream_view.render(received) + " ▌", len(received)
                slot.markdown(shown)
            last_draw = now


def _save(user: User, settings: Settings, conversation_id: uuid.UUID, question: dict | None, entry: dict) -> None:
    try:
        conversations.save_exchange(
            engine(),
            user,
            conversation_id,
            _new_message(question) if question is not None else None,
            _new_message(entry),
            provider_id=settings.provider.id,
            model_id=settings.model,
            settings=settings.stored(),
            regenerated=question is None,
        )
    except (ValidationError, NotFound) as exc:  # the answer is shown and logged; only keeping it failed
        entry["save_error"] = exc.args[0] if len(exc.args) == 1 else str(exc)  # a Message: translated when shown
    except SQLAlchemyError:
        log.exception("saving a playground exchange failed")
        entry["save_error"] = _l("It could not be saved in the conversation.")


# --- side-by-side --------------------------------------------------------------------------------------


def compare_targets(providers: list[UsableProvider]) -> dict[str, tuple[UsableProvider, str]]:
    """What side-by-side may ask: every model of every usable provider (its default for one without a list)."""
    targets: dict[str, tuple[UsableProvider, str]] = {}
    for provider in providers:
        for model in provider.models or ([provider.default_model] if provider.default_model else []):
            targets[f"{provider.id}|{model}"] = (provider, model)
    return targets


def compare_picker(providers: list[UsableProvider]) -> list[tuple[UsableProvider, str]]:
    targets = compare_targets(providers)
    picked = st.multiselect(
        _("Models side by side"),
        list(targets),
        default=list(targets)[:2],
        format_func=lambda key: f"{targets[key][0].name} · {targets[key][1]}",
        max_selections=COMPARE_MAX,
        key="pg_compare_models",
        placeholder=_("Choose models"),
        help=_(
            "One prompt goes to each, at the same time; each answer is logged as its own call (2 to {most})",
            most=COMPARE_MAX,
        ),
    )
    return [targets[key] for key in picked if key in targets]


def draw_compare_rounds() -> None:
    for index, round_ in enumerate(st.session_state.get(COMPARE_ROUNDS, [])):
        with st.chat_message("user"):
            st.text(round_["question"])
        columns = st.columns(len(round_["answers"]))
        for column, (offset, entry) in zip(columns, enumerate(round_["answers"]), strict=True):
            with column, st.container(border=True):
                st.caption(escape_markdown(f"{entry['provider']} · {entry['model']}"))
                if entry.get("pending"):  # its run is still ending the call (see FINISH_WAIT_S)
                    st.caption(_("Waiting for the answer to end"))
                else:
                    _answer_body(entry, f"cmp_{index}_{offset}")


def compare(user: User, settings: Settings, targets: list[tuple[UsableProvider, str]], question: str) -> None:
    """Send one prompt to each target at once (each a WholeChat: its call starts in a worker thread right away),
    wait with a progress line and a Stop, keep the answers as this tab's newest round and rerun."""
    messages = [ChatMessage("system", settings.system_prompt)] if settings.system_prompt.strip() else []
    messages.append(ChatMessage("user", question))
    entries = [
        {"role": "assistant", "provider": provider.name, "model": model, "pending": True} for provider, model in targets
    ]
    # Kept before the calls start, like a chat answer: a Stop interrupts this run, and the next one (which waits
    # for STREAM_DONE) draws the round as this run's `finally` left it.
    st.session_state.setdefault(COMPARE_ROUNDS, []).append({"question": question, "answers": entries})
    done = st.session_state[STREAM_DONE] = threading.Event()
    calls: list[WholeChat] = []
    try:
        st.button(_("Stop"), key="pg_stop", help=_("Stops every answer still coming; each call is logged"))
        asking = _n("Asking {n} model…", "Asking {n} models…", len(targets))
        with st.status(asking, expanded=False) as status:
            for provider, model in targets:
                request = ChatRequest(
                    model=model,
                    messages=messages,
                    temperature=settings.temperature,
                    max_tokens=settings.max_tokens,
                    stream=False,
                )
                calls.append(WholeChat(engine(), user, provider.id, request, caller()))
            started = time.monotonic()
            for call in calls:
                for _piece in call.pieces(POLL_S):
                    seconds = _("{seconds} s", seconds=round(time.monotonic() - started))
                    status.update(label=f"{asking} {seconds}")
            status.update(label=_("Answered"), state="complete")
    finally:
        try:
            for entry, call in zip(entries, calls, strict=False):  # also when interrupted: each call ends, logged
                _remember(entry, call.finish())
        finally:
            for entry in entries:
                if entry["pending"]:  # never sent (interrupted first), or its row could not be written
                    entry.update(text="", error=_l("The call ended without an answer"), duration_ms=0, pending=False)
            done.set()
    st.rerun()
