"""The first-run checklist drawn for administrators, each step linking to its page, until every step is done."""

from __future__ import annotations

import streamlit as st
from sqlalchemy import Engine

from mindroute import i18n
from mindroute.config import PROJECT_ROOT
from mindroute.i18n import _, _l
from mindroute.models import User
from mindroute.services import first_run

# The steps' words, by the service's step key (the service says what is done; the view says it).
STEP_WORDS: dict[str, tuple[i18n.Message, i18n.Message]] = {
    "provider": (_l("Add a provider"), _l("OpenAI, Anthropic, Gemini or any OpenAI-compatible server.")),
    "models": (_l("Refresh its models"), _l("On the provider's Models and prices tab.")),
    "prices": (
        _l("Set prices or use the built-in table"),
        _l("Well-known models have built-in prices; type your own for the others."),
    ),
    "grant": (_l("Grant users access"), _l("Choose who may use which provider.")),
    "key": (_l("Create an API key"), _l("For scripts and tools that speak the OpenAI API.")),
    "call": (_l("Make the first call"), _l("Try a model in the playground, or call the API with the key.")),
}


def step_words(step: first_run.Step) -> tuple[str, str]:
    """A step's title and detail in the reader's language (the service's own English for a step not known here)."""
    words = STEP_WORDS.get(step.key)
    if words is None:
        return str(getattr(step, "title", step.key)), str(getattr(step, "detail", ""))
    return i18n.text(words[0]), i18n.text(words[1])


def render(engine: Engine, user: User) -> None:
    """Draw the checklist for an admin while any step is left; nothing for other roles or once all are done."""
    if user.role != "admin":
        return
    checklist = first_run.steps(engine)
    if first_run.all_done(checklist):
        return
    left = sum(not step.done for step in checklist)
    with st.container(border=True, key="first_run"):
        st.subheader(_("Getting started"))
        st.caption(_("{done} of {total} steps done.", done=len(checklist) - left, total=len(checklist)))
        for number, step in enumerate(checklist, start=1):
            mark = ":material/check_circle:" if step.done else ":material/radio_button_unchecked:"
            title, detail = step_words(step)
            label = (
                _("{number}. {title} (done)", number=number, title=title)
                if step.done
                else _("{number}. {title}", number=number, title=title)
            )
            # An absolute path: page_link resolves a relative one against the entry script's folder.
            st.page_link(str(PROJECT_ROOT / step.page), label=label, icon=mark, help=detail)
