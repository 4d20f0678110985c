"""The held-out watch on finished runs: would it have warned?

    python bench/held_out_watch.py bench/runs/cpu-demo-rcsd bench/runs/cpu-demo-rejection-sft \
        [--rubric sample_rubrics/arithmetic.yaml] [--out bench/results/held_out_watch.jsonl]

Re-scores every in-round evaluation's chains (samples.jsonl, kind "eval") with a rubric that
holds criteria out (by default the arithmetic sample rubric, whose `equations-true` is held out),
builds the metric lines a round with the watch logs (`eval/total` over the trained criteria,
`eval/criterion/<id>`, `eval/held_out/<id>` with its 95% interval), and prints the watch's alert
(`rcsd_core.scoring.watch.watch_alert`) — runs from before the watch existed, re-evaluated.
No model is loaded.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rcsd_core.contracts import runs  # noqa: E402
from rcsd_core.contracts.rubric import load_rubric  # noqa: E402
from rcsd_core.contracts.tasks import load_tasks  # noqa: E402
from rcsd_core.files import atomic_write_text  # noqa: E402
from rcsd_core.scoring.scores import score_chain  # noqa: E402
from rcsd_core.scoring.stats import mean_or_none  # noqa: E402
from rcsd_core.scoring.watch import held_out_metrics, watch_alert  # noqa: E402


def eval_lines(run_dir: Path, rubric) -> list[dict]:
    """One metrics line per in-round evaluation of the run, re-scored with `rubric`."""
    evals = [r for r in runs.read_samples(run_dir) if r.get("kind") == "eval"]
    tasks = load_tasks(run_dir / runs.TASKS_FILE)
    references = {t.id: t.reference for t in tasks}
    lines = []
    for step in sorted({r["step"] for r in evals}):
        scored = [score_chain(rubric, r, task_references=references).to_record() for r in evals if r["step"] == step]
        line = {"step": step, "eval/total": mean_or_none(s["total"] for s in scored), "chains": len(scored)}
        for c in rubric.criteria:
            line[f"eval/criterion/{c.id}"] = mean_or_none(s["scores"].get(c.id) for s in scored)
        line.update(held_out_metrics(rubric, scored))
        lines.append(line)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--rubric", default=str(ROOT / "sample_rubrics" / "arithmetic.yaml"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rubric = load_rubric(args.rubric)
    held = [c.id for c in rubric.held_out_criteria]
    if not held:
        parser.error(f"{args.rubric} holds no criterion out")
    out = []
    for run_dir in args.run_dirs:
        lines = eval_lines(run_dir, rubric)
        alert = watch_alert(lines, held)
        record = {"run": run_dir.name, "held_out": held, "evals": lines, "alert": alert}
        out.append(record)
        for line in lines:
            shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in line.items()
                     if k in ("step", "chains", "eval/total") or k.startswith("eval/held_out/")}
            print(json.dumps({"run": run_dir.name, **shown}))
        print(f"{run_dir.name}: {'ALERT ' + alert if alert else 'no alert'}")
    if args.out:
        atomic_write_text(args.out, "".join(json.dumps(r) + "\n" for r in out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
