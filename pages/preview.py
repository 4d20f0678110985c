"""Preview: sample the model's own chains in student and teacher context, scored per criterion;
open a chain, see where the rubric pushes it (guidance map), flag it for review; measure signal."""

import pandas as pd
import streamlit as st

from rcsd_core.contracts.config import DEFAULT_MODEL, TINY_RANDOM
from rcsd_core.contracts.tasks import rubric_for_task
from rcsd_core.errors import InputError
from rcsd_core.studio import actions, background, charts, judging, state
from rcsd_core.studio import workspace as ws
from rcsd_core.studio.store import ReviewStore

root = ws.ensure_workspace(ws.workspace_root())
MODELS = [DEFAULT_MODEL, TINY_RANDOM, "local path or cached hub id…"]

st.title("Preview")
names = ws.list_rubrics(root)
task_sets = ws.list_task_sets(root)
if not names or not task_sets:
    st.info("Add a rubric and a task set on the Rubrics page first.")
    st.stop()

# ---------------------------------------------------------------------------- settings
name, version, task_set = state.rubric_picker(root, "preview")
with st.form("preview-settings"):
    b, c = st.columns(2)
    limit = b.number_input("Tasks (first N of the train split)", 1, 200, 4)
    model_choice = c.selectbox("Model", MODELS, help="tiny-random has random weights: for trying the studio fast")
    model_path = c.text_input("Model path / id (when 'local path' is chosen)")
    d, e, f, g = st.columns(4)
    samples = d.number_input("Samples per task", 1, 32, 2)
    max_new_tokens = e.number_input("Max new tokens", 8, 1024, 48)
    context = f.radio("Context", ["both", "student", "teacher"], horizontal=True)
    seed = g.number_input("Seed", 0, 2**31 - 1, 0)
    remembered_judge = judging.load_choice(root, name)
    h, i, j, k = st.columns(4)
    judge_kind = h.selectbox("Judge for criteria without a check", list(judging.KINDS), format_func=judging.KINDS.get,
                             index=list(judging.KINDS).index(remembered_judge.kind), key=f"judge-kind-{name}",
                             help="Remembered for this rubric. Without a judge, judged criteria stay unscored.")
    judge_model = i.text_input("Judge model", remembered_judge.model, key=f"judge-model-{name}",
                               help="another local model: a folder or cached hub id; an endpoint: its model name")
    judge_url = j.text_input("Endpoint URL", remembered_judge.url, key=f"judge-url-{name}",
                             placeholder="https://api.openai.com/v1 or http://127.0.0.1:8000/v1")
    judge_key_env = k.text_input("Key from environment variable", remembered_judge.key_env, key=f"judge-env-{name}",
                                 help="The key is read from this variable of the studio's process, never stored.")
    submitted = st.form_submit_button("Sample chains", type="primary")

if submitted:
    try:
        model_name = model_path if model_choice == MODELS[2] else model_choice
        choice = judging.save_choice(root, name, judging.JudgeChoice(judge_kind, judge_model, judge_url, judge_key_env))
        ws.remember_task_set(root, name, task_set)
        chains = int(limit) * int(samples) * (2 if context == "both" else 1)
        background.start(root, "preview", f"Sampling {chains} chains", actions.sample_preview, root,
                         rubric_name=name, version=version, task_set=task_set, limit=int(limit),
                         model_name=model_name, samples=int(samples), judge=choice,
                         max_new_tokens=int(max_new_tokens), context=context, seed=int(seed))
    except InputError as exc:
        state.show_error(exc)
finished = background.outcome(root, "preview", "Sampling")   # progress, ETA and Cancel while it runs
if finished is not None:
    set_id, stats = finished.result
    st.session_state["chain_set"] = set_id
    st.success(f"{stats.tokens} tokens in {background.format_seconds(finished.elapsed_s)} · "
               f"{stats.tokens_per_s:.0f} tokens/s")

# ---------------------------------------------------------------------------- which chain set
sets = ws.list_chain_sets(root)
if not sets:
    st.info("No chains yet: choose settings and press **Sample chains**.")
    st.stop()
labels = {s["id"]: f"{s['id']} · {s.get('rubric')} · {s.get('model')} · {s.get('chains')} chains" for s in sets}
set_id = state.remembered_select("Chains", list(labels), "chain_set", format_func=labels.get)
meta, records, rubric = actions.chain_set(root, set_id)
tasks = actions.chain_set_tasks(root, set_id)   # their own criteria show as groups (weight class, tag)

# ---------------------------------------------------------------------------- overview
st.subheader("Chains × criteria")
st.caption("✓ pass · ✗ fail · · unscored (judged criteria without a judge). Pitfall cells are green when the "
           "flaw is absent. The review column shows a flagged chain's status. Click a row to open its chain below.")
if any(t.criteria for t in tasks):
    st.caption("Tasks with their own criteria: those show as groups — `weight:essential` (weight ≥ 5), "
               "`weight:important` (3–5), `weight:optional` (< 3), `weight:pitfall` (< 0), and `tag:…` — "
               "each the chain's mean over its criteria in the group; open a chain for every criterion.")
try:
    store = ReviewStore(ws.store_path(root))
    rejected, marks = store.excluded_chain_ids(), actions.review_marks(store)
except InputError as exc:  # a damaged review database: show the chains, say why reviews are left out
    state.show_error(exc)
    rejected, marks = set(), {}
query = st.text_input("Search chains", key=f"search-{set_id}", placeholder="words in the chain, its prompt or task id")
shown = actions.search_chains(records, query)
if query:
    st.caption(state.plain(f"{len(shown)} of {len(records)} chains match “{query.strip()}”"))
grid = charts.score_grid(shown, rubric, tasks, review=marks)
picked = st.dataframe(charts.style_score_grid(grid, rubric), hide_index=True, width="stretch",
                      height=min(36 * (len(grid) + 1) + 2, 360), on_select="rerun", selection_mode="single-row",
                      key=f"grid-{set_id}-{query}").selection.rows
chain_ids = [r["id"] for r in shown] or [r["id"] for r in records]
if picked and st.session_state.get("grid-pick") != (set_id, query, picked[0]):
    # a row clicked in the grid opens that chain below (set before the selectbox is drawn)
    st.session_state["grid-pick"] = (set_id, query, picked[0])
    st.session_state[f"chain-{set_id}"] = chain_ids[picked[0]]
# chains a reviewer rejected stay visible in the grid but leave every rate, total and lint below
kept = [r for r in records if r["id"] not in rejected]
kept_grid = charts.score_grid(kept, rubric, tasks)
chart_col, metric_col = st.columns([3, 1])
chart_col.plotly_chart(charts.pass_rate_figure(kept, rubric, tasks), width="stretch")
for ctx, value in kept_grid.groupby("context")["total"].mean().items():
    metric_col.metric(f"mean total · {ctx}", "—" if pd.isna(value) else f"{value:.3f}")
metric_col.caption(state.plain(f"{len(records)} chains · {meta.get('model')} · {meta.get('max_new_tokens')} new "
                               f"tokens max · {meta.get('tokens_per_s', '?')} tokens/s"))
if len(kept) < len(records):
    metric_col.caption(f"{len(records) - len(kept)} rejected in review: left out of rates, totals and lint")

# ---------------------------------------------------------------------------- one chain
st.subheader("Open a chain")
if st.session_state.get(f"chain-{set_id}") not in chain_ids:
    st.session_state.pop(f"chain-{set_id}", None)   # the open chain is outside the search: open the first match
chain_id = st.selectbox("Chain", chain_ids, key=f"chain-{set_id}")
chain = next(r for r in records if r["id"] == chain_id)
chain_task = next((t for t in tasks if t.id == chain.get("task_id")), None)
chain_rubric = rubric_for_task(rubric, chain_task) if chain_task is not None else rubric  # the one it was scored on
text_col, score_col = st.columns([3, 2])
with text_col:
    st.markdown("**Prompt**")
    st.text(f"{chain.get('task_id')} · {chain.get('context')} context\n\n{chain.get('prompt', '')}")
    st.markdown(f"**Chain** — {chain.get('n_tokens', '?')} tokens{'' if chain.get('finished') else ', cut at the limit'}")
    st.code(chain["text"] or "(empty)", language=None, wrap_lines=True)
    if chain.get("reference"):
        st.text(f"Reference: {chain['reference']}")
with score_col:
    verdicts = chain.get("judge") or {}
    st.dataframe(pd.DataFrame([{
        "criterion": c.id, "weight": c.weight, "check": c.check.type if c.check else "judge",
        "own": "task" if c.id not in {s.id for s in rubric.criteria} else "",
        "score": chain["scores"].get(c.id), "judge verdict": (verdicts.get(c.id) or {}).get("raw", "")}
        for c in chain_rubric.criteria]), hide_index=True, width="stretch")
    st.metric("total", "—" if chain.get("total") is None else f"{chain['total']:.3f}")
    with st.form(f"flag-{chain_id}", clear_on_submit=True):
        st.markdown("**Flag for review**")
        reason = st.text_input("Reason", placeholder="e.g. correct answer but marked wrong")
        criterion = st.selectbox("About criterion (optional)", ["(whole chain)"] + [c.id for c in chain_rubric.criteria])
        flagged_by = st.text_input("Your name", value=st.session_state.get("user", ""))
        if st.form_submit_button("Flag chain"):
            try:
                flag_id = ReviewStore(ws.store_path(root)).add_flag(
                    chain, rubric_name=rubric.name, rubric_version=rubric.version, reason=reason,
                    flagged_by=flagged_by, criterion=None if criterion == "(whole chain)" else criterion)
                st.session_state["user"] = flagged_by.strip()
                st.success(f"Flag #{flag_id} added to the review queue.")
            except InputError as exc:
                state.show_error(exc)

with st.expander("Guidance map: where the rubric pushes this chain"):
    st.caption("Per-token divergence between the teacher (rubric in context) and the student on this chain — "
               "the quantity a round trains on. Darker tokens are where the teacher pulls hardest.")
    if st.button("Compute guidance map", key=f"gmap-{chain_id}"):
        try:
            st.html(actions.guidance_html(root, set_id, chain))
        except InputError as exc:
            state.show_error(exc)

# ---------------------------------------------------------------------------- signal
with st.expander("Signal per criterion: will this rubric teach this model anything?"):
    st.caption("Compares student and teacher pass rates per criterion with a 95% bootstrap interval; a criterion "
               "whose gap includes zero gives this model no signal. Reuses these chains when they were sampled in "
               "both contexts on at least 4 tasks with the current judge (then only the divergence is computed); "
               "otherwise samples fresh ones.")
    report = ws.latest_signal_report(root, rubric.name, rubric.version)
    if (measured := background.started_by_button(root, "signal", "Measure signal", "Measuring signal",
                                                  actions.measure_chain_set_signal, root, set_id,
                                                  what="Signal measurement")) is not None:
        report = measured.result
    if report:
        st.text(f"{report.get('model')} · {report.get('tasks')} tasks × {report.get('samples')} samples · "
                f"mean divergence {report['divergence'].get('mean') or 0:.3f}"
                + (f" · from chain set {report['chain_set']}" if report.get("chain_set") else " · fresh chains"))
        st.dataframe(actions.signal_rows(report), hide_index=True, width="stretch", column_config=state.SIGNAL_COLUMNS)

with st.expander("Does the rubric matter? Ablation of the teacher's context"):
    st.caption("Samples the student once and the teacher under five contexts — the full rubric, its criteria only, "
               "its worked examples only, a generic rubric, another rubric's criteria (shuffled) — and says where "
               "the teacher's pull comes from. Leaving each criterion out in turn shows how much of the "
               "divergence and of each gap it carries. Costs about (6 + criteria) × a preview's chains.")
    ablation = ws.latest_ablation_report(root, rubric.name, rubric.version)
    if (ablated := background.started_by_button(root, "ablation", "Run the ablation", "Ablation",
                                                 actions.measure_chain_set_ablation, root, set_id)) is not None:
        ablation = ablated.result
    if ablation:
        st.info(state.plain(f"Verdict: {ablation['verdict']}"))
        st.text(f"{ablation.get('model')} · {ablation.get('tasks')} tasks × {ablation.get('samples')} samples · "
                f"shuffled: {ablation['variant_contexts']['shuffled']}")
        st.plotly_chart(charts.ablation_figure(ablation), width="stretch", key="ablation-gaps")
        variants, attribution = actions.ablation_rows(ablation)
        st.dataframe(variants, hide_index=True, width="stretch")
        if len(attribution):
            st.caption("Leaving one criterion out of the teacher's context: the share of the divergence mass and of "
                       "its own pass-rate gap that moves.")
            st.dataframe(attribution, hide_index=True, width="stretch")

try:  # the whole task set: its own criteria, and its ideal answers for the polarity lint
    lint_tasks = ws.load_task_set(root, meta["tasks"])
except (InputError, KeyError):
    lint_tasks = tasks
findings = actions.lint_table(rubric, kept, lint_tasks,
                              judge_configured=judging.load_choice(root, rubric.name).kind != "none")
with st.expander(f"Rubric lint on these chains: {len(findings)} finding{'s' if len(findings) != 1 else ''}"):
    st.table(findings.set_index("severity"))      # a table wraps long messages; a grid would cut them
