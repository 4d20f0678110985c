"""Rubrics: list, create, duplicate, import and export rubrics; edit criteria in a table with
validation beside each row; save as a new immutable version; history with diffs; the teacher's view;
a task's own criteria (extend or replace the shared rubric), edited and saved as a new task set."""

import pandas as pd
import streamlit as st

from rcsd_core.contracts.config import DEFAULT_MODEL
from rcsd_core.contracts.rubric import dump_rubric, rubric_from_data
from rcsd_core.contracts.tasks import rubric_for_task
from rcsd_core.errors import InputError
from rcsd_core.studio import actions, exchange, judging, review_loop, state
from rcsd_core.studio import task_criteria as tc
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

with st.expander("Import a data set: HealthBench, RaR, CSV, Parquet or TRL"):
    st.caption("Tasks with their own criteria (HealthBench, RaR) or a task list (CSV, Parquet, TRL); stored as a "
               "task set with a rubric paired to it. The same importers as `rcsd import`.")
    with st.form("import-dataset"):
        data_upload = st.file_uploader("Data set file", type=exchange.UPLOAD_TYPES, key="dataset-upload")
        data_format = st.selectbox("Format", ["detect", *exchange.IMPORT_FORMATS], key="dataset-format",
                                   help="detect: from the file type and the first record's fields")
        go_import = st.form_submit_button("Import data set")
    if go_import:
        if data_upload is None:
            state.show_error("Choose a file to import.")
        else:
            try:
                task_set, imported_rubric, n = exchange.import_upload(root, data_upload.getvalue(), data_upload.name,
                                                                      data_format)
                st.session_state["rubric"] = imported_rubric
                st.session_state["imported"] = f"Imported {n} tasks as task set {task_set} with rubric {imported_rubric}."
                st.rerun()
            except InputError as exc:
                state.show_error(exc)
if st.session_state.get("imported"):
    st.success(state.plain(st.session_state.pop("imported")))

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

edit_tab, context_tab, task_tab, history_tab, export_tab = st.tabs(
    ["Edit criteria", "Teacher context", "Task criteria", "History", "Export"])
CRITERION_COLUMNS = {
    "id": st.column_config.TextColumn("id", help="[a-z0-9-]+, unique", required=True),
    "title": st.column_config.TextColumn("title"),
    "description": st.column_config.TextColumn("description", width="large", help="what the teacher is told"),
    "weight": st.column_config.NumberColumn("weight", help="non-zero; negative = pitfall", format="%g"),
    "check": st.column_config.SelectboxColumn("check", options=ws.CHECK_CHOICES, default="none (judge)"),
    "pattern": st.column_config.TextColumn("pattern", help="regex / not_regex / answer_match"),
    "flags": st.column_config.TextColumn("flags", help="IGNORECASE, MULTILINE, DOTALL"),
    "terms": st.column_config.TextColumn("terms", help="contains: comma-separated"),
    "mode": st.column_config.SelectboxColumn("mode", options=["", "any", "all"]),
    "case_sensitive": st.column_config.CheckboxColumn("case sensitive"),
    "limit": st.column_config.NumberColumn("limit", help="max_words / min_words", step=1),
    "tolerance": st.column_config.NumberColumn("tolerance", help="answer_match, relative", format="%g"),
    "held_out": st.column_config.CheckboxColumn("held out", help="never shown to the teacher nor counted "
                                                                "in the total; a round watches it"),
}

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
    desc_key, rows_key, examples_key = (f"{kind}-{name}-{current}" for kind in ("desc", "criteria", "examples"))
    description = st.text_area("Description", state.draft_base(desc_key, rubric.description), key=desc_key, height=80)
    state.keep_draft(desc_key, description)
    st.markdown("**Criteria** — one row each. A negative weight makes a pitfall (passes when the flaw is present). "
                "Without a check a judge model decides. List fields (flags, terms) are comma-separated.")
    table = pd.DataFrame(state.draft_base(rows_key, ws.criteria_rows(rubric)), columns=ws.EDITOR_COLUMNS)
    edited = st.data_editor(
        table, key=rows_key, num_rows="dynamic", hide_index=True, width="stretch", column_config=CRITERION_COLUMNS)
    examples = st.data_editor(pd.DataFrame(state.draft_base(examples_key, [e.model_dump() for e in rubric.examples]),
                                           columns=["prompt", "answer"]),
                              key=examples_key, num_rows="dynamic", width="stretch",
                              column_config={"prompt": st.column_config.TextColumn("worked example: prompt",
                                                                                   width="large"),
                                             "answer": st.column_config.TextColumn("strong answer", width="large")})
    rows = edited.to_dict("records")
    state.keep_draft(rows_key, rows)                      # unsaved edits survive a visit to another page
    state.keep_draft(examples_key, examples.to_dict("records"))
    data = ws.rubric_data_from_rows(name, description, rows, examples.to_dict("records"))
    problems = ws.row_problems(data, ws.row_positions(rows))
    if problems:
        st.error(f"{len(problems)} problem{'s' if len(problems) > 1 else ''} to fix before saving "
                 "(row = the row's position in the table, counting from 1 at the top):")
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
                state.drop_draft(desc_key, rows_key, examples_key)
                if answers:
                    st.session_state.pop("rubric_fix", None)
                st.toast(f"Saved {name} version {version}")
                st.rerun()
    if draft is None or draft.version != current:
        st.caption("Unsaved edits are kept while you visit other pages, until you save or discard them.")
        if st.button("Discard unsaved edits"):
            state.drop_draft(desc_key, rows_key, examples_key)
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
    findings = actions.lint_table(draft or rubric, judge_configured=judging.load_choice(root, name).kind != "none")
    with st.expander(f"Lint: {len(findings)} finding{'s' if len(findings) != 1 else ''} "
                     "(preview chains on the Preview page to lint discrimination too)"):
        st.table(findings.set_index("severity"))  # a table wraps long messages; a grid would cut them

# ---------------------------------------------------------------------------- teacher context
with context_tab:
    shown = draft if draft is not None else rubric
    from_edits = shown is not rubric
    task_sets = ws.list_task_sets(root)
    suggested = ws.suggested_task_set(root, name)
    prompt, reference = "Ann has 4 pens and gets 3 more. How many pens does she have now?", None
    if task_sets:
        task_set = st.selectbox("Example task from", task_sets, index=state.index_of(task_sets, suggested))
        tasks = ws.load_task_set(root, task_set)
        task = tasks[st.number_input("Task #", 0, len(tasks) - 1, 0)]
        prompt, reference = task.prompt, task.reference
        try:
            shown = rubric_for_task(shown, task)   # the task's own criteria too, as the teacher reads them
        except InputError as exc:
            state.show_error(exc)
    include_reference = st.checkbox("Include the reference answer", value=False,
                                    help="On small models the reference often weakens the signal (DESIGN §4).")
    st.caption("What the teacher sees: the rubric, then its worked examples as earlier turns (the student sees "
               "only the last user message)" + (" — from the unsaved edits" if from_edits else ""))
    for message in actions.teacher_view(shown, prompt, reference, include_reference=include_reference):
        system = message["role"] == "system"
        with st.chat_message("assistant" if system else message["role"],
                             avatar=":material/menu_book:" if system else None):
            st.caption(message["role"])
            st.text(message["content"])

# ---------------------------------------------------------------------------- a task's own criteria
with task_tab:
    st.caption("A task may carry its own criteria: they **extend** this rubric (the default) or **replace** its "
               "criteria for that task. Scoring, the teacher, signal, lint and rounds use them; views group them "
               "by weight class (essential ≥ 5, important 3–5, optional < 3, pitfall < 0) and by tag. A task set "
               "is never changed in place: an edit is saved as a new task set.")
    all_sets = ws.list_task_sets(root)
    if not all_sets:
        st.info("Import a task set first (above).")
    else:
        if "task-criteria-saved" in st.session_state:   # a set just saved opens next (before its widget exists)
            st.session_state["task-criteria-set"] = st.session_state.pop("task-criteria-saved")
        edit_set = st.selectbox("Task set", all_sets, index=state.index_of(all_sets, ws.suggested_task_set(root, name)),
                                key="task-criteria-set")
        set_tasks = ws.load_task_set(root, edit_set)
        summary = tc.task_set_summary(set_tasks)
        st.caption(f"{summary['with_criteria']} of {summary['tasks']} tasks carry their own criteria "
                   f"({summary['criteria']} in all, {summary['replace']} replacing the rubric's)")
        with st.expander("Draft every task's own criteria with a model (stage 1 per question)"):
            st.warning(actions.EMBEDDED_WARNING)
            with st.form("draft-task-criteria"):
                d1, d2 = st.columns(2)
                td_model = d1.text_input("Model", value=DEFAULT_MODEL, key="task-draft-model")
                td_limit = d1.number_input("Tasks (first N; 0 = all)", 0, 10_000, 0, key="task-draft-limit")
                td_name = d2.text_input("Save the drafts as task set", value=f"{edit_set}-drafted", key="task-draft-name")
                td_desc = d2.text_input("What the tasks are (optional)", value=rubric.description,
                                        key="task-draft-desc")
                td_go = st.form_submit_button("Draft criteria")
            if td_go:
                bar = st.progress(0.0, text="Drafting…")
                try:
                    saved_set, outcomes = actions.draft_task_set_criteria(
                        root, task_set=edit_set, rubric_name=name, model_name=td_model, new_name=td_name,
                        description=td_desc, limit=int(td_limit) or None,
                        progress=lambda d, t: bar.progress(d / t, text=f"Drafted {d}/{t} tasks"))
                    st.success(f"Saved task set `{saved_set}`: {sum(o.criteria > 0 for o in outcomes)} of "
                               f"{len(outcomes)} tasks have criteria. Edit them below before use.")
                    st.dataframe(pd.DataFrame([vars(o) for o in outcomes]), hide_index=True, width="stretch",
                                 key="task-draft-outcomes")
                except InputError as exc:
                    bar.empty()
                    state.show_error(exc)
        marks = {t.id: f"{t.id} · {len(t.criteria)} own criteria ({t.criteria_mode})" if t.criteria else t.id
                 for t in set_tasks}
        task_id = st.selectbox("Task", list(marks), format_func=marks.get, key=f"task-criteria-task-{edit_set}")
        task = next(t for t in set_tasks if t.id == task_id)
        st.text(task.prompt + (f"\nReference: {task.reference}" if task.reference else ""))
        mode = st.radio("Mode", tc.MODES, index=tc.MODES.index(task.criteria_mode), horizontal=True,
                        key=f"task-mode-{edit_set}-{task_id}",
                        help="extend: the rubric's criteria, then these · replace: these alone")
        task_table = pd.DataFrame(tc.task_criteria_rows(task), columns=tc.TASK_EDITOR_COLUMNS)
        task_table.index = range(1, len(task_table) + 1)
        task_edited = st.data_editor(
            task_table, key=f"task-criteria-{edit_set}-{task_id}", num_rows="dynamic", width="stretch",
            column_config={**CRITERION_COLUMNS,
                           "tags": st.column_config.TextColumn("tags", help="comma-separated, e.g. axis:accuracy")})
        task_criteria = tc.criteria_from_rows(task_edited.to_dict("records"))
        task_problems = tc.task_row_problems(task, task_criteria, mode, draft or rubric)
        if task_problems:
            st.error(f"{len(task_problems)} problem{'s' if len(task_problems) > 1 else ''} in this task's criteria "
                     "(row = the editor's row number):")
            st.dataframe(pd.DataFrame(task_problems), hide_index=True, width="stretch", key="task-problems")
        else:
            changed = tc.edited_task(task, task_criteria, mode)
            combined = rubric_for_task(draft or rubric, changed)
            st.success(f"Valid · the teacher and the scorer see {len(combined.criteria)} criteria for this task"
                       + (" · no changes" if changed == task else ""))
            if changed != task:
                save_as = st.text_input("Save as task set", value=f"{edit_set}-edited", key=f"task-save-{edit_set}")
                if st.button("Save as a new task set", type="primary"):
                    try:
                        saved = tc.save_task_set_edit(root, edit_set, set_tasks, task_id, task_criteria, mode,
                                                      new_name=save_as)
                        st.session_state["task-criteria-saved"] = saved
                        st.toast(f"Saved task set {saved}")
                        st.rerun()
                    except InputError as exc:
                        state.show_error(exc)

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
