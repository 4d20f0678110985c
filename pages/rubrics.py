"""Rubrics: list, create, duplicate, import and export rubrics; edit criteria in a table with
validation beside each row; save as a new immutable version; history with diffs; the teacher's view."""

import pandas as pd
import streamlit as st

from rcsd_core.contracts.config import DEFAULT_MODEL
from rcsd_core.contracts.rubric import dump_rubric, rubric_from_data
from rcsd_core.errors import InputError
from rcsd_core.studio import actions, review_loop, state
from rcsd_core.studio import workspace as ws
from rcsd_core.studio.store import ReviewStore

root = ws.ensure_workspace(ws.workspace_root())

st.title("Rubrics")
names = ws.list_rubrics(root)
selected = state.remembered("rubric", names)   # the rubric the page opens on; duplicated from below

# ---------------------------------------------------------------------------- create / duplicate / import
with st.expander("New, duplicate or import", expanded=not names):
    new_col, dup_col, imp_col = st.columns(3)
    with new_col.form("new-rubric"):
        new_name = st.text_input("New rubric name", placeholder="my-rubric", help="lowercase letters, digits, '-'")
        new_desc = st.text_input("What is it for?")
        if st.form_submit_button("Create"):
            try:
                ws.create_rubric(root, new_name.strip(), new_desc)
                st.session_state["rubric"] = new_name.strip()
                st.rerun()
            except InputError as exc:
                state.show_error(exc)
    with dup_col.form("duplicate-rubric"):
        dup_name = st.text_input("Duplicate the selected rubric as", placeholder="copy-name")
        if st.form_submit_button("Duplicate", disabled=not names):
            try:
                ws.duplicate_rubric(root, selected, dup_name.strip())
                st.session_state["rubric"] = dup_name.strip()
                st.rerun()
            except InputError as exc:
                state.show_error(exc)
    with imp_col:
        upload = st.file_uploader("Import rubric YAML", type=["yaml", "yml"], key="rubric-upload")
        if upload is not None and st.button("Import"):
            try:
                imported = ws.import_rubric(root, upload.getvalue(), upload.name)
                st.session_state["rubric"] = imported.name
                st.rerun()
            except InputError as exc:
                state.show_error(exc)
        task_upload = st.file_uploader("Import task set JSONL", type=["jsonl"], key="task-upload")
        if task_upload is not None and st.button("Import tasks"):
            try:
                st.success(f"Task set `{ws.import_task_set(root, task_upload.getvalue(), task_upload.name)}` imported.")
            except InputError as exc:
                state.show_error(exc)

with st.expander("Draft a rubric with a model (the paper's stage 1)"):
    st.warning(actions.EMBEDDED_WARNING)
    with st.form("draft-rubric"):
        a, b = st.columns(2)
        draft_name = a.text_input("Name of the draft", placeholder="my-task-draft")
        draft_desc = a.text_area("Task description", height=90)
        draft_tasks = b.selectbox("Example prompts and references from", ws.list_task_sets(root) or ["(none)"])
        draft_n = b.number_input("Examples", 1, 8, 3)
        draft_model = b.text_input("Model", value=DEFAULT_MODEL,
                                   help="smollm2-135m-instruct, tiny-random, a local folder or cached hub id")
        go = st.form_submit_button("Draft")
    if go:
        try:
            with st.spinner("Drafting…"):
                result, saved = actions.draft_new_rubric(
                    root, name=draft_name, description=draft_desc, examples=int(draft_n), model_name=draft_model,
                    task_set=None if draft_tasks == "(none)" else draft_tasks)
            for problem in result.errors:
                st.warning(state.plain(problem))
            if saved:
                st.session_state["rubric"] = saved
                st.rerun()
            st.error("The model's reply gave no usable rubric. Its raw text is below; write the criteria "
                     "yourself (New rubric) or try a larger model.")
            st.code(result.raw or "(empty)", language=None, wrap_lines=True)
        except InputError as exc:
            state.show_error(exc)

if not names:
    st.info("No rubrics yet. Create one above.")
    st.stop()

name = state.remembered_select("Rubric", names, "rubric")
history = ws.rubric_versions(root, name)
current = ws.current_version(root, name)
rubric = ws.load_rubric_version(root, name)
st.caption(f"{len(rubric.criteria)} criteria · current version `{current}` · {len(history)} saved versions")

edit_tab, context_tab, history_tab, export_tab = st.tabs(["Edit criteria", "Teacher context", "History", "Export"])

# ---------------------------------------------------------------------------- review items
try:  # "rubric needs work" reviews of this rubric that no saved version answers yet
    open_items = review_loop.needs_work_items(root, ReviewStore(ws.store_path(root)), name)
except InputError as exc:
    state.show_error(exc)
    open_items = []
fix = st.session_state.get("rubric_fix") or {}
focus = next((i for i in open_items if fix.get("rubric") == name and i["review_id"] == fix.get("review_id")), None)

# ---------------------------------------------------------------------------- edit
with edit_tab:
    if focus is not None:
        with st.container(border=True):
            criterion = focus["criterion"] or fix.get("criterion")
            st.markdown(f"**Review #{focus['review_id']} says the rubric needs work"
                        + (f" on `{criterion}`**" if criterion else "**"))
            c_left, c_right = st.columns(2)
            with c_left:
                st.text(f"{focus['reviewer']}: {focus['note'] or '(no note)'}")
                match = next((c for c in rubric.criteria if c.id == criterion), None)
                if match is not None:
                    st.caption(f"Criterion {match.id} (row {rubric.criteria.index(match) + 1} of the table below)")
                    st.text(f"{match.title}\n{match.description}")
            with c_right:
                st.caption(f"Chain {focus['chain_id']}")
                st.code(focus["chain"].get("text") or "(empty)", language=None, wrap_lines=True)
    description = st.text_area("Description", rubric.description, key=f"desc-{name}-{current}", height=80)
    st.markdown("**Criteria** — one row each. A negative weight makes a pitfall (passes when the flaw is present). "
                "Without a check a judge model decides. List fields (flags, terms) are comma-separated.")
    table = pd.DataFrame(ws.criteria_rows(rubric), columns=ws.EDITOR_COLUMNS)
    table.index = range(1, len(table) + 1)      # row numbers as the validation messages count them
    edited = st.data_editor(
        table, key=f"criteria-{name}-{current}", num_rows="dynamic", hide_index=False, width="stretch",
        column_config={
            "id": st.column_config.TextColumn("id", help="[a-z0-9-]+, unique", required=True),
            "title": st.column_config.TextColumn("title"),
            "description": st.column_config.TextColumn("description", width="large",
                                                       help="what the teacher is told"),
            "weight": st.column_config.NumberColumn("weight", help="non-zero; negative = pitfall", format="%g"),
            "check": st.column_config.SelectboxColumn("check", options=ws.CHECK_CHOICES, default="none (judge)"),
            "pattern": st.column_config.TextColumn("pattern", help="regex / not_regex / answer_match"),
            "flags": st.column_config.TextColumn("flags", help="IGNORECASE, MULTILINE, DOTALL"),
            "terms": st.column_config.TextColumn("terms", help="contains: comma-separated"),
            "mode": st.column_config.SelectboxColumn("mode", options=["", "any", "all"]),
            "case_sensitive": st.column_config.CheckboxColumn("case sensitive"),
            "limit": st.column_config.NumberColumn("limit", help="max_words / min_words", step=1),
            "tolerance": st.column_config.NumberColumn("tolerance", help="answer_match, relative", format="%g"),
        })
    examples = st.data_editor(pd.DataFrame([e.model_dump() for e in rubric.examples], columns=["prompt", "answer"]),
                              key=f"examples-{name}-{current}", num_rows="dynamic", width="stretch",
                              column_config={"prompt": st.column_config.TextColumn("worked example: prompt",
                                                                                   width="large"),
                                             "answer": st.column_config.TextColumn("strong answer", width="large")})
    data = ws.rubric_data_from_rows(name, description, edited.to_dict("records"), examples.to_dict("records"))
    problems = ws.row_problems(data)
    if problems:
        st.error(f"{len(problems)} problem{'s' if len(problems) > 1 else ''} to fix before saving "
                 "(row = the editor's row number):")
        st.dataframe(pd.DataFrame(problems), hide_index=True, width="stretch", key="problems")
        draft = None
    else:
        draft = rubric_from_data(data, source="editor")
        if draft.version == current:
            st.success("Valid · no changes from the current version.")
        else:
            st.success(f"Valid · saving creates version `{draft.version}`.")
            note = st.text_input("Note for this version", key=f"note-{name}-{current}")
            answers = st.multiselect(
                "This version answers review items", [i["review_id"] for i in open_items],
                default=[focus["review_id"]] if focus else [], key=f"answers-{name}-{current}",
                format_func=lambda r: next(f"#{i['review_id']} · {i['criterion'] or '?'} · {i['reviewer']}: "
                                           f"{i['note'][:60]}" for i in open_items if i["review_id"] == r),
            ) if open_items else []
            if st.button("Save as new version", type="primary"):
                version = review_loop.save_answering(root, draft, answers, note=note)
                if answers:
                    st.session_state.pop("rubric_fix", None)
                st.toast(f"Saved {name} version {version}")
                st.rerun()
    with st.expander("Propose criteria from reviewed chains (accepted vs rejected)"):
        st.caption("The model reads chains reviewers accepted and rejected under this rubric and proposes criteria "
                   "that separate them. Keep, edit or drop each; kept ones are added as a new version. "
                   + actions.EMBEDDED_WARNING)
        c_model = st.text_input("Model for proposals", value=DEFAULT_MODEL, key=f"contrast-model-{name}")
        if st.button("Propose criteria", key=f"contrast-{name}"):
            try:
                with st.spinner("Drafting…"):
                    result, rows, n_acc, n_rej = review_loop.contrastive_proposals(
                        root, ReviewStore(ws.store_path(root)), name, c_model)
                st.session_state[f"contrast-rows-{name}"] = {"rows": rows, "accepted": n_acc, "rejected": n_rej,
                                                             "errors": result.errors, "raw": result.raw,
                                                             "dropped": result.dropped}
            except InputError as exc:
                state.show_error(exc)
        proposal = st.session_state.get(f"contrast-rows-{name}")
        if proposal:
            for problem in proposal["errors"]:
                st.warning(state.plain(problem))
            if not proposal["rows"]:
                st.error("No usable new criterion came out. The model's raw reply:")
                st.code(proposal["raw"] or "(empty)", language=None, wrap_lines=True)
            else:
                kept = st.data_editor(pd.DataFrame(proposal["rows"]), key=f"contrast-editor-{name}",
                                      hide_index=True, width="stretch")
                if st.button("Add the kept criteria as a new version", key=f"contrast-save-{name}"):
                    try:
                        version = review_loop.add_kept_criteria(root, name, kept.to_dict("records"),
                                                                accepted=proposal["accepted"],
                                                                rejected=proposal["rejected"])
                        st.session_state.pop(f"contrast-rows-{name}", None)
                        st.toast(f"Saved {name} version {version}")
                        st.rerun()
                    except InputError as exc:
                        state.show_error(exc)
    findings = actions.lint_table(draft or rubric)
    with st.expander(f"Lint: {len(findings)} finding{'s' if len(findings) != 1 else ''} "
                     "(preview chains on the Preview page to lint discrimination too)"):
        st.dataframe(findings, hide_index=True, width="stretch")

# ---------------------------------------------------------------------------- teacher context
with context_tab:
    shown = draft if draft is not None else rubric
    task_sets = ws.list_task_sets(root)
    suggested = ws.suggested_task_set(root, name)
    prompt, reference = "Ann has 4 pens and gets 3 more. How many pens does she have now?", None
    if task_sets:
        task_set = st.selectbox("Example task from", task_sets, index=state.index_of(task_sets, suggested))
        tasks = ws.load_task_set(root, task_set)
        task = tasks[st.number_input("Task #", 0, len(tasks) - 1, 0)]
        prompt, reference = task.prompt, task.reference
    include_reference = st.checkbox("Include the reference answer", value=False,
                                    help="On small models the reference often weakens the signal (DESIGN §4).")
    st.caption("What the teacher sees: the rubric, then its worked examples as earlier turns (the student sees "
               "only the last user message)" + (" — from the unsaved edits" if shown is not rubric else ""))
    for message in actions.teacher_view(shown, prompt, reference, include_reference=include_reference):
        system = message["role"] == "system"
        with st.chat_message("assistant" if system else message["role"],
                             avatar=":material/menu_book:" if system else None):
            st.caption(message["role"])
            st.text(message["content"])

# ---------------------------------------------------------------------------- history
with history_tab:
    st.dataframe(pd.DataFrame(history[::-1]), hide_index=True, width="stretch")
    versions = [h["version"] for h in history]
    if len(versions) >= 2:
        a, b = st.columns(2)
        old = a.selectbox("From version", versions, index=len(versions) - 2, key="diff-old")
        new = b.selectbox("To version", versions, index=len(versions) - 1, key="diff-new")
        diff = ws.rubric_diff(root, name, old, new)
        st.code(diff or "(identical)", language="diff")
        sets = [m["id"] for m in ws.list_chain_sets(root) if m.get("rubric") == name]
        if sets and old != new:
            set_id = st.selectbox("Score both on chain set", sets, key="compare-set")
            try:
                st.markdown(f"**{old} vs {new} on the same chains** — pass rates, chains whose verdict changed, "
                            "agreement with the majority human verdict (κ, F1) and the saved signal of each version.")
                st.dataframe(review_loop.version_comparison(root, ReviewStore(ws.store_path(root)), name, old, new,
                                                            set_id), hide_index=True, width="stretch")
            except InputError as exc:
                state.show_error(exc)
        if old != current and st.button(f"Make {old} current again"):
            ws.set_current_version(root, name, old)
            st.rerun()
    else:
        st.caption("Only one version so far; save an edit to see a diff.")

# ---------------------------------------------------------------------------- export
with export_tab:
    text = dump_rubric(rubric)
    st.download_button("Download YAML", text, file_name=f"{name}-{current}.yaml", mime="application/x-yaml")
    st.code(text, language="yaml")
