"""Home: what is in the workspace — rubrics, task sets, recent chains and runs — and where to start."""

import pandas as pd
import streamlit as st

from rcsd_core.contracts import runs
from rcsd_core.studio import workspace as ws

root = ws.ensure_workspace(ws.workspace_root())

st.title("rcsd studio")
st.markdown("Rubric-conditioned self-distillation: write a **rubric**, see how the model's own **chains** "
            "score against it criterion by criterion, **review** the doubtful ones, then run a **round** in "
            "which the model, shown the rubric as a teacher, trains its student self — and check what it changed.")

steps = st.columns(5)
for col, (page, label, text) in zip(steps, [
        ("pages/rubrics.py", "1 · Rubrics", "Write and version the criteria."),
        ("pages/preview.py", "2 · Preview", "Sample chains, see pass/fail per criterion."),
        ("pages/review.py", "3 · Review", "Decide flagged chains."),
        ("pages/train.py", "4 · Train", "Launch a round, watch it live."),
        ("pages/results.py", "5 · Results", "Before vs after, report.")]):
    with col.container(border=True):
        st.page_link(page, label=label)
        st.caption(text)

st.subheader("Rubrics")
rows = []
for name in ws.list_rubrics(root):
    rubric = ws.load_rubric_version(root, name)
    rows.append({"rubric": name, "criteria": len(rubric.criteria),
                 "pitfalls": sum(c.is_pitfall for c in rubric.criteria),
                 "judged": sum(c.is_judged for c in rubric.criteria),
                 "versions": len(ws.rubric_versions(root, name)), "current": rubric.version,
                 "task set": ws.suggested_task_set(root, name) or "", "description": rubric.description})
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")

left, right = st.columns(2)
with left:
    st.subheader("Recent previews")
    sets = ws.list_chain_sets(root)[:8]
    if sets:
        st.dataframe(pd.DataFrame(sets)[[c for c in ("id", "rubric", "model", "context", "chains", "time")
                                         if c in sets[0]]], hide_index=True, width="stretch")
    else:
        st.caption("No previews yet — try the Preview page with `tiny-random`.")
with right:
    st.subheader("Recent runs")
    table = runs.list_runs(ws.runs_root(root))
    if len(table):
        st.dataframe(table.head(8), hide_index=True, width="stretch")
    else:
        st.caption("No runs yet — launch one on the Train page.")

st.caption(f"Workspace `{root}` (set `RCSD_HOME` to move it). Rubric versions are immutable; reviews are "
           "appended, never overwritten.")
