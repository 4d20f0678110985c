"""Train: a form over the round config with presets; launch a round in its own process; the runs
table; live charts of the selected round (tailed from its run directory); stop, resume, log, error."""

import streamlit as st

from rcsd_core.contracts import runs
from rcsd_core.contracts.config import (DEFAULT_MODEL, DIVERGENCES, METHODS, PRESETS, TEACHER_KINDS, TINY_RANDOM,
                                       RoundConfig)
from rcsd_core.errors import InputError
from rcsd_core.studio import actions, charts, jobs, state
from rcsd_core.studio import workspace as ws

root = ws.ensure_workspace(ws.workspace_root())
runs_root = ws.runs_root(root)
DEVICES = ["auto", "cpu", "cuda"]

st.title("Train")

# ---------------------------------------------------------------------------- the form
with st.expander("New round", expanded=runs.list_runs(runs_root).empty):
    preset = st.selectbox("Preset", list(PRESETS), help="; ".join(f"{k}: {v.get('model')}, {v.get('steps')} steps"
                                                                  for k, v in PRESETS.items()))
    base = PRESETS[preset]
    rubric_name, _, task_set = state.rubric_picker(root, "train", with_version=False)
    st.caption("A round trains on the rubric's current version.")
    with st.form(f"round-{preset}"):
        a, b, c = st.columns(3)
        model = a.selectbox("Model", list(dict.fromkeys([base["model"], DEFAULT_MODEL, TINY_RANDOM])) + ["other…"])
        other_model = b.text_input("Other model (local folder or cached hub id)")
        method = c.selectbox("Method", METHODS, index=state.index_of(METHODS, base.get("method", "rcsd")))
        teacher = c.selectbox("Teacher", TEACHER_KINDS, index=state.index_of(TEACHER_KINDS, base.get("teacher")))
        divergence = c.selectbox("Divergence", DIVERGENCES,
                                 index=state.index_of(DIVERGENCES, base.get("divergence", "forward_kl")),
                                 help="topk_forward_kl with clip_mode 'entry' reproduces the official code but pushed "
                                      "the student away from the teacher here (DESIGN §1)")
        d, e, f, g = st.columns(4)
        steps = d.number_input("Steps", 1, 100_000, int(base["steps"]))
        prompts = d.number_input("Prompts per step", 1, 1024, int(base["prompts_per_step"]))
        samples = e.number_input("Samples per prompt", 1, 256, int(base["samples_per_prompt"]))
        tokens = e.number_input("Max new tokens", 1, 32_768, int(base["max_new_tokens"]))
        lr = f.number_input("Learning rate", 1e-7, 1.0, float(base.get("learning_rate", 3e-4)), format="%.1e")
        rank = f.number_input("LoRA rank", 1, 1024, int(base.get("lora_rank", 16)))
        eval_every = g.number_input("Eval every (steps)", 0, 100_000, int(base.get("eval_every", 10)))
        eval_tasks = g.number_input("Eval prompts", 1, 10_000, int(base.get("eval_tasks") or 40))
        seed = d.number_input("Seed", 0, 2**31 - 1, int(base.get("seed", 0)))
        device = e.selectbox("Device", DEVICES, index=state.index_of(DEVICES, base.get("device", "auto")))
        extra = st.text_area("Other config keys (YAML, optional)", placeholder="tau: 1.0\nteacher_reference: true",
                             help="Any RoundConfig key: " + ", ".join(RoundConfig.model_fields))
        launch = st.form_submit_button("Launch round", type="primary")
    verdict = actions.readiness_verdict(root, rubric_name)
    if verdict is None:
        st.info(state.plain(f"Readiness: no signal report for the current version of {rubric_name} yet. Measure "
                            "the signal on the Preview page (or `rcsd signal`) before spending a round on it."))
    else:
        box = {"go": st.success, "weak": st.warning, "too_weak": st.error}[verdict["level"]]
        box(state.plain(f"Readiness — {verdict['headline']}. {verdict['detail']}"))
        st.markdown("\n".join(f"- {state.plain(step)}" for step in verdict["next"]))
    if launch:
        try:
            st.session_state["run_id"] = jobs.start_round(root, preset, {
                "model": other_model.strip() if model == "other…" else model,
                "rubric": str(ws.rubric_path(root, rubric_name)), "tasks": str(ws.task_set_path(root, task_set)),
                "method": method, "teacher": teacher, "divergence": divergence, "steps": int(steps),
                "prompts_per_step": int(prompts), "samples_per_prompt": int(samples), "max_new_tokens": int(tokens),
                "learning_rate": float(lr), "lora_rank": int(rank), "eval_every": int(eval_every),
                "eval_tasks": int(eval_tasks), "seed": int(seed), "device": device}, extra)
            ws.remember_task_set(root, rubric_name, task_set)
            st.toast(f"Launched {st.session_state['run_id']}")
        except InputError as exc:
            state.show_error(exc)

# ---------------------------------------------------------------------------- runs
table = jobs.runs_table(root)
if table.empty:
    st.info("No runs yet. Launch a round above (the `cpu-demo` preset with `tiny-random` takes seconds).")
    st.stop()
st.subheader("Runs")


def runs_view() -> None:
    """The runs table, redrawn every 2 s while a round is active, so its status and step stay current."""
    now = jobs.runs_table(root)
    st.dataframe(now, hide_index=True, width="stretch", height=min(36 * (len(now) + 1) + 2, 260))


any_active = table["status"].isin([*jobs.ACTIVE, "stopping…"]).any()
st.fragment(run_every=2 if any_active else None)(runs_view)()
active_ids = list(table.loc[table["status"].isin([*jobs.ACTIVE, "stopping…"]), "id"])
run_id = state.remembered_select("Run", list(table["id"]), "run_id", fallback=active_ids[0] if active_ids else None)
run_dir = ws.run_dir(root, run_id)
status = jobs.round_status(run_dir)

stop_col, resume_col, _ = st.columns([1, 1, 4])
if stop_col.button("Stop", disabled=status["status"] not in jobs.ACTIVE or status["stopping"]):
    jobs.stop_round(run_dir)
    st.toast("Stop requested: the round drops its unfinished step, saves a checkpoint of the last one and stops.")
    st.rerun()
if resume_col.button("Resume", disabled=status["status"] not in ("failed", "stopped")):
    try:
        jobs.resume_round(run_dir)
        st.rerun()
    except InputError as exc:
        state.show_error(exc)


# ---------------------------------------------------------------------------- live view
def live_view(started_active: bool) -> None:
    status = jobs.round_status(run_dir)
    if started_active and status["status"] not in jobs.ACTIVE:
        st.rerun()  # the round ended: redraw the whole page (buttons, table) once, then stop polling
    steps = status.get("steps") or "?"
    a, b, c, d = st.columns(4)
    a.metric("status", jobs.shown_status(status))
    b.metric("step", f"{status.get('step', 0)} / {steps}")
    metrics = runs.read_metrics(run_dir)
    last = metrics.iloc[-1] if len(metrics) else None
    if last is not None and "train/loss" in metrics:
        c.metric("loss", f"{last['train/loss']:.4f}" if last['train/loss'] == last['train/loss'] else "—")
    if "eval/total" in metrics and metrics["eval/total"].notna().any():
        d.metric("eval total", f"{metrics['eval/total'].dropna().iloc[-1]:.3f}")
    if status.get("error"):
        state.show_error(f"Error: {status['error']}")
    figures = charts.metric_figures(metrics)
    if figures:
        keys = list(figures)
        for i in range(0, len(keys), 2):
            cols = st.columns(2)
            for col, key in zip(cols, keys[i:i + 2]):
                col.plotly_chart(figures[key], width="stretch", key=f"chart-{key}")
    else:
        st.caption("No metrics yet: the first line appears after the first step.")
    alert = jobs.held_out_alert(run_dir)
    if alert:
        st.warning(state.plain(f"Held-out watch: {alert}"))
    watch = charts.watch_figure(metrics)
    if watch is not None:
        st.plotly_chart(watch, width="stretch", key="chart-watch")
        if not alert:
            st.caption("Held-out watch: no alert (the trained total has not risen while a held-out criterion fell "
                       "beyond its interval).")
    with st.expander("Log (last 40 lines)", expanded=status["status"] == "failed"):
        st.code(runs.tail_log(run_dir, 40) or "(empty)", language=None)


active = status["status"] in jobs.ACTIVE
st.fragment(run_every=2 if active else None)(live_view)(active)
