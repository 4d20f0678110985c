"""Preview: sample the model's own chains in student and teacher context, scored per criterion;
open a chain, see where the rubric pushes it (guidance map), flag it for review; measure signal."""

import pandas as pd
import streamlit as st

from rcsd_core.contracts.config import DEFAULT_MODEL, TINY_RANDOM
from rcsd_core.errors import InputError
from rcsd_core.studio import actions, charts, state
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
with st.form("preview-settings"):
    a, b, c = st.columns(3)
    name = state.remembered_select("Rubric", names, "rubric", container=a)
    current = ws.current_version(root, name)
    versions = [h["version"] for h in ws.rubric_versions(root, name)][::-1] or [current]
    version = a.selectbox("Version", versions, index=state.index_of(versions, current))
    task_set = b.selectbox("Task set", task_sets, index=state.index_of(task_sets, ws.suggested_task_set(root, name)))
    limit = b.number_input("Tasks (first N of the train split)", 1, 200, 4)
    model_choice = c.selectbox("Model", MODELS, help="tiny-random has random weights: for trying the studio fast")
    model_path = c.text_input("Model path / id (when 'local path' is chosen)")
    d, e, f, g = st.columns(4)
    samples = d.number_input("Samples per task", 1, 32, 2)
    max_new_tokens = e.number_input("Max new tokens", 8, 1024, 48)
    context = f.radio("Context", ["both", "student", "teacher"], horizontal=True)
    seed = g.number_input("Seed", 0, 2**31 - 1, 0)
    submitted = st.form_submit_button("Sample chains", type="primary")

if submitted:
    bar = st.progress(0.0, text="Sampling…")
    try:
        set_id, stats = actions.sample_preview(
            root, rubric_name=name, version=version, task_set=task_set, limit=int(limit),
            model_name=model_path if model_choice == MODELS[2] else model_choice, samples=int(samples),
            max_new_tokens=int(max_new_tokens), context=context, seed=int(seed),
            progress=lambda done, total: bar.progress(done / total, text=f"Sampled {done}/{total} chains"))
        bar.progress(1.0, text=f"{stats.tokens} tokens · {stats.tokens_per_s:.0f} tokens/s")
        st.session_state["chain_set"] = set_id
    except InputError as exc:
        bar.empty()
        state.show_error(exc)

# ---------------------------------------------------------------------------- which chain set
sets = ws.list_chain_sets(root)
if not sets:
    st.info("No chains yet: choose settings and press **Sample chains**.")
    st.stop()
labels = {s["id"]: f"{s['id']} · {s.get('rubric')} · {s.get('model')} · {s.get('chains')} chains" for s in sets}
set_id = state.remembered_select("Chains", list(labels), "chain_set", format_func=labels.get)
meta, records, rubric = actions.chain_set(root, set_id)

# ---------------------------------------------------------------------------- overview
st.subheader("Chains × criteria")
st.caption("✓ pass · ✗ fail · · unscored (judged criteria without a judge). Pitfall cells are green when the "
           "flaw is absent. Click a row to open its chain below.")
grid = charts.score_grid(records, rubric)
picked = st.dataframe(charts.style_score_grid(grid, rubric), hide_index=True, width="stretch",
                      height=min(36 * (len(grid) + 1) + 2, 360), on_select="rerun", selection_mode="single-row",
                      key=f"grid-{set_id}").selection.rows
chain_ids = [r["id"] for r in records]
if picked and st.session_state.get("grid-pick") != (set_id, picked[0]):
    # a row clicked in the grid opens that chain below (set before the selectbox is drawn)
    st.session_state["grid-pick"] = (set_id, picked[0])
    st.session_state[f"chain-{set_id}"] = chain_ids[picked[0]]
# chains a reviewer rejected stay visible in the grid but leave every rate, total and lint below
try:
    rejected = ReviewStore(ws.store_path(root)).excluded_chain_ids()
except InputError as exc:  # a damaged review database: show the chains, say why reviews are left out
    state.show_error(exc)
    rejected = set()
kept = [r for r in records if r["id"] not in rejected]
kept_grid = grid[[r["id"] not in rejected for r in records]]
chart_col, metric_col = st.columns([3, 1])
chart_col.plotly_chart(charts.pass_rate_figure(kept, rubric), width="stretch")
for ctx, value in kept_grid.groupby("context")["total"].mean().items():
    metric_col.metric(f"mean total · {ctx}", "—" if pd.isna(value) else f"{value:.3f}")
metric_col.caption(state.plain(f"{len(records)} chains · {meta.get('model')} · {meta.get('max_new_tokens')} new "
                               f"tokens max · {meta.get('tokens_per_s', '?')} tokens/s"))
if len(kept) < len(records):
    metric_col.caption(f"{len(records) - len(kept)} rejected in review: left out of rates, totals and lint")

# ---------------------------------------------------------------------------- one chain
st.subheader("Open a chain")
chain_id = st.selectbox("Chain", chain_ids, key=f"chain-{set_id}")
chain = next(r for r in records if r["id"] == chain_id)
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
        "score": chain["scores"].get(c.id), "judge verdict": (verdicts.get(c.id) or {}).get("raw", "")}
        for c in rubric.criteria]), hide_index=True, width="stretch")
    st.metric("total", "—" if chain.get("total") is None else f"{chain['total']:.3f}")
    with st.form(f"flag-{chain_id}", clear_on_submit=True):
        st.markdown("**Flag for review**")
        reason = st.text_input("Reason", placeholder="e.g. correct answer but marked wrong")
        criterion = st.selectbox("About criterion (optional)", ["(whole chain)"] + [c.id for c in rubric.criteria])
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
    st.caption("Samples fresh chains in student and teacher context and compares pass rates per criterion "
               "with a 95% bootstrap interval. A criterion whose gap includes zero gives this model no signal.")
    report = ws.latest_signal_report(root, rubric.name, rubric.version)
    if st.button("Measure signal", key="signal"):
        bar = st.progress(0.0, text="Measuring signal…")
        try:
            report = actions.measure_chain_set_signal(
                root, set_id, progress=lambda d, t: bar.progress(min(d / t, 1.0), text=f"{d}/{t}"))
        except InputError as exc:
            state.show_error(exc)
    if report:
        st.text(f"{report.get('model')} · {report.get('tasks')} tasks × {report.get('samples')} samples · "
                f"mean divergence {report['divergence'].get('mean') or 0:.3f}")
        st.dataframe(actions.signal_rows(report), hide_index=True, width="stretch")

with st.expander("Does the rubric matter? Ablation of the teacher's context"):
    st.caption("Samples the student once and the teacher under five contexts — the full rubric, its criteria only, "
               "its worked examples only, a generic rubric, another rubric's criteria (shuffled) — and says where "
               "the teacher's pull comes from. Leaving each criterion out in turn shows how much of the "
               "divergence and of each gap it carries. Costs about (6 + criteria) × a preview's chains.")
    ablation = ws.latest_ablation_report(root, rubric.name, rubric.version)
    if st.button("Run the ablation", key="ablation"):
        bar = st.progress(0.0, text="Ablation…")
        try:
            ablation = actions.measure_chain_set_ablation(
                root, set_id, progress=lambda d, t: bar.progress(min(d / t, 1.0), text=f"{d}/{t} chains"))
        except InputError as exc:
            state.show_error(exc)
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

try:  # the task set's ideal answers, for the polarity lint
    lint_tasks = ws.load_task_set(root, meta["tasks"])
except (InputError, KeyError):
    lint_tasks = None
findings = actions.lint_table(rubric, kept, lint_tasks)
with st.expander(f"Rubric lint on these chains: {len(findings)} finding{'s' if len(findings) != 1 else ''}"):
    st.dataframe(findings, hide_index=True, width="stretch")
