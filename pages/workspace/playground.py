"""Playground: chat with a provider you may use, in saved conversations or side by side; every call is logged."""

from mindroute.ui.session import require_user

user = require_user()

import streamlit as st  # noqa: E402

from mindroute.i18n import _  # noqa: E402
from mindroute.services.chat import Attachment, ChatMessage, attachment_kind  # noqa: E402
from mindroute.services.conversations import CONTENT_MAX, validate_question, validate_room  # noqa: E402
from mindroute.services.permissions import usable_providers  # noqa: E402
from mindroute.ui import playground_view as view  # noqa: E402
from mindroute.ui.render import form_errors  # noqa: E402
from mindroute.ui.runtime import engine  # noqa: E402

UPLOAD_LIMIT_MB = st.get_option("server.maxUploadSize")

st.title(_("Playground"))

providers = usable_providers(engine(), user)
if not providers:
    if user.role == "admin":
        st.info(_("No provider is set up yet. Add a provider on the Providers page."))
        st.page_link("pages/admin/providers.py", label=_("Providers"), icon=":material/hub:")
    else:
        st.info(_("You may not use any provider yet. Ask an administrator to give you access."))
    st.stop()

view.wait_for_the_last_run()
history = view.load_conversation(user, providers)
settings = view.settings_panel(providers)
side_by_side = st.toggle(_("Side by side"), key="pg_compare", help=_("Send one prompt to two or three models at once"))

if side_by_side:
    targets = view.compare_picker(providers)
    picker_slot = st.empty()
    view.draw_compare_rounds()
    prompt = st.chat_input(_("Message the models side by side"), max_chars=CONTENT_MAX, key="pg_input")
    if prompt is None:
        st.stop()
    if len(targets) < 2:
        picker_slot.error(_("Choose two or three models to compare."))
        st.stop()
    view.compare(user, settings, targets, prompt)

view.conversation_bar(user)
regenerate = st.session_state.pop(view.REGENERATE, False) and bool(history) and history[-1]["role"] == "assistant"
if regenerate:
    history.pop()  # replaced by the new answer, drawn as it arrives
view.draw_history(history)

kinds, accept = view.accepted_files(settings.provider)
placeholder = view.input_placeholder(settings.provider, kinds if accept else [], UPLOAD_LIMIT_MB)
prompt = st.chat_input(
    placeholder,
    accept_file="multiple" if accept else False,
    file_type=accept or None,
    max_chars=CONTENT_MAX,
    key="pg_input",
)
view.downloads(history)

if regenerate:
    view.answer(user, settings, view.chat_messages(settings, history), history, None)
if prompt is None:
    st.stop()

text = prompt if isinstance(prompt, str) else (prompt.text or "")
with form_errors():
    validate_question(text)
    validate_room(len(history))
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
    question = {"role": "user", "text": text, "attachments": [a.label for a in attachments]}
    view.show_message(question, str(len(history)))
    messages = [*view.chat_messages(settings, history), ChatMessage("user", text, attachments)]
    view.answer(user, settings, messages, history, question)
