"""Ablation: does the rubric matter, and where does the teacher's pull come from?

The signal report (`design/signals.py`) says whether a teacher shown the rubric behaves
differently from the student. This report asks *why*: the student's chains are sampled once and
shared, then the teacher is sampled again under five contexts (every variant scored with the
real rubric, and its per-token divergence measured on the same student chains):

| variant | the teacher's system message | worked examples as turns |
|---|---|---|
| `full` | the rubric (description + criteria) | yes |
| `criteria_only` | the rubric | no |
| `examples_only` | only the no-mention line | yes |
| `generic` | a generic "answer well" rubric (`GENERIC_RUBRIC`) | no |
| `shuffled` | another rubric's description and criteria (the `shuffled_source` it names) | yes, this rubric's |

So `criteria_only` vs `generic` isolates the criteria text without examples, and `full` vs
`shuffled` the criteria text with the examples held fixed. Per criterion and variant the report
gives student / teacher pass rates, gap = teacher − student with a 95% bootstrap interval and
whether the interval excludes zero in the direction the weight rewards (`helps`); per variant the
mean per-token divergence of the teacher from the student on the student's chains, with an
interval. `verdict` is one line decided from those intervals (`cause` is its code, see
`decide_verdict`). `attribution` leaves one criterion at a time out of the full teacher context
and reports the share of the divergence mass (Σ over tokens) and of each criterion's gap that
moves.

    report = run_ablation(rubric, tasks, ModelBackend(model, tokenizer), samples=2, max_new_tokens=64,
                          shuffled=(other_rubric, "sample rubric 'science-explanations'"))
    report["verdict"]   # "The teacher's pull comes from the worked examples: ..."

CLI: `rcsd ablate --rubric R --tasks T [--model M] [--samples N] [--max-new-tokens K] --out A.json`.
Cost: (1 + 5 + number of criteria) × samples × tasks sampled chains; `attribution=False` drops
the last term. Any backend with `sample` and `divergences` (see `ModelBackend`) can stand in for
the model, which is how the tests script teachers whose answer is known.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence

from rcsd_core.contracts.config import TeacherLayout
from rcsd_core.contracts.messages import Messages
from rcsd_core.contracts.rubric import Criterion, Rubric
from rcsd_core.contracts.tasks import Task
from rcsd_core.files import strict_json
from rcsd_core.modeling.contexts import student_messages, teacher_messages
from rcsd_core.scoring.scores import score_chain
from rcsd_core.scoring.stats import bootstrap_diff_ci, bootstrap_mean_ci, excludes_zero, mean_or_none
from rcsd_core.design.signals import compare, pass_values

VARIANTS = ("full", "criteria_only", "examples_only", "generic", "shuffled")

GENERIC_RUBRIC = Rubric(
    name="generic",
    description="Answer the user's question well.",
    criteria=[
        Criterion(id="correct", title="Correct", description="The answer is correct and complete.", weight=3),
        Criterion(id="clear", title="Clear", description="The answer is clear and well organised.", weight=2),
        Criterion(id="focused", title="Focused", description="The answer stays on the question, without padding.",
                  weight=1),
    ],
)


class ChainBackend(Protocol):
    """What the ablation needs from a model: sample chains for conversations, and per-chain divergence."""

    def sample(self, prompts: list[Messages], *, n: int, max_new_tokens: int, seed: int,
               progress: Callable[[int], None] | None = None) -> list[list[dict]]:
        """n samples per conversation: [[{"text", "n_tokens", "finished"}, ...], ...]."""

    def divergences(self, student: list[Messages], teacher: list[Messages], chains: list[dict]) -> list[dict]:
        """Per chain {"mean": per-token divergence or None, "n_tokens": int}, chains[i] under student[i]/teacher[i]."""


class ModelBackend:
    """The ChainBackend of a loaded (model, tokenizer): the sampler and the signal report's forwards."""

    def __init__(self, model, tokenizer, *, temperature: float = 1.0, divergence: str = "forward_kl",
                 batch_size: int = 8):
        self.model, self.tokenizer = model, tokenizer
        self.temperature, self.divergence, self.batch_size = temperature, divergence, batch_size

    def sample(self, prompts, *, n, max_new_tokens, seed, progress=None):
        from rcsd_core.contracts.messages import encode_messages
        from rcsd_core.modeling.generation import sample_chains

        ids = [encode_messages(self.tokenizer, m) for m in prompts]
        last = [0]

        def report(done: int, _total: int) -> None:
            if progress:
                progress(done - last[0])
            last[0] = done

        drawn, _ = sample_chains(self.model, self.tokenizer, ids, n=n, max_new_tokens=max_new_tokens,
                                 temperature=self.temperature, seed=seed, batch_size=self.batch_size,
                                 progress=report)
        out: list[list[dict]] = [[None] * n for _ in prompts]
        for s in drawn:
            out[s.prompt_index][s.sample_index] = {"text": s.text, "n_tokens": s.n_tokens, "finished": s.finished}
        return out

    def divergences(self, student, teacher, chains):
        from rcsd_core.contracts.messages import encode_messages
        from rcsd_core.design.signals import prompt_pair_divergences

        rows = prompt_pair_divergences(self.model, self.tokenizer, [encode_messages(self.tokenizer, m) for m in student],
                                       [encode_messages(self.tokenizer, m) for m in teacher], chains,
                                       divergence=self.divergence)
        return [{"mean": r["mean"], "n_tokens": r["n_tokens"]} for r in rows]


# ---------------------------------------------------------------------------- contexts


def variant_messages(variant: str, task: Task, rubric: Rubric, *, layout: TeacherLayout = TeacherLayout(),
                     shuffled: Rubric | None = None) -> Messages:
    """The teacher's conversation for a task under one ablation variant (see the module table)."""
    common = dict(reference=task.reference, include_reference=layout.include_reference, examples=layout.examples,
                  example_turns=layout.example_turns)
    if variant == "full":
        return teacher_messages(task.prompt, rubric, **common)
    if variant == "criteria_only":
        return teacher_messages(task.prompt, rubric, **{**common, "examples": 0})
    if variant == "examples_only":
        return teacher_messages(task.prompt, rubric, criteria=False, **{**common, "example_turns": True})
    if variant == "generic":
        return teacher_messages(task.prompt, GENERIC_RUBRIC, **{**common, "examples": 0})
    if variant == "shuffled":
        if shuffled is None:
            raise ValueError("the shuffled variant needs another rubric")
        swapped = shuffled.model_copy(update={"examples": rubric.examples})
        return teacher_messages(task.prompt, swapped, **common)
    raise ValueError(f"unknown ablation variant {variant!r}")


def without_criterion(rubric: Rubric, criterion_id: str) -> Rubric:
    """The rubric with one criterion left out (the teacher context of the attribution)."""
    kept = [c for c in rubric.criteria if c.id != criterion_id]
    return rubric.model_copy(update={"criteria": kept})


# ---------------------------------------------------------------------------- pure summaries


def criterion_ids(rubric: Rubric, records: Sequence[dict]) -> list[str]:
    """The rubric's criteria in order, then any other criterion a record was scored on (per-task criteria)."""
    ids = [c.id for c in rubric.criteria]
    for r in records:
        ids += [cid for cid in r.get("scores", {}) if cid not in ids]
    return ids


def weight_of(rubric: Rubric, criterion_id: str) -> float:
    return next((c.weight for c in rubric.criteria if c.id == criterion_id), 1.0)


def divergence_summary(rows: Sequence[dict], *, seed: int = 0) -> dict:
    """Mean of per-chain mean divergences with a bootstrap interval, and the mass Σ mean·tokens."""
    means = [r["mean"] for r in rows if r.get("mean") is not None]
    mean, (low, high) = bootstrap_mean_ci(means, seed=seed)
    mass = sum(r["mean"] * r["n_tokens"] for r in rows if r.get("mean") is not None)
    return {"mean": mean, "ci": [low, high], "mass": mass, "n": len(means)}


def summarize_variant(rubric: Rubric, student: Sequence[dict], teacher: Sequence[dict], divergence_rows: Sequence[dict],
                      *, seed: int = 0) -> dict:
    """One variant: per criterion the signal comparison, the total's, and the divergence."""
    ids = criterion_ids(rubric, list(student) + list(teacher))
    criteria = {cid: compare(pass_values(list(student), cid), pass_values(list(teacher), cid), seed=seed,
                             weight=weight_of(rubric, cid)) for cid in ids}
    total = compare([r["total"] for r in student if r.get("total") is not None],
                    [r["total"] for r in teacher if r.get("total") is not None], seed=seed)
    div = divergence_summary(divergence_rows, seed=seed)
    return {"criteria": criteria, "total": total, "divergence": div["mean"], "divergence_ci": div["ci"],
            "divergence_mass": div["mass"], "per_chain_divergence": [r.get("mean") for r in divergence_rows]}


def pulled(row: dict) -> bool:
    """The teacher passes (or, for a pitfall, avoids) the criterion more than the student, beyond the interval."""
    return bool(row.get("signal")) and row.get("helps") is True


def _names(ids: Sequence[str]) -> str:
    return ", ".join(ids)


def decide_verdict(variants: dict[str, dict]) -> tuple[str, str, dict[str, str]]:
    """(cause, one-line verdict, per-criterion cause) from the variants' intervals.

    The criteria the full rubric's teacher pulls (gap interval excludes zero, the right way) are
    each classed by which reduced context keeps that pull on its own: `examples` (examples_only
    does, criteria_only does not), `criteria` (the reverse), `either` (both), `combination`
    (neither). The report's cause is that class when all pulled criteria share it, else `mixed`.
    `generic` overrides them when the generic rubric pulls every one of those criteria too
    (nothing distinguishable from a generic rubric); `none` when the full rubric pulls nothing.
    A `criteria` or `either` verdict notes it when another rubric's criteria (shuffled) pull too.
    """
    full = variants["full"]["criteria"]
    targets = [cid for cid, row in full.items() if pulled(row)]
    if not targets:
        wrong = [cid for cid, row in full.items() if row.get("signal") and row.get("helps") is False]
        extra = f"; it moves {_names(wrong)} the wrong way" if wrong else ""
        return "none", ("No pull: with the full rubric the teacher passes no criterion more often than the student "
                        f"beyond the 95% interval{extra}. Distilling from it has nothing to transfer."), {}

    def keeps(variant: str, cid: str) -> bool:
        row = variants.get(variant, {}).get("criteria", {}).get(cid)
        return row is not None and pulled(row)

    per: dict[str, str] = {}
    for cid in targets:
        ex, cr = keeps("examples_only", cid), keeps("criteria_only", cid)
        per[cid] = "either" if ex and cr else "examples" if ex else "criteria" if cr else "combination"
    which = _names(targets)
    if "generic" in variants and all(keeps("generic", cid) for cid in targets):
        return "generic", (f"Nothing distinguishable from a generic rubric: a generic 'answer well' system prompt "
                           f"pulls {which} beyond the interval as well."), per
    kinds = set(per.values())
    if len(kinds) > 1:
        parts = "; ".join(f"{kind} for {_names([c for c in targets if per[c] == kind])}" for kind in sorted(kinds))
        return "mixed", f"Mixed: the teacher's pull comes from {parts}.", per
    cause = kinds.pop()
    text = {
        "examples": (f"The teacher's pull comes from the worked examples: shown the examples alone it still pulls "
                     f"{which}; shown the criteria text alone it does not."),
        "criteria": (f"The teacher's pull comes from the criteria text: shown the criteria alone it still pulls "
                     f"{which}; shown the worked examples alone it does not."),
        "either": (f"Both the criteria text and the worked examples pull {which}, each on its own."),
        "combination": (f"The pull on {which} needs the criteria text and the worked examples together: "
                        "neither alone shows it."),
    }[cause]
    if cause in ("criteria", "either") and "shuffled" in variants and all(keeps("shuffled", c) for c in targets):
        text += " Another rubric's criteria with the same examples pull as much, so the pull is not specific to these criteria."
    return cause, text, per


def attribution_entry(criterion_id: str, full: dict, left_out: dict, full_teacher: Sequence[dict],
                      left_teacher: Sequence[dict], full_rows: Sequence[dict], left_rows: Sequence[dict],
                      rubric: Rubric, *, seed: int = 0) -> dict:
    """What moves when one criterion leaves the teacher's context: the share of the divergence mass
    (Σ over the student's tokens, paired by chain) and of each criterion's pass-rate gap."""
    paired = [(a["mean"] * a["n_tokens"], b["mean"] * b["n_tokens"]) for a, b in zip(full_rows, left_rows)
              if a.get("mean") is not None and b.get("mean") is not None]
    full_mass = sum(a for a, _ in paired)
    moved, (low, high) = bootstrap_diff_ci([a for a, _ in paired], [b for _, b in paired], paired=True, seed=seed)
    n = len(paired)
    mass = {"full": full_mass, "left_out": sum(b for _, b in paired),
            "share": (full_mass - sum(b for _, b in paired)) / full_mass if full_mass else None,
            "moved_per_chain": moved, "ci": [low, high], "signal": excludes_zero((low, high)), "n": n}
    gaps = {}
    for cid, row in full["criteria"].items():
        other = left_out["criteria"].get(cid, {})
        change, (clow, chigh) = bootstrap_diff_ci(pass_values(list(full_teacher), cid),
                                                  pass_values(list(left_teacher), cid), seed=seed)
        share = (row["gap"] - other["gap"]) / row["gap"] if row.get("gap") and other.get("gap") is not None else None
        gaps[cid] = {"full": row.get("gap"), "left_out": other.get("gap"), "moved": change, "ci": [clow, chigh],
                     "share": share, "signal": excludes_zero((clow, chigh))}
    return {"criterion": criterion_id, "divergence_mass": mass, "gap": gaps,
            "own_gap_share": gaps.get(criterion_id, {}).get("share")}


# ---------------------------------------------------------------------------- the report


def _score(rubric: Rubric, tasks: Sequence[Task], drawn: list[list[dict]], context: str, judge=None) -> list[dict]:
    references = {t.id: t.reference for t in tasks}
    prompts = {t.id: t.prompt for t in tasks}
    records = []
    for task, samples in zip(tasks, drawn):
        for i, s in enumerate(samples):
            record = {"id": f"{task.id}:{context}:{i}", "task_id": task.id, "context": context, "sample": i,
                      "text": s["text"], "n_tokens": s["n_tokens"], "finished": bool(s["finished"]),
                      "reference": task.reference}
            scored = score_chain(rubric, record, task_references=references, task_prompts=prompts, judge=judge)
            record.update({k: v for k, v in scored.to_record().items() if k != "id"})
            records.append(record)
    return records


def _chain_view(records: Sequence[dict]) -> list[dict]:
    return [{k: r[k] for k in ("id", "task_id", "text", "scores", "total")} for r in records]


def run_ablation(rubric: Rubric, tasks: list[Task], backend: ChainBackend, *, samples: int = 2,
                 max_new_tokens: int = 64, seed: int = 0, shuffled: tuple[Rubric, str] | None = None,
                 layout: TeacherLayout = TeacherLayout(), attribution: bool = True, judge=None,
                 progress: Callable[[int, int], None] | None = None, model_name: str | None = None) -> dict:
    """The ablation report (JSON-ready): variants, verdict, cause, attribution, and the chains behind them.

    `shuffled` is (another rubric, a phrase naming it); without it the `shuffled` variant is left
    out and the report says so. `progress(done, total)` counts sampled chains.
    """
    if not tasks:
        raise ValueError("run_ablation needs at least one task")
    variants = [v for v in VARIANTS if v != "shuffled" or shuffled is not None]
    shown = rubric.trained  # held-out criteria are never in the teacher context
    leave_out = [c.id for c in shown] if attribution and len(shown) > 1 else []
    total = samples * len(tasks) * (1 + len(variants) + len(leave_out))
    done = [0]

    def tick(count: int) -> None:
        done[0] += count
        if progress:
            progress(min(done[0], total), total)

    def draw(prompts: list[Messages], context: str) -> list[dict]:
        drawn = backend.sample(prompts, n=samples, max_new_tokens=max_new_tokens, seed=seed, progress=tick)
        return _score(rubric, tasks, drawn, context, judge)

    by_id = {t.id: t for t in tasks}
    student_prompts = [student_messages(t.prompt) for t in tasks]
    student = draw(student_prompts, "student")
    chain_students = [student_messages(by_id[r["task_id"]].prompt) for r in student]

    def teacher_run(build: Callable[[Task], Messages], context: str) -> tuple[list[dict], list[dict]]:
        teacher = draw([build(t) for t in tasks], context)
        rows = backend.divergences(chain_students, [build(by_id[r["task_id"]]) for r in student], student)
        return teacher, rows

    other = shuffled[0] if shuffled else None
    report_variants: dict[str, dict] = {}
    teachers: dict[str, tuple[list[dict], list[dict]]] = {}
    for v in variants:
        teachers[v] = teacher_run(lambda t, v=v: variant_messages(v, t, rubric, layout=layout, shuffled=other), v)
        report_variants[v] = summarize_variant(rubric, student, *teachers[v], seed=seed)
        report_variants[v]["teacher_chains"] = _chain_view(teachers[v][0])
    for v in variants:
        if v == "full":
            continue
        for cid, row in report_variants[v]["criteria"].items():
            diff, (low, high) = bootstrap_diff_ci(pass_values(teachers[v][0], cid), pass_values(teachers["full"][0], cid),
                                                  seed=seed)
            row["vs_full"] = {"diff": diff, "ci": [low, high], "signal": excludes_zero((low, high))}
    cause, verdict, per = decide_verdict(report_variants)

    attributions = []
    for cid in leave_out:
        reduced = without_criterion(rubric, cid)
        teacher, rows = teacher_run(lambda t: variant_messages("full", t, reduced, layout=layout), f"without-{cid}")
        summary = summarize_variant(rubric, student, teacher, rows, seed=seed)
        attributions.append(attribution_entry(cid, report_variants["full"], summary, teachers["full"][0], teacher,
                                              teachers["full"][1], rows, rubric, seed=seed))
    return strict_json({
        "variants": report_variants,
        "verdict": verdict,
        "cause": cause,
        "criterion_causes": per,
        "attribution": attributions,
        "shuffled_source": shuffled[1] if shuffled else None,
        "student_chains": _chain_view(student),
        "rubric": rubric.name,
        "rubric_version": rubric.version,
        "model": model_name,
        "tasks": len(tasks),
        "samples": samples,
        "max_new_tokens": max_new_tokens,
        "seed": seed,
        "variant_contexts": {
            "full": "rubric (description and criteria) as the system message, worked examples as turns",
            "criteria_only": "rubric as the system message, no worked examples",
            "examples_only": "no rubric text, worked examples as turns",
            "generic": "a generic 'answer well' rubric, no worked examples",
            "shuffled": (f"{shuffled[1]}'s description and criteria with this rubric's worked examples"
                         if shuffled else "left out: no other rubric given"),
        },
    })


def ablation_table(report: dict):
    """Per variant and criterion (then the total): student, teacher, gap, interval, signal; and divergence."""
    import pandas as pd

    rows = []
    for name, v in report["variants"].items():
        for cid, c in list(v["criteria"].items()) + [("total", v["total"])]:
            low, high = c["ci"]
            rows.append({"variant": name, "criterion": cid, "student": c["student"], "teacher": c["teacher"],
                         "gap": c["gap"], "ci_low": low, "ci_high": high,
                         "signal": "yes" if c["signal"] else "no", "divergence": v["divergence"]})
    return pd.DataFrame(rows)


def attribution_table(report: dict):
    """One row per left-out criterion: divergence mass share moved, its own gap then and without it."""
    import pandas as pd

    rows = []
    for a in report.get("attribution", []):
        own = a["gap"].get(a["criterion"], {})
        rows.append({"left_out": a["criterion"], "divergence_share": a["divergence_mass"]["share"],
                     "mass_signal": "yes" if a["divergence_mass"]["signal"] else "no",
                     "own_gap": own.get("full"), "own_gap_without": own.get("left_out"),
                     "own_gap_share": a["own_gap_share"]})
    return pd.DataFrame(rows, columns=["left_out", "divergence_share", "mass_signal", "own_gap", "own_gap_without",
                                       "own_gap_share"])
