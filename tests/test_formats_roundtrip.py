"""Round trips per format: import → score → export → import gives the same tasks, criteria,
weights and scores; and a HealthBench file scores exactly as HealthBench's own formula.

The judge is a fixed function of (chain text, criterion description), so the verdicts of the
first scoring and of the re-imported tasks are comparable without a model.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rcsd_core.contracts.rubric import load_rubric, rubric_from_data
from rcsd_core.contracts.tasks import load_tasks, rubric_for_task
from rcsd_core.formats.exports import export_records, write_export
from rcsd_core.formats.imports import import_source, write_import
from rcsd_core.scoring.judges import Verdict
from rcsd_core.scoring.scores import score_text, total_score

FIXTURES = Path(__file__).parent / "fixtures" / "formats"

SHARED = rubric_from_data({"name": "arith", "criteria": [
    {"id": "final-line", "description": "Ends with an Answer line.", "weight": 3,
     "check": {"type": "regex", "pattern": "(?m)^Answer:"}},
    {"id": "correct", "description": "The answer is right.", "weight": 5, "check": {"type": "answer_match"}},
    {"id": "clear", "description": "Explains the steps.", "weight": 1},
    {"id": "rambles", "description": "Rambles.", "weight": -1}]})


class FixedJudge:
    """Yes or no from a hash of the chain text and the criterion's description: the same inputs, the same verdict."""
    name = "fixed"

    def judge(self, criterion, *, prompt, text, reference=None) -> Verdict:
        met = hashlib.sha256(f"{text}|{criterion.description}".encode()).digest()[0] % 2 == 0
        return Verdict(score=1.0 if met else 0.0, probability=None, raw="yes" if met else "no", judge=self.name)


def _source(fmt: str, tmp_path: Path) -> Path:
    if fmt in ("healthbench", "rar", "csv"):
        return FIXTURES / {"healthbench": "healthbench.jsonl", "rar": "rar.jsonl", "csv": "tasks.csv"}[fmt]
    if fmt == "parquet":
        rows = [{"id": "p1", "prompt": "12 - 5?", "reference": "7", "split": "train"},
                {"id": "p2", "prompt": "3 * 4?", "reference": "12", "split": "eval"}]
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / "list.parquet")
        return tmp_path / "list.parquet"
    rows = [{"prompt": [{"role": "user", "content": "9 + 1?"}], "completion": [{"role": "assistant", "content": "10"}]},
            {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "8 / 2?"},
                          {"role": "assistant", "content": "4"}], "reference": "4"}]
    (tmp_path / "trl.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path / "trl.jsonl"


def _chains(tasks) -> list[dict]:
    texts = ["Step one.\nAnswer: 7", "I think it is twelve, maybe, who knows", "Call a doctor.\nAnswer: 10"]
    return [{"id": f"{t.id}:{i}", "task_id": t.id, "text": texts[(n + i) % 3]}
            for n, t in enumerate(tasks) for i in range(2)]


def _score(rubric, tasks, chains) -> dict[str, tuple[dict, float | None]]:
    by_id = {t.id: t for t in tasks}
    out = {}
    for c in chains:
        task = by_id[c["task_id"]]
        task_rubric = rubric_for_task(rubric, task)
        scores, _ = score_text(task_rubric, c["text"], reference=task.reference, prompt=task.prompt, judge=FixedJudge())
        out[c["id"]] = (scores, total_score(task_rubric, scores))
    return out


def _core(task, rubric) -> dict:
    """What must survive: the task's fields and every criterion it is scored with."""
    return {"id": task.id, "prompt": task.prompt, "reference": task.reference, "split": task.split,
            "examples": task.examples,
            "criteria": [c.model_dump() for c in rubric_for_task(rubric, task).criteria]}


@pytest.mark.parametrize("fmt", ["healthbench", "rar", "csv", "parquet", "trl"])
@pytest.mark.parametrize("export", [("trl-prompt-completion", ".parquet"), ("trl-conversational", ".jsonl"),
                                    ("sdft", ".parquet")])
def test_import_score_export_import_keeps_tasks_criteria_and_scores(fmt, export, tmp_path):
    write_import(tmp_path / "in", import_source(fmt, _source(fmt, tmp_path)))
    tasks = load_tasks(tmp_path / "in" / "tasks.jsonl")
    # sources without criteria are scored with the user's shared rubric, which travels as rubric.yaml
    rubric = load_rubric(tmp_path / "in" / "rubric.yaml") if fmt in ("healthbench", "rar") else SHARED
    chains = _chains(tasks)
    before = _score(rubric, tasks, chains)
    assert any(total not in (None, 0.0) for _, total in before.values())
    scores = {cid: {"id": cid, "scores": s, "total": t} for cid, (s, t) in before.items()}

    fmt_out, suffix = export
    out = tmp_path / f"export{suffix}"
    write_export(out, export_records(fmt_out, chains, tasks=tasks, rubric=rubric, scores=scores))
    again = import_source("trl", out).tasks

    assert [_core(t, rubric) for t in again] == [_core(t, rubric) for t in tasks]
    if fmt_out != "trl-prompt-completion":       # conversational exports give the conversation back
        assert [t.model_extra.get("messages") for t in again] == [t.model_extra.get("messages") for t in tasks]
    assert _score(rubric, again, chains) == before
    if fmt_out != "sdft":                        # the exported totals are the scores' own
        rows = pq.read_table(out).to_pylist() if suffix == ".parquet" else \
            [json.loads(line) for line in out.read_text().splitlines()]
        assert {r["id"]: r["total"] for r in rows} == {cid: t for cid, (_, t) in before.items()}


# ---------------------------------------------------------------------------- HealthBench's formula

def healthbench_score(points: list[float], met: list[bool]) -> float | None:
    """HealthBench's per-example score (simple-evals calculate_score), written from its definition:
    Σ points of met criteria (negative points included) / Σ positive points, not clipped."""
    possible = sum(p for p in points if p > 0)
    if possible == 0:
        return None
    return sum(p for p, m in zip(points, met) if m) / possible


def test_healthbench_file_scores_as_healthbench_for_every_verdict_pattern():
    tasks = import_source("healthbench", FIXTURES / "healthbench.jsonl").tasks
    rubric = load_rubric_for(tasks)
    for task in tasks:
        task_rubric = rubric_for_task(rubric, task)
        points = [c.weight for c in task_rubric.criteria]
        for met in itertools.product([True, False], repeat=len(points)):
            scores = {c.id: 1.0 if m else 0.0 for c, m in zip(task_rubric.criteria, met)}
            assert total_score(task_rubric, scores) == pytest.approx(healthbench_score(points, list(met)), abs=1e-12)
    # by hand, hb-dose-001 (7, 5, 3, -8): met, unmet, met, flaw present → (7 + 3 - 8) / 15
    dose = rubric_for_task(rubric, tasks[0])
    ids = [c.id for c in dose.criteria]
    assert total_score(dose, dict(zip(ids, [1.0, 0.0, 1.0, 1.0]))) == pytest.approx(2 / 15)
    # only the flaw: below zero, as HealthBench's per-example score (it clips only the mean over examples)
    assert total_score(dose, dict(zip(ids, [0.0, 0.0, 0.0, 1.0]))) == pytest.approx(-8 / 15)


def load_rubric_for(tasks):
    from rcsd_core.formats.records import minimal_rubric

    return minimal_rubric("healthbench", "HealthBench", per_task=True)
