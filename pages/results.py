"""Results: for stakeholders — per-criterion before/after with uncertainty, eval totals over steps,
the same prompt answered before and after, and a self-contained HTML report to share.

The before/after evaluation runs as a detached job (`python -m rcsd_core.evaluation`); the page
launches it, polls it every 2 s while it runs, and shows eval.json once it is written.
"""

import pandas as pd
import streamlit as st

from rcsd_core.contracts import runs
from rcsd_core.errors import InputError
from rcsd_core.studio import actions, charts, exchange, jobs, state
from rcsd_core.studio.evaluations import evaluation_notes
from rcsd_core.studio import workspace as ws
from rcsd_core.studio.report import render_report

root = ws.ensure_workspace(ws.workspace_root())


def fmt(value) -> str:
    return "—" if value is None or pd.isna(value) else f"{value:.3f}"


st.title("Results")

table = runs.list_runs(ws.runs_root(root))
if table.empty:
    st.info("No runs yet. Launch a round on the Train page; its results appear here.")
    st.stop()
statuses = dict(zip(table["id"], table["status"]))
run_id = state.remembered_select("Run", list(statuses), "run_id", format_func=lambda r: f"{r} · {statuses[r]}")
run_dir = ws.run_dir(root, run_id)
status = jobs.round_status(run_dir)
try:
    config = runs.load_run_config(run_dir).model_dump(mode="json")
except InputError as exc:
    state.show_error(f"This run's config cannot be read: {exc}")
    st.stop()
metrics = runs.read_metrics(run_dir)
evaluation = runs.read_eval(run_dir)
job = jobs.evaluation_status(run_dir)

rubric_name = config["rubric"].get("name") if isinstance(config["rubric"], dict) else config["rubric"]
st.text(f"{config['method']} on {config['model']} · rubric {rubric_name} · {config['steps']} steps × "
        f"{config['prompts_per_step']} prompts × {config['samples_per_prompt']} samples · status {status['status']}")


# ---------------------------------------------------------------------------- the evaluation job
def watch_evaluation() -> None:
    """Polled every 2 s while the job runs; the whole page reruns once it ends (done: eval.json appears)."""
    current = jobs.evaluation_status(run_dir)
    if current is None or current["status"] not in jobs.ACTIVE:
        st.rerun()
    fraction, text = jobs.evaluation_progress(current)
    st.info("Evaluating base vs adapter on the eval split…")
    st.progress(fraction, text=text)
    with st.expander("Evaluation log"):
        st.code(jobs.evaluation_log(run_dir, 6) or "(starting)", language=None)


if job and job["status"] in jobs.ACTIVE:
    st.fragment(run_every=2)(watch_evaluation)()
else:
    if job and job["status"] == "failed":
        state.show_error(f"The last evaluation failed: {job.get('error') or 'no reason given'}")
        with st.expander("Evaluation log (last 40 lines)"):
            st.code(jobs.evaluation_log(run_dir, 40) or "(empty)", language=None)
    if evaluation is None and metrics.get("eval/total", pd.Series(dtype=float)).dropna().empty:
        st.info("This run has no evaluation yet." +
                ("" if status["status"] in ("done", "stopped") else " It can be evaluated once the round is done."))
    if status["status"] in ("done", "stopped"):
        with st.expander("Evaluate again", expanded=False) if evaluation else st.container():
            n_eval = st.number_input("Eval prompts", 1, 10_000, min(int(config.get("eval_tasks") or 40), 20),
                                     help="The first N prompts of the eval split; more prompts, tighter intervals.")
            if st.button("Evaluate base vs adapter now"):
                try:
                    jobs.launch_evaluation(run_dir, limit=int(n_eval))
                    st.rerun()
                except InputError as exc:
                    state.show_error(exc)

# ---------------------------------------------------------------------------- headline and criteria
for note in evaluation_notes(evaluation, metrics, config):
    st.caption(state.plain(note))
rows = charts.before_after_rows(evaluation) if evaluation else pd.DataFrame()
if not rows.empty:
    total = rows[rows["criterion"] == "total"]
    if not total.empty:
        t = total.iloc[0]
        a, b, c = st.columns(3)
        a.metric("eval total · before", fmt(t["before"]))
        ci = t["delta_ci"]
        noise = not ci or ci[0] <= 0 <= ci[1]
        b.metric("eval total · after", fmt(t["after"]),
                 delta=None if t["delta"] is None or pd.isna(t["delta"]) else f"{t['delta']:+.3f}",
                 delta_color="off" if noise else "normal",   # grey unless the interval excludes zero
                 help="Grey when the 95% interval includes zero.")
        c.metric("95% CI of the change", "—" if not ci else f"[{ci[0]:+.3f}, {ci[1]:+.3f}]",
                 help="Bootstrap interval; when it includes zero the change is not distinguishable from noise.")
    criteria_rows = rows[rows["criterion"] != "total"]
    left, right = st.columns(2)
    left.plotly_chart(charts.before_after_figure(criteria_rows), width="stretch")
    right.plotly_chart(charts.change_figure(rows), width="stretch")
    shown = rows.assign(delta_ci=rows["delta_ci"].map(lambda ci: "—" if not ci else f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"))
    st.dataframe(shown, hide_index=True, width="stretch",
                 column_config={"significant": st.column_config.CheckboxColumn("CI excludes 0")})

eval_fig = charts.eval_totals_figure(metrics)
if eval_fig is not None:
    st.plotly_chart(eval_fig, width="stretch")
elif rows.empty:
    figures = charts.metric_figures(metrics)
    if figures:
        st.plotly_chart(next(iter(figures.values())), width="stretch")
    else:
        st.caption("No metrics logged yet.")

# ---------------------------------------------------------------------------- same prompt, before and after
pairs = charts.prompt_pairs(evaluation) if evaluation else pd.DataFrame()
if not pairs.empty:
    st.subheader("The same prompt, before and after")
    index = st.selectbox("Prompt", range(len(pairs)),
                         format_func=lambda i: f"{pairs.iloc[i]['task_id']}: {str(pairs.iloc[i]['prompt'])[:80]}")
    pair = pairs.iloc[index]
    st.text(pair["prompt"])
    if pair["reference"]:
        st.text(f"Reference: {pair['reference']}")
    left, right = st.columns(2)
    for col, side in ((left, "before"), (right, "after")):
        value = pair[f"{side}_total"]
        col.markdown(f"**{side}** · total {fmt(value)}")
        col.code(pair[side] or "(empty)", language=None, wrap_lines=True)

# ---------------------------------------------------------------------------- report
st.divider()
report = render_report(run_id=run_id, config=config, status=status, metrics=metrics, evaluation=evaluation,
                       design=actions.run_design_reports(root, run_dir), alert=jobs.held_out_alert(run_dir))
st.download_button("Download the HTML report", report, file_name=f"rcsd-report-{run_id}.html", mime="text/html",
                   type="primary", help="One self-contained file (plotly inline), opens offline.")

st.subheader("Export the run's data")
out_col, button_col = st.columns([2, 1])
run_label = out_col.selectbox("Format", list(exchange.EXPORT_CHOICES), key="run-export-format",
                              help="The round's sampled chains with their scores (TRL, Argilla, Label Studio), or one "
                                   "SDFT row per task with its rubric as the privileged context.")
try:
    run_file, run_mime = exchange.export_file_name(run_label, run_id)
    button_col.download_button(f"Download {run_label}", exchange.run_export(run_dir, run_label), file_name=run_file,
                               mime=run_mime, key="run-export")
except InputError as exc:
    state.show_error(exc)
