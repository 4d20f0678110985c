"""Review: review rounds (each reviewer's own queue and progress, others' verdicts hidden until one
submits, agreement per criterion with the disagreeing chains one click away) and the queue of every
flag; decide each chain (accept / reject / rubric needs work) with a note and per-criterion verdicts,
appended with reviewer and time; promote an accepted chain to a worked example; send "rubric needs
work" to the Rubrics editor; history, disagreement, export, calibration."""

import pandas as pd
import streamlit as st

from rcsd_core.contracts.config import DEFAULT_MODEL
from rcsd_core.errors import InputError
from rcsd_core.studio import actions, exchange, review_loop, state
from rcsd_core.studio import workspace as ws
from rcsd_core.studio.store import DECISIONS, STATUSES, ReviewStore, disagreements

root = ws.ensure_workspace(ws.workspace_root())
VERDICT_CHOICES = {"—": None, "pass": 1.0, "fail": 0.0}
VERDICT_LABEL = {None: "—", 1.0: "pass", 0.0: "fail"}

st.title("Review")
try:
    store = ReviewStore(ws.store_path(root))
    everything = store.queue()
    rounds = store.rounds()
except InputError as exc:  # a damaged or unreadable review database: say so, keep the studio usable
    state.show_error(exc)
    st.stop()


def fmt(value) -> str:
    return "—" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def decision_form(flag: dict, *, own: dict | None, reviewer_fixed: str | None = None,
                  advance_key: str | None = None) -> None:
    """The decision form of one flag; `own` is the reviewer's own latest review (its defaults);
    after a decision the selection under `advance_key` is dropped, so the next open chain opens."""
    chain = flag["chain"]
    own = own or {}
    with st.form(f"decide-{flag['id']}-{reviewer_fixed or ''}", clear_on_submit=False):
        if reviewer_fixed:
            reviewer = reviewer_fixed
            st.caption(f"Reviewing as {reviewer}")
        else:
            reviewer = st.text_input("Reviewer", value=st.session_state.get("user", ""))
        decision = st.radio("Decision", DECISIONS, horizontal=True,
                            index=DECISIONS.index(own["decision"]) if own.get("decision") in DECISIONS else 0)
        st.caption("Your verdict per criterion (leave — where you do not judge it). Automatic score in brackets.")
        verdicts = {}
        for cid in (chain.get("scores") or {}):
            auto = chain["scores"].get(cid)
            default = VERDICT_LABEL.get((own.get("verdicts") or {}).get(cid), "—")
            verdicts[cid] = VERDICT_CHOICES[st.selectbox(f"{cid} (auto: {VERDICT_LABEL.get(auto, auto)})",
                                                         list(VERDICT_CHOICES), index=list(VERDICT_CHOICES).index(default),
                                                         key=f"v-{flag['id']}-{cid}-{reviewer_fixed or ''}")]
        note = st.text_area("Note", height=80)
        if st.form_submit_button("Record decision", type="primary"):
            try:
                store.add_review(flag["id"], reviewer=reviewer, decision=decision, note=note, verdicts=verdicts)
                st.session_state["user"] = reviewer.strip()
                if advance_key and not own:
                    st.session_state.pop(advance_key, None)
                st.rerun()
            except InputError as exc:
                state.show_error(exc)


def show_chain(flag: dict) -> None:
    chain = flag["chain"]
    st.markdown("**Flag**")
    st.text(f"Flagged by {flag['flagged_by']} · {flag['time']} · rubric {flag['rubric_name']}@{flag['rubric_version']}"
            + (f" · criterion {flag['criterion']}" if flag["criterion"] else "") + f"\nReason: {flag['reason']}")
    st.markdown("**Prompt**")
    st.text(f"{chain.get('task_id')} · {chain.get('context', '?')} context\n\n{chain.get('prompt', '')}")
    st.markdown("**Chain**")
    st.code(chain.get("text") or "(empty)", language=None, wrap_lines=True)
    if chain.get("reference"):
        st.text(f"Reference: {chain['reference']}")


def history_table(history: list[dict]) -> None:
    if history:
        st.dataframe(pd.DataFrame([{**{k: h[k] for k in ("time", "reviewer", "decision", "note")},
                                    "verdicts": ", ".join(f"{k}: {VERDICT_LABEL.get(v, v)}"
                                                          for k, v in h["verdicts"].items() if v is not None)}
                                   for h in history]), hide_index=True, width="stretch")
    else:
        st.caption("No decision yet.")


def next_steps(flag: dict, user: str) -> None:
    """What a decision leads to: an accepted chain can become a worked example; "rubric needs work"
    opens the Rubrics editor at the criterion with the chain beside it."""
    latest = flag["latest"] or {}
    if latest.get("decision") == "accept":
        try:
            failing = review_loop.example_warnings(flag["chain"], ws.load_rubric_version(root, flag["rubric_name"]))
        except InputError:
            failing = []
        if failing:
            st.warning("As a worked example the teacher would imitate a chain that fails "
                       + state.plain(", ".join(failing)) + " under the automatic checks.")
        if st.button("Promote to worked example", key=f"promote-{flag['id']}",
                     help="a new rubric version with this chain as its first worked example (the teacher sees it)"):
            try:
                version = review_loop.promote_example(root, store, flag["id"], promoted_by=user or latest["reviewer"])
                st.success(f"{flag['rubric_name']} version {version} has this chain as its first worked example.")
            except InputError as exc:
                state.show_error(exc)
    elif latest.get("decision") == "rubric-needs-work":
        criterion = flag["criterion"] or next((c for c, v in latest["verdicts"].items() if v == 0.0), None)
        if st.button("Open in the Rubrics editor", key=f"fix-{flag['id']}"):
            st.session_state["rubric"] = flag["rubric_name"]
            st.session_state["rubric_fix"] = {"rubric": flag["rubric_name"], "review_id": latest["id"],
                                              "flag_id": flag["id"], "criterion": criterion}
            st.switch_page("pages/rubrics.py")


# ---------------------------------------------------------------------------- start a round
chain_sets = ws.list_chain_sets(root)
with st.expander("Start a review round", expanded=False):
    if not chain_sets:
        st.caption("Sample chains on the Preview page first; a round reviews one chain set.")
    else:
        with st.form("new-round"):
            a, b = st.columns(2)
            set_id = a.selectbox("Chain set", [m["id"] for m in chain_sets],
                                 format_func=lambda i: next(f"{m['id']} · {m.get('rubric')} · {m.get('chains')} chains"
                                                            for m in chain_sets if m["id"] == i))
            round_name = a.text_input("Round name", placeholder="round-1")
            reviewers_text = b.text_input("Reviewers (comma-separated)", placeholder="ana, ben, cy")
            overlap = b.number_input("Reviewers per chain (overlap)", 1, 20, 2)
            creator = b.text_input("Created by", value=st.session_state.get("user", ""))
            if st.form_submit_button("Start round"):
                try:
                    new_id = review_loop.start_round(root, store, set_id=set_id, name=round_name,
                                                     reviewers=reviewers_text, overlap=int(overlap), created_by=creator)
                    st.session_state["review_round"] = new_id
                    st.rerun()
                except InputError as exc:
                    state.show_error(exc)

if everything.empty:
    st.info("Nothing flagged yet. Open a chain on the Preview page and flag it for review, "
            "or start a review round over a chain set.")
    st.stop()

mode = st.radio("Show", ["Review round", "All flags"], horizontal=True, key="review_mode") if rounds else "All flags"

# ---------------------------------------------------------------------------- a review round
if mode == "Review round":
    round_ids = [r["id"] for r in rounds]
    round_id = state.remembered_select("Round", round_ids, "review_round",
                                       format_func=lambda i: next(f"{r['name']} · {r['rubric_name']} · {r['n_chains']} "
                                                                  f"chains × {r['overlap']}" for r in rounds
                                                                  if r["id"] == i))
    info = store.round(round_id)
    user = st.text_input("Your name", value=st.session_state.get("user", ""), key="round_user").strip()
    st.session_state["user"] = user
    progress = store.progress(round_id)
    queue_tab, agreement_tab = st.tabs(["My queue", "Agreement"])
    with queue_tab:
        if user not in info["reviewers"]:
            st.info("Reviewers of this round: " + ", ".join(info["reviewers"]) + ". Enter your name to see your queue.")
        else:
            mine = store.reviewer_queue(round_id, user)
            done = int((mine["status"] != "open").sum())
            st.progress(done / max(1, len(mine)))
            st.caption(f"{user}: {done} of {len(mine)} decided")
            st.dataframe(mine, hide_index=True, width="stretch", height=min(36 * (len(mine) + 1) + 2, 260))
            open_ids = [int(i) for i in mine.loc[mine["status"] == "open", "flag_id"]]
            ids = [int(i) for i in mine["flag_id"]]
            key = f"round-flag-{round_id}-{user}"
            if st.session_state.get(key) not in ids:
                st.session_state[key] = open_ids[0] if open_ids else ids[0]
            flag_id = st.selectbox("Chain", ids, key=key,
                                   format_func=lambda i: f"#{i} · {mine.loc[mine['flag_id'] == i, 'chain_id'].iloc[0]}"
                                                         f" · {mine.loc[mine['flag_id'] == i, 'status'].iloc[0]}")
            flag = store.flag(flag_id)
            visible = store.visible_reviews(flag_id, user)
            own = next((h for h in reversed(visible) if h["reviewer"] == user), None)
            left, right = st.columns([3, 2])
            with left:
                show_chain(flag)
            with right:
                st.markdown(f"**Your status:** `{own['decision'] if own else 'open'}`")
                decision_form(flag, own=own, reviewer_fixed=user, advance_key=key)
                if own:
                    next_steps({**flag, "latest": own}, user)
            st.subheader("Reviews of this chain")
            if own:
                history_table(visible)
            else:
                st.caption("Other reviewers' verdicts stay hidden until you record yours.")
    with agreement_tab:
        st.dataframe(progress, hide_index=True, width="stretch")
        mine_open = int(progress.loc[progress["reviewer"] == user, "open"].sum()) if user in info["reviewers"] else 0
        if mine_open:
            st.info(f"The agreement view opens once you have decided all your chains ({mine_open} open), so no "
                    "one sees another's verdicts first.")
        else:
            report = review_loop.round_agreement(store, round_id)
            table = review_loop.agreement_table(report)
            if table.empty:
                st.caption("No per-criterion verdicts in this round yet.")
            else:
                st.markdown("**Agreement per criterion** — Fleiss' κ over chains with the same number of ratings, "
                            "Krippendorff's α over all (missing allowed), and the automatic score against the "
                            "majority verdict (ties left out). Undefined figures are — with the reason in the note.")
                st.dataframe(table, hide_index=True, width="stretch")
                pairs = pd.DataFrame([{"criterion": c, **p} for c, row in report["criteria"].items()
                                      for p in row["pairs"]])
                if len(pairs):
                    st.caption("Cohen's κ per reviewer pair")
                    st.dataframe(pairs, hide_index=True, width="stretch")
                criterion = st.selectbox("Disagreeing chains of", list(report["criteria"]), key="agreement_criterion")
                items = report["criteria"][criterion]["disagreements"]
                if not items:
                    st.caption("No disagreement on this criterion.")
                for item in items:
                    label = (f"{item['chain_id']} · " + ", ".join(f"{r}: {VERDICT_LABEL.get(v, v)}"
                                                                  for r, v in item["ratings"].items())
                             + f" · auto {VERDICT_LABEL.get(item['judge'], item['judge'])}")
                    if st.button(label, key=f"open-dis-{criterion}-{item['flag_id']}"):
                        st.session_state["agreement_flag"] = item["flag_id"]
                shown = st.session_state.get("agreement_flag")
                if shown in store.assignments(round_id)["flag_id"].tolist():
                    flag = store.flag(int(shown))
                    st.subheader(f"Chain {flag['chain_id']}")
                    show_chain(flag)
                    history_table(store.history(int(shown)))
            judged = [c.id for c in review_loop.round_rubric(root, store, round_id).criteria
                      if c.is_judged and c.id in report["criteria"]]
            with st.expander("Teach the judge from the disagreements (judged criteria)"):
                if not judged:
                    st.caption("No judged criterion (one without a check) has reviewer verdicts in this round.")
                else:
                    j1, j2, j3 = st.columns(3)
                    judged_id = j1.selectbox("Judged criterion", judged, key="teach_criterion")
                    judge_model = j2.text_input("Judge model", value=DEFAULT_MODEL, key="teach_model")
                    max_shots = j3.number_input("Few-shot examples at most", 1, 16, 4, key="teach_shots")
                    if st.button("Measure the judge before and after"):
                        try:
                            with st.spinner("Judging…"):
                                model, tokenizer = state.cached_model(judge_model)
                                taught = review_loop.teach_judge(root, store, round_id, judged_id, model, tokenizer,
                                                                 max_shots=int(max_shots))
                            st.session_state["taught_judge"] = taught
                        except InputError as exc:
                            state.show_error(exc)
                    taught = st.session_state.get("taught_judge")
                    if taught and taught["criterion"] == judged_id:
                        st.caption(f"Judge–human agreement on {taught['held_out']} held-out chains; examples from "
                                   f"{len(taught['shots'])} disagreeing chain(s): " + ", ".join(taught["shots"]))
                        st.dataframe(review_loop.before_after_table(taught), hide_index=True, width="stretch")
                        if taught["note"]:
                            st.caption(taught["note"])
            st.download_button("Export this round's reviews (JSONL, for rcsd agreement)",
                               store.export_review_rows_jsonl(round_id=round_id),
                               file_name=f"round-{info['name']}-reviews.jsonl", mime="application/jsonl")
    st.stop()

# ---------------------------------------------------------------------------- queue and filters
everything = store.queue(rounds=False)  # a round's flags are reviewed, and their verdicts shown, in the round
if everything.empty:
    st.info("Every flag belongs to a review round: choose Show → Review round.")
    st.stop()
f1, f2, f3, f4 = st.columns(4)
rubric_filter = f1.selectbox("Rubric", ["(all)"] + sorted(everything["rubric_name"].unique()))
criteria = sorted(c for c in everything["criterion"].dropna().unique())
criterion_filter = f2.selectbox("Criterion", ["(all)"] + criteria)
status_filter = f3.selectbox("Status", ["(all)", *STATUSES], index=1 if (everything["status"] == "open").any() else 0)
reviewer_filter = f4.selectbox("Decided by", ["(anyone)"] + store.reviewers())
queue = store.queue(rubric=None if rubric_filter == "(all)" else rubric_filter,
                    criterion=None if criterion_filter == "(all)" else criterion_filter,
                    status=None if status_filter == "(all)" else status_filter,
                    reviewer=None if reviewer_filter == "(anyone)" else reviewer_filter, rounds=False)
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

left, right = st.columns([3, 2])
with left:
    show_chain(flag)
with right:
    st.markdown(f"**Status:** `{flag['status']}`")
    decision_form(flag, own=latest)
    next_steps(flag, st.session_state.get("user", ""))

history = store.history(flag_id)
if latest:
    differ = disagreements(chain, latest.get("verdicts") or {})
    if differ:
        st.warning("The reviewer disagrees with the automatic score on: " + state.plain(
            ", ".join(f"{d['criterion']} (auto {VERDICT_LABEL[d['auto']]}, human {VERDICT_LABEL[d['human']]})"
                      for d in differ)))
st.subheader("History")
history_table(history)

# ---------------------------------------------------------------------------- export and calibration
st.subheader("Export and calibration")
excluded = store.excluded_chain_ids()
st.caption(f"{len(excluded)} rejected chain{' is' if len(excluded) == 1 else 's are'} left out of the Preview "
           "page's pass rates, totals and lint, and of rejection-SFT targets when a round names this export as "
           "reviewed_chains; the export keeps each chain's status.")
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
