"""Page state the studio's pages share: remembered selections, the one model cache, plain-text errors.

    from rcsd_core.studio import state
    name = state.remembered_select("Rubric", names, "rubric")       # what was chosen last, on any page
    model, tokenizer = state.cached_model("tiny-random")           # loaded once per app process
    state.show_error(exc)                                          # an error box with no Markdown in it

Session state holds ids (a rubric name, a run id, a flag id), never models or tensors: models
live in the one `st.cache_resource` below, shared by every page and session. A remembered
selection is kept under its own session key rather than the widget's key, because Streamlit
drops a widget's state when a page that does not draw it runs; the choice then survives page
switches (choose a rubric on Rubrics, find it chosen on Preview).
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import streamlit as st

MODEL_CACHE_ENTRIES = 2  # two models side by side at most (e.g. tiny-random and the embedded default)


# ---------------------------------------------------------------------------- remembered selections


def remembered(key: str, options: Sequence[Any], fallback: Any = None) -> Any:
    """The value remembered under `key` when it is still one of `options`; else `fallback`, else the first."""
    value = st.session_state.get(key)
    if value in options:
        return value
    return fallback if fallback in options else (options[0] if len(options) else None)


def remembered_select(label: str, options: Sequence[Any], key: str, *, container: Any = None,
                      fallback: Any = None, **selectbox: Any) -> Any:
    """A selectbox that opens on the last choice remembered under `key` and remembers the new one.

    `container` is where to draw it (st, a column, the sidebar; default st); `fallback` is the
    choice when nothing valid is remembered (default the first option); other keywords go to
    `selectbox` (format_func, help, key, ...).
    """
    options = list(options)
    default = remembered(key, options, fallback)
    choice = (container or st).selectbox(label, options, index=index_of(options, default), **selectbox)
    st.session_state[key] = choice
    return choice


def index_of(options: Sequence[Any], value: Any) -> int:
    """The position of `value` in `options`, 0 when absent (a selectbox's default index)."""
    options = list(options)
    return options.index(value) if value in options else 0


# ---------------------------------------------------------------------------- the model cache


@st.cache_resource(show_spinner="Loading model…", max_entries=MODEL_CACHE_ENTRIES)
def cached_model(name: str):
    """(model, tokenizer) for a model name, loaded once per app process (torch loads on first call)."""
    from rcsd_core.modeling.models import load_model

    return load_model(name)


# ---------------------------------------------------------------------------- messages

_MARKDOWN_SPECIAL = re.compile(r"([\\`*\[\]<>!#|~$:{}])")


def plain(text: Any) -> str:
    """`text` with the characters Markdown acts on backslash-escaped, so that it shows as typed.

    Streamlit's message boxes (error, warning, info, caption) always render Markdown; user data
    that must go into one (an error naming a file or a field) goes through this first, so it can
    never become a link, an image, a colour or a formula.
    """
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


def show_error(error: Exception | str, *, container: Any = None) -> None:
    """An error box whose message is shown as plain text."""
    (container or st).error(plain(error))

