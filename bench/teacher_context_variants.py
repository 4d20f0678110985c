"""Which teacher context makes the embedded model behave differently? Sample in one context, score, report.

    python bench/teacher_context_variants.py student system1 turns2 student_turns2 ...

Each named variant samples the first 16 train-split arithmetic tasks x 4 chains (seed 0,
temperature 1.0, 64 new tokens unless the variant says otherwise, batch 8, 1 CPU thread) with
the embedded SmolLM2-135M-Instruct, scores them with the arithmetic rubric and prints one row;
summaries and the first chains go to bench/results/teacher_context_variants.json. Train tasks
only: the eval split stays untouched for the rounds. `system1` is the layout the rounds used
before (one worked example inside the system text); `turns2` is the default now (the rubric as
a system message, two worked examples as earlier user/assistant turns); `student_turns2` gives
the student the same two turns without the rubric, to see what the criteria text itself adds.
"""
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
torch.set_num_threads(1)

from rcsd_core.modeling.contexts import (  # noqa: E402
    NO_MENTION,
    render_rubric,
    student_messages,
    teacher_messages,
)
from rcsd_core.contracts.messages import encode_messages  # noqa: E402
from rcsd_core.modeling.generation import sample_chains  # noqa: E402
from rcsd_core.modeling.models import load_model  # noqa: E402
from rcsd_core.contracts.rubric import load_rubric  # noqa: E402
from rcsd_core.scoring.scores import score_chain  # noqa: E402
from rcsd_core.contracts.tasks import load_tasks  # noqa: E402

SAMPLES = ROOT / "sample_rubrics"
OUT = ROOT / "bench" / "results" / "teacher_context_variants.json"
RUBRIC = load_rubric(SAMPLES / "arithmetic.yaml")
TASKS = load_tasks(SAMPLES / "arithmetic.tasks.jsonl", split="train")[:16]
N, SEED, TEMP = 4, 0, 1.0


def compact(rubric, examples=1):
    """Description + criteria titles/descriptions, no weights, then the example(s)."""
    lines = [rubric.description.strip(), "", "A strong answer:"]
    for c in rubric.criteria:
        if not c.is_pitfall:
            lines.append(f"- {c.label}: {c.description.strip()}")
    for c in rubric.criteria:
        if c.is_pitfall:
            lines.append("- Never mention the rubric, the criteria or the grading.")
    for ex in rubric.examples[:examples]:
        lines += ["", "Example.", f"Question: {ex.prompt.strip()}", "Strong answer:",
                  ex.answer.strip()]
    return "\n".join(lines)


def fewshot(prompt, rubric, k=1, mention=True, system=None):
    """Short system (rubric criteria, no examples) then k example user/assistant turns, then the task."""
    sys_text = system if system is not None else render_rubric(rubric, examples=0)
    if mention:
        sys_text += "\n\n" + NO_MENTION
    msgs = [{"role": "system", "content": sys_text}]
    for ex in rubric.examples[:k]:
        msgs += [{"role": "user", "content": ex.prompt.strip()}, {"role": "assistant", "content": ex.answer.strip()}]
    return msgs + [{"role": "user", "content": prompt}]


def system_only(text):
    return lambda p: [{"role": "system", "content": text}, {"role": "user", "content": p}]


VARIANTS = {
    # name: (messages(prompt), max_new_tokens)
    "system1": (lambda p: teacher_messages(p, RUBRIC, examples=1, example_turns=False), 64),
    "system1_128": (lambda p: teacher_messages(p, RUBRIC, examples=1, example_turns=False), 128),
    "nomention": (system_only(render_rubric(RUBRIC, examples=1)), 64),
    "turns1": (lambda p: teacher_messages(p, RUBRIC, examples=1), 64),
    "turns2": (lambda p: teacher_messages(p, RUBRIC, examples=2), 64),
    "system2": (lambda p: teacher_messages(p, RUBRIC, examples=2, example_turns=False), 64),
    "compact": (system_only(compact(RUBRIC) + "\n\n" + NO_MENTION), 64),
    "compact_turns2": (lambda p: fewshot(p, RUBRIC, 2, mention=False, system=compact(RUBRIC, examples=0)), 64),
    "turns2_nomention": (lambda p: fewshot(p, RUBRIC, 2, mention=False), 64),
    "student": (student_messages, 64),
    "student_turns2": (lambda p: [m for ex in RUBRIC.examples[:2] for m in
                                    ({"role": "user", "content": ex.prompt.strip()},
                                     {"role": "assistant", "content": ex.answer.strip()})]
                         + [{"role": "user", "content": p}], 64),
}
CRIT = [c.id for c in RUBRIC.criteria]


def run(name, model, tok):
    make, max_new = VARIANTS[name]
    msgs = [make(t.prompt) for t in TASKS]
    ids = [encode_messages(tok, m) for m in msgs]
    samples, stats = sample_chains(model, tok, ids, n=N, max_new_tokens=max_new, temperature=TEMP, seed=SEED,
                                   batch_size=8)
    refs = {t.id: t.reference for t in TASKS}
    recs = []
    for s in samples:
        t = TASKS[s.prompt_index]
        rec = {"id": f"{t.id}:{name}:{s.sample_index}", "task_id": t.id, "text": s.text, "finished": s.finished,
               "n_tokens": s.n_tokens}
        sc = score_chain(RUBRIC, rec, task_references=refs)
        rec.update(scores=sc.scores, total=sc.total)
        recs.append(rec)
    n = len(recs)
    summary = {c: sum(r["scores"][c] >= 0.5 for r in recs) / n for c in CRIT}
    summary["total"] = sum(r["total"] for r in recs) / n
    summary["truncated"] = sum(not r["finished"] for r in recs) / n
    summary["mean_tokens"] = sum(r["n_tokens"] for r in recs) / n
    summary["format_passes"] = sum(r["scores"]["final-answer-line"] >= 0.5 for r in recs)
    summary["seconds"] = round(stats.seconds, 1)
    summary["prompt_tokens"] = len(ids[0])
    summary["max_new_tokens"] = max_new
    return {"summary": summary, "messages_example": msgs[0], "first_chains": recs[:3]}


def row(name, s):
    return (f"{name:20s} fmt {s['final-answer-line']:.3f} ({s['format_passes']:2d}/64) corr {s['correct-answer']:.3f} "
            f"eq {s['shows-equation']:.3f} concise {s['concise']:.3f} pitfall {s['restates-rubric']:.3f} "
            f"total {s['total']:+.3f} trunc {s['truncated']:.3f} tok {s['mean_tokens']:.1f} "
            f"prompt {s['prompt_tokens']} tok {s['seconds']:.0f}s")


if __name__ == "__main__":
    path = OUT
    results = json.loads(path.read_text()) if path.exists() else {}
    model, tok = load_model("smollm2-135m-instruct", device="cpu")
    for name in sys.argv[1:]:
        results[name] = run(name, model, tok)
        path.write_text(json.dumps(results, indent=1))
        print(row(name, results[name]["summary"]), flush=True)
