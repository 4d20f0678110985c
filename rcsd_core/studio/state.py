"""Page state the studio's pages share: remembered selections, dependent selectors, unsaved drafts,
the one model cache, plain-text errors.

    from rcsd_core.studio import state
    name = state.remembered_select("Rubric", names, "rubric")       # what was chosen last, on any page
    name, version, task_set = state.rubric_picker(root, "preview")  # outside a form: they follow each other
    rows = state.draft_base(key, saved_rows); state.keep_draft(key, edited_rows)   # edits survive a page change
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

from rcsd_core.studio import workspace as ws

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


def keyed_select(label: str, options: Sequence[Any], key: str, default: Any = None, *, container: Any = None,
                 **selectbox: Any) -> Any:
    """A selectbox whose identity is its key alone, so a change of its options (another rubric's
    versions) or of its default never resets what the user chose; opens on `default` when nothing
    valid is chosen yet."""
    options = list(options)
    if st.session_state.get(key) not in options:
        st.session_state[key] = default if default in options else (options[0] if options else None)
    return (container or st).selectbox(label, options, key=key, **selectbox)


def rubric_picker(root: Any, page: str, *, columns: Sequence[Any] | None = None,
                  with_version: bool = True) -> tuple[str, str | None, str]:
    """Rubric, version and task set selectors drawn outside a form: (name, version, task set).

    Choosing a rubric updates the version list and opens the task set the rubric was last tried
    on before anything is submitted; a task set the user then picks is theirs until they change
    the rubric again. The rubric is remembered across pages (under "rubric").
    """
    names, task_sets = ws.list_rubrics(root), ws.list_task_sets(root)
    a, b, c = columns or st.columns(3)
    rubric_key, version_key, tasks_key = f"{page}-rubric", f"{page}-version", f"{page}-task-set"

    def follow_rubric():
        chosen = st.session_state[rubric_key]
        st.session_state["rubric"] = chosen
        st.session_state.pop(version_key, None)
        st.session_state[tasks_key] = ws.suggested_task_set(root, chosen) or st.session_state.get(tasks_key)

    name = keyed_select("Rubric", names, rubric_key, remembered("rubric", names), container=a, on_change=follow_rubric)
    st.session_state["rubric"] = name
    version = None
    if with_version:
        current = ws.current_version(root, name)
        versions = [h["version"] for h in ws.rubric_versions(root, name)][::-1] or [current]
        version = keyed_select("Version", versions, version_key, current, container=b,
                               format_func=lambda v: f"{v} (current)" if v == current else v)
    task_set = keyed_select("Task set", task_sets, tasks_key, ws.suggested_task_set(root, name), container=c)
    return name, version, task_set


def index_of(options: Sequence[Any], value: Any) -> int:
    """The position of `value` in `options`, 0 when absent (a selectbox's default index)."""
    options = list(options)
    return options.index(value) if value in options else 0


# ---------------------------------------------------------------------------- unsaved drafts


def draft_base(widget_key: str, initial: Any) -> Any:
    """The data an editor widget opens on: the unsaved draft kept by keep_draft on an earlier visit of
    the page, else `initial`.

    Streamlit forgets a widget's state when a page that does not draw it runs, so unsaved edits
    would vanish on a page change. The draft lives under its own keys instead; it becomes the
    widget's starting data when the page is drawn again, and stays fixed while the widget is live
    (its edits apply on top of the data it was first drawn with).
    """
    base_key, draft_key = f"{widget_key}::base", f"{widget_key}::draft"
    if widget_key not in st.session_state or base_key not in st.session_state:
        st.session_state[base_key] = st.session_state.get(draft_key, initial)
    return st.session_state[base_key]


def keep_draft(widget_key: str, value: Any) -> None:
    """Remember what an editor shows now, for draft_base on the next visit."""
    st.session_state[f"{widget_key}::draft"] = value


def drop_draft(*widget_keys: str) -> None:
    """Forget the drafts (and the widgets' states) of these editors: they reopen on the saved data."""
    for key in widget_keys:
        for k in (key, f"{key}::base", f"{key}::draft"):
            st.session_state.pop(k, None)


# ---------------------------------------------------------------------------- column labels

# the signal table's columns (design.signals.signal_table) as a reader names them
SIGNAL_COLUMNS = {
    "student": st.column_config.NumberColumn("student pass rate", format="%.2f"),
    "teacher": st.column_config.NumberColumn("teacher pass rate", format="%.2f"),
    "gap": st.column_config.NumberColumn("gap (teacher − student)", format="%+.2f"),
    "ci_low": st.column_config.NumberColumn("95% CI low", format="%+.2f"),
    "ci_high": st.column_config.NumberColumn("95% CI high", format="%+.2f"),
    "n": st.column_config.TextColumn("chains (student/teacher)"),
    "div_pass": st.column_config.NumberColumn("divergence · passing chains", format="%.3f"),
    "div_fail": st.column_config.NumberColumn("divergence · failing chains", format="%.3f"),
}


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

