"""Review: the queue of flagged chains; decide each (accept / reject / rubric needs work) with a note
and per-criterion verdicts, appended with reviewer and time; history, disagreement, export, calibration."""

import pandas as pd
import streamlit as st

from rcsd_core.errors import InputError
from rcsd_core.studio import actions, exchange, state
from rcsd_core.studio import workspace as ws
from rcsd_core.studio.store import DECISIONS, STATUSES, ReviewStore, disagreements

root = ws.ensure_workspace(ws.workspace_root())
VERDICT_CHOICES = {"—": None, "pass": 1.0, "fail": 0.0}
VERDICT_LABEL = {None: "—", 1.0: "pass", 0.0: "fail"}

st.title("Review")
try:
    store = ReviewStore(ws.store_path(root))
    everything = store.queue()
except InputError as exc:  # a damaged or unreadable review database: say so, keep the studio usable
    state.show_error(exc)
    st.stop()
if everything.empty:
    st.info("Nothing flagged yet. Open a chain on the Preview page and flag it for review.")
    st.stop()

# ---------------------------------------------------------------------------- queue and filters
f1, f2, f3, f4 = st.columns(4)
rubric_filter = f1.selectbox("Rubric", ["(all)"] + sorted(everything["rubric_name"].unique()))
criteria = sorted(c for c in everything["criterion"].dropna().unique())
criterion_filter = f2.selectbox("Criterion", ["(all)"] + criteria)
status_filter = f3.selectbox("Status", ["(all)", *STATUSES], index=1 if (everything["status"] == "open").any() else 0)
reviewer_filter = f4.selectbox("Decided by", ["(anyone)"] + store.reviewers())
queue = store.queue(rubric=None if rubric_filter == "(all)" else rubric_filter,
                    criterion=None if criterion_filter == "(all)" else criterion_filter,
                    status=None if status_filter == "(all)" else status_filter,
                    reviewer=None if reviewer_filter == "(anyone)" else reviewer_filter)
counts = everything["status"].value_counts()
st.caption(" · ".join(f"{s}: {int(counts.get(s, 0))}" for s in STATUSES))
st.dataframe(queue[["id", "status", "chain_id", "rubric_name", "criterion", "reason", "flagged_by", "time",
                    "last_reviewer"]], hide_index=True, width="stretch",
             height=min(36 * (len(queue) + 1) + 2, 260))
if queue.empty:
    st.info("No flags match these filters.")
    st.stop()

# ---------------------------------------------------------------------------- one flag
flag_ids = [int(i) for i in queue["id"]]
flag_id = state.remembered_select("Flag", flag_ids, "flag_id",
                                  format_func=lambda i: f"#{i} · {queue.loc[queue['id'] == i, 'chain_id'].iloc[0]} · "
                                                        f"{queue.loc[queue['id'] == i, 'status'].iloc[0]}")
flag = store.flag(flag_id)
chain = flag["chain"]
latest = flag["latest"] or {}
criterion_ids = list((chain.get("scores") or {}).keys())

left, right = st.columns([3, 2])
with left:
    st.markdown("**Flag**")
    st.text(f"Flagged by {flag['flagged_by']} · {flag['time']} · rubric {flag['rubric_name']}@{flag['rubric_version']}"
            + (f" · criterion {flag['criterion']}" if flag["criterion"] else "") + f"\nReason: {flag['reason']}")
    st.markdown("**Prompt**")
    st.text(f"{chain.get('task_id')} · {chain.get('context', '?')} context\n\n{chain.get('prompt', '')}")
    st.markdown("**Chain**")
    st.code(chain.get("text") or "(empty)", language=None, wrap_lines=True)
    if chain.get("reference"):
        st.text(f"Reference: {chain['reference']}")
with right:
    st.markdown(f"**Status:** `{flag['status']}`")
    with st.form(f"decide-{flag_id}", clear_on_submit=False):
        reviewer = st.text_input("Reviewer", value=st.session_state.get("user", ""))
        decision = st.radio("Decision", DECISIONS, horizontal=True,
                            index=DECISIONS.index(latest["decision"]) if latest.get("decision") in DECISIONS else 0)
        st.caption("Your verdict per criterion (leave — where you do not judge it). Automatic score in brackets.")
        verdicts = {}
        for cid in criterion_ids:
            auto = chain["scores"].get(cid)
            default = VERDICT_LABEL.get((latest.get("verdicts") or {}).get(cid), "—")
            verdicts[cid] = VERDICT_CHOICES[st.selectbox(f"{cid} (auto: {VERDICT_LABEL.get(auto, auto)})",
                                                         list(VERDICT_CHOICES), index=list(VERDICT_CHOICES).index(default),
                                                         key=f"v-{flag_id}-{cid}")]
        note = st.text_area("Note", height=80)
        if st.form_submit_button("Record decision", type="primary"):
            try:
                store.add_review(flag_id, reviewer=reviewer, decision=decision, note=note, verdicts=verdicts)
                st.session_state["user"] = reviewer.strip()
                st.rerun()
            except InputError as exc:
                state.show_error(exc)

history = store.history(flag_id)
if latest:
    differ = disagreements(chain, latest.get("verdicts") or {})
    if differ:
        st.warning("The reviewer disagrees with the automatic score on: " + state.plain(
            ", ".join(f"{d['criterion']} (auto {VERDICT_LABEL[d['auto']]}, human {VERDICT_LABEL[d['human']]})"
                      for d in differ)))
st.subheader("History")
if history:
    st.dataframe(pd.DataFrame([{**{k: h[k] for k in ("time", "reviewer", "decision", "note")},
                                "verdicts": ", ".join(f"{k}: {VERDICT_LABEL.get(v, v)}"
                                                      for k, v in h["verdicts"].items() if v is not None)}
                               for h in history]), hide_index=True, width="stretch")
else:
    st.caption("No decision yet.")

# ---------------------------------------------------------------------------- export and calibration
st.subheader("Export and calibration")
excluded = store.excluded_chain_ids()
st.caption(f"{len(excluded)} rejected chain{' is' if len(excluded) == 1 else 's are'} left out of the Preview "
           "page's pass rates, totals and lint; the export keeps each chain's status.")
st.download_button("Export reviewed chains (JSONL)", store.export_jsonl(), file_name="reviewed-chains.jsonl",
                   mime="application/jsonl")
review_labels = [label for label in exchange.EXPORT_CHOICES if exchange.EXPORT_CHOICES[label][0] != "sdft"]
out_col, button_col = st.columns([2, 1])
review_label = out_col.selectbox("Export for", review_labels, key="review-export-format",
                                 help="TRL data leaves rejected chains out; Argilla and Label Studio get every reviewed "
                                      "chain with the automatic and the human per-criterion verdicts.")
try:
    review_file, review_mime = exchange.export_file_name(review_label, "reviewed-chains")
    button_col.download_button(f"Download {review_label}", exchange.review_export(store, review_label),
                               file_name=review_file, mime=review_mime, key="review-export")
except InputError as exc:
    state.show_error(exc)
calibration = actions.calibration_table(store, None if rubric_filter == "(all)" else rubric_filter)
st.markdown("**Calibration** — agreement of the automatic verdicts with reviewers' per-criterion verdicts "
            "(accuracy and Cohen's kappa, with the 2×2 counts).")
if calibration is None:
    st.caption("Calibration appears once reviewers give per-criterion verdicts on automatically scored criteria.")
else:
    st.dataframe(calibration, hide_index=True, width="stretch")
