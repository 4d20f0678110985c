"""Task sets: view and edit a set's tasks in a grid (validated row by row), split it into train and
eval, and save the result as a new set — the older one stays as it was. Import sets on the Rubrics page."""

import pandas as pd
import streamlit as st

from rcsd_core.errors import InputError
from rcsd_core.studio import state, task_sets
from rcsd_core.studio import workspace as ws

root = ws.ensure_workspace(ws.workspace_root())

st.title("Task sets")
names = ws.list_task_sets(root)
if not names:
    st.info("No task sets yet: import one on the Rubrics page (JSONL, CSV, Parquet, HealthBench, RaR, TRL).")
    st.stop()
name = state.remembered_select("Task set", names, "task_set")
tasks = ws.load_task_set(root, name)
counts = task_sets.split_counts(tasks)
st.caption(f"{len(tasks)} tasks · {counts['train']} train · {counts['eval']} eval · "
           f"{sum(bool(t.criteria) for t in tasks)} with their own criteria (edit those on Rubrics → Task criteria)")

grid_key = f"task-grid-{name}"
with st.expander("Split into train and eval"):
    a, b, c = st.columns(3)
    share = a.number_input("Eval share", 0.0, 1.0, 0.25, step=0.05)
    seed = b.number_input("Seed", 0, 2**31 - 1, 0, key=f"split-seed-{name}")
    if c.button("Apply to the grid", help="Replaces the grid's split column; nothing is saved until you save"):
        state.drop_draft(grid_key)
        state.keep_draft(grid_key, task_sets.task_rows(task_sets.split_tasks(tasks, eval_share=share, seed=int(seed))))
        st.rerun()

table = pd.DataFrame(state.draft_base(grid_key, task_sets.task_rows(tasks)), columns=task_sets.GRID_COLUMNS)
edited = st.data_editor(
    table, key=grid_key, num_rows="dynamic", hide_index=True, width="stretch", disabled=["own criteria"],
    column_config={"id": st.column_config.TextColumn("id", required=True),
                   "prompt": st.column_config.TextColumn("prompt", width="large"),
                   "reference": st.column_config.TextColumn("reference"),
                   "split": st.column_config.SelectboxColumn("split", options=list(task_sets.SPLITS),
                                                             default="train")})
rows = edited.to_dict("records")
state.keep_draft(grid_key, rows)
edited_tasks, problems = task_sets.tasks_from_rows(rows, original=tasks)
if problems:
    st.error(f"{len(problems)} problem{'s' if len(problems) > 1 else ''} to fix before saving "
             "(row = the row's position in the table, counting from 1 at the top):")
    st.dataframe(pd.DataFrame(problems), hide_index=True, width="stretch")
elif edited_tasks == tasks:
    st.success("Valid · no changes.")
else:
    new = task_sets.split_counts(edited_tasks)
    st.success(f"Valid · {len(edited_tasks)} tasks ({new['train']} train, {new['eval']} eval).")
    new_name = st.text_input("Save as task set", task_sets.free_name(names, name), key=f"task-save-{name}")
    save, discard = st.columns([1, 4])
    if save.button("Save as a new task set", type="primary"):
        try:
            saved = task_sets.save_new_task_set(root, edited_tasks, new_name=new_name)
            state.drop_draft(grid_key)
            st.session_state["task_set"] = saved
            st.toast(f"Saved task set {saved}; {name} is unchanged")
            st.rerun()
        except InputError as exc:
            state.show_error(exc)
    if discard.button("Discard edits"):
        state.drop_draft(grid_key)
        st.rerun()
