"""A domain expert's afternoon in the studio, scripted through the studio's own actions (the code the
pages call) on the embedded model, each step timed: import a CSV task set, edit and split it, preview
with the model as judge on another rubric's usual task set, signal on those chains, start a long
preview and cancel it (how long Cancel takes), a 2-step cpu-demo round, its before/after evaluation.

    .venv/bin/python bench/studio_afternoon.py      # a fresh temporary workspace; prints each step's seconds
"""
import json, os, tempfile, time
from pathlib import Path

home = Path(tempfile.mkdtemp()) / "ws"
os.environ["RCSD_HOME"] = str(home)
times = {}
def step(name):
    class T:
        def __enter__(s): s.t = time.perf_counter(); return s
        def __exit__(s, *a): times[name] = round(time.perf_counter() - s.t, 1); print(f"{name}: {times[name]} s", flush=True)
    return T()

with step("open the studio (workspace seeded)"):
    from rcsd_core.studio import workspace as ws, actions, background, exchange, task_sets, judging
    ws.ensure_workspace(home)
with step("import a CSV task set (4 customer-support prompts)"):
    csv = ("id,prompt,reference\n"
           "s1,My parcel is two weeks late. What can I do?,\n"
           "s2,The mug I ordered arrived cracked. Can I get a refund?,\n"
           "s3,How do I change the delivery address of an order?,\n"
           "s4,I was charged twice for one order. Help?,\n").encode()
    task_set, rubric_name, n = exchange.import_upload(home, csv, "support.csv", "csv")
with step("edit a task and split the set (saved as a new set)"):
    tasks = ws.load_task_set(home, task_set)
    rows = task_sets.task_rows(tasks)
    rows[0]["prompt"] = "My parcel is two weeks late. What are my options?"
    edited, problems = task_sets.tasks_from_rows(rows, original=tasks)
    assert not problems
    edited = task_sets.split_tasks(edited, eval_share=0.25, seed=0)
    new_set = task_sets.save_new_task_set(home, edited, new_name="support-2")
print("rubric from import:", rubric_name, "task set:", new_set, n)
model = "smollm2-135m-instruct"
choice = judging.save_choice(home, "science-explainer", judging.JudgeChoice("preview"))
with step("load the embedded model (first use)"):
    from rcsd_core.studio.state import cached_model
    cached_model(model)
with step("preview science-explainer on the legal task set: 4 tasks x 2 samples x 48 tokens, both contexts, judged by the same model"):
    set_id, stats = actions.sample_preview(home, rubric_name="science-explainer", version=None, task_set="legal",
                                           limit=4, model_name=model, samples=2, max_new_tokens=48,
                                           context="both", seed=0, judge=choice)
meta, records, rubric = actions.chain_set(home, set_id)
judged = [c.id for c in rubric.criteria if c.is_judged]
print("judged criteria scored:", sum(r["scores"][j] is not None for r in records for j in judged), "of",
      len(records) * len(judged), "; tasks:", sorted({r["task_id"] for r in records}))
with step("signal on the preview's chains (reused: divergence only)"):
    report = actions.measure_chain_set_signal(home, set_id)
print("signal reused:", report["reused_chains"], "total gap", report["total"]["gap"])
with step("a long preview (20 tasks x 8 x 256 tokens) started and cancelled after its first batch"):
    job = background.start(home, "preview", "long", actions.sample_preview, home, rubric_name="science-explainer",
                           version=None, task_set="legal", limit=20, model_name=model, samples=8,
                           max_new_tokens=256, context="both", seed=0)
    while job.done == 0 and job.status == "running":
        time.sleep(0.2)
    t_cancel = time.perf_counter(); job.cancel()
    while job.status == "running":
        time.sleep(0.2)
    times["cancel took effect after"] = round(time.perf_counter() - t_cancel, 1)
print("job:", job.status, "cancel latency", times["cancel took effect after"])
from rcsd_core.contracts import runs
from rcsd_core.contracts.config import preset_config
with step("a 2-step cpu-demo round on the embedded model (4 eval prompts, evaluated at steps 0 and 2)"):
    config = preset_config("cpu-demo", steps=2, eval_tasks=4, eval_every=0, checkpoint_every=0,
                           rubric=str(ws.rubric_path(home, "grade-school-math")),
                           tasks=str(ws.task_set_path(home, "arithmetic")))
    run_dir = runs.create_run(config, ws.runs_root(home), run_id="afternoon")
    from rcsd_core.training.round import train_round
    result = train_round(run_dir)
print("round:", result["status"], result["step"])
with step("before/after evaluation of the adapter (4 eval prompts x 1 chain)"):
    from rcsd_core.evaluation.before_after import evaluate_run
    ev = evaluate_run(run_dir, tasks=4, samples=1)
print("eval total before/after:", ev["total"]["before"], ev["total"]["after"])
print(json.dumps(times, indent=1))
