"""The rcsd studio: author rubrics, preview chains, review them, run rounds and show results.

    rcsd app                        # or scripts/studio.sh; RCSD_HOME=/data/rcsd rcsd app

(`streamlit run app.py` works too, but a fresh server's first visitor arriving by a bookmark such
as /preview then gets Streamlit's file-based sidebar: see rcsd_core/cli/studio_server.py.)

The workspace (rubrics, task sets, chains, runs, reviews) lives under $RCSD_HOME, default
~/rcsd-workspace; the sample rubrics are copied in on first start. Each page is a short script
in pages/ that reads widgets, calls rcsd_core and renders.
"""

import streamlit as st

from rcsd_core.studio.workspace import ensure_workspace, workspace_root

st.set_page_config(page_title="rcsd studio", page_icon=":material/school:", layout="wide")
ensure_workspace(workspace_root())

pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/rubrics.py", title="Rubrics", icon=":material/checklist:"),
    st.Page("pages/tasks.py", title="Task sets", icon=":material/list_alt:"),
    st.Page("pages/preview.py", title="Preview", icon=":material/visibility:"),
    st.Page("pages/review.py", title="Review", icon=":material/rate_review:"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/results.py", title="Results", icon=":material/insights:"),
]
st.sidebar.caption(f"Workspace: `{workspace_root()}`")
st.navigation(pages).run()
