"""Per-task criteria wherever chains are scored and summarised: score_chain, the summary table,
criterion groups (weight class, tag), round metrics, lint, before/after and the CLI."""

from __future__ import annotations

import json

import pytest

from rcsd_core.cli import main
from rcsd_core.contracts.rubric import Criterion, rubric_from_data
from rcsd_core.contracts.tasks import all_criteria, task_criteria, task_from_data
from rcsd_core.design.lint import lint_rubric
from rcsd_core.design.signals import group_pass_values
from rcsd_core.evaluation.before_after import compare_eval
from rcsd_core.scoring.groups import criterion_groups, group_table, group_values, weight_class
from rcsd_core.scoring.scores import score_chain, summarize_scores
from rcsd_core.training.metrics import eval_metrics, train_metrics

SHARED = rubric_from_data({"name": "support", "criteria": [
    {"id": "polite", "description": "Thanks the customer.", "weight": 2,
     "check": {"type": "contains", "terms": ["thank"]}}]})

TASKS = [
    task_from_data({"id": "t1", "prompt": "My order arrived broken.", "criteria": [
        {"id": "offers-refund", "description": "Offers a refund.", "weight": 5, "tags": ["axis:completeness"],
         "check": {"type": "contains", "terms": ["refund"]}},
        {"id": "blames-customer", "description": "Blames the customer.", "weight": -2,
         "check": {"type": "contains", "terms": ["your fault"]}}]}),
    task_from_data({"id": "t2", "prompt": "You were rude to me.", "criteria_mode": "replace", "criteria": [
        {"id": "apologises", "description": "Says sorry.", "weight": 3, "tags": ["axis:tone"],
         "check": {"type": "contains", "terms": ["sorry"]}}]}),
    task_from_data({"id": "t3", "prompt": "Hello?"}),
]
BY_ID = {t.id: t for t in TASKS}
CHAINS = [
    {"id": "c1", "task_id": "t1", "text": "Thank you, here is a refund."},
    {"id": "c2", "task_id": "t1", "text": "It is your fault."},
    {"id": "c3", "task_id": "t2", "text": "I am sorry, thank you."},
    {"id": "c4", "task_id": "t3", "text": "hello"},
    {"id": "c5", "task_id": "unknown", "text": "thanks"},
]


def scored() -> list[dict]:
    return [{**score_chain(SHARED, c, tasks=BY_ID).to_record(), "task_id": c["task_id"]} for c in CHAINS]


# ---------------------------------------------------------------------------- scoring


def test_each_chain_is_scored_on_its_tasks_rubric():
    records = {r["id"]: r for r in scored()}
    assert records["c1"]["scores"] == {"polite": 1.0, "offers-refund": 1.0, "blames-customer": 0.0}
    assert records["c1"]["total"] == pytest.approx(7 / 7)
    assert records["c2"]["total"] == pytest.approx(-2 / 7)       # (2·0 + 5·0 − 2·1) / (2 + 5)
    assert records["c3"]["scores"] == {"apologises": 1.0}         # replace: the shared criterion is gone
    assert records["c4"]["scores"] == {"polite": 0.0}             # a plain task: the shared rubric
    assert records["c5"]["scores"] == {"polite": 1.0}             # unknown task: the shared rubric


# ---------------------------------------------------------------------------- groups


@pytest.mark.parametrize("weight, expected", [(5, "essential"), (10, "essential"), (4.9, "important"),
                                              (3, "important"), (2.9, "optional"), (0.1, "optional"),
                                              (-0.5, "pitfall"), (-10, "pitfall")])
def test_weight_classes(weight, expected):
    assert weight_class(weight) == expected


def test_groups_of_a_criterion_are_its_weight_class_then_its_tags():
    c = Criterion(id="x", description="d", weight=-1, tags=["axis:accuracy", "level:example"])
    assert criterion_groups(c) == ["weight:pitfall", "tag:axis:accuracy", "tag:level:example"]


def test_group_values_over_the_pairs_where_the_criterion_applies():
    own = task_criteria(SHARED, TASKS)
    assert [c.id for c in own["t1"]] == ["offers-refund", "blames-customer"] and own["t3"] == []
    values = group_values(scored(), lambda r: own.get(r["task_id"], []))
    assert values == {"weight:essential": [1.0, 0.0], "weight:important": [1.0], "weight:pitfall": [0.0, 1.0],
                      "tag:axis:completeness": [1.0, 0.0], "tag:axis:tone": [1.0]}
    table = group_table(values).set_index("group")
    assert table.loc["weight:pitfall", "pass_rate"] == 0.5 and table.loc["weight:pitfall", "n"] == 2
    # signal's pass values: 0/1 at the 0.5 threshold
    partial = [{"task_id": "t1", "scores": {"offers-refund": 0.7, "blames-customer": None}}]
    assert group_pass_values(partial, own) == {"weight:essential": [1.0], "tag:axis:completeness": [1.0]}


def test_all_criteria_lists_shared_then_task_criteria():
    assert [c.id for c in all_criteria(SHARED, TASKS)] == ["polite", "offers-refund", "blames-customer",
                                                          "apologises"]


def test_summary_shows_shared_criteria_then_groups():
    table = summarize_scores(SHARED, scored(), TASKS)
    assert list(table["criterion"]) == ["polite", "weight:essential", "weight:important", "weight:pitfall",
                                        "tag:axis:completeness", "tag:axis:tone", "total"]
    t = table.set_index("criterion")
    assert t.loc["polite", "scored"] == 4 and t.loc["polite", "pass_rate"] == 0.5   # c1 c2 c4 c5, not c3
    assert t.loc["weight:essential", "pass_rate"] == 0.5 and t.loc["weight:essential", "scored"] == 2
    assert t.loc["weight:important", "pass_rate"] == 1.0
    totals = [1.0, -2 / 7, 1.0, 0.0, 1.0]
    assert t.loc["total", "mean"] == pytest.approx(sum(totals) / 5)


def test_summary_counts_unscored_task_criteria_as_null():
    tasks = [task_from_data({"id": "j", "prompt": "p", "criteria": [
        {"id": "kind", "description": "Is kind.", "weight": 4}]})]  # judged: null without a judge
    records = [{**score_chain(SHARED, {"id": "a", "task_id": "j", "text": "x"}, tasks={"j": tasks[0]}).to_record(),
                "task_id": "j"}]
    row = summarize_scores(SHARED, records, tasks).set_index("criterion").loc["weight:important"]
    assert row["scored"] == 0 and row["null"] == 1


# ---------------------------------------------------------------------------- round metrics


def test_metrics_log_shared_criteria_by_id_and_task_criteria_by_group():
    records = [{**r, "n_tokens": 4} for r in scored()]
    own = {k: v for k, v in task_criteria(SHARED, TASKS).items() if v}
    stats = [{"tokens": 10, "loss_sum": 1.0, "div_sum": 1.0, "sampling_s": 0, "teacher_s": 0, "student_s": 0,
              "optimizer_s": 0}]
    m = train_metrics(1, stats, records, ["polite"], method="rcsd", grad_norm=None, lr=1e-4, seconds=1.0,
                      peak_gib=0.0, own=own)
    assert m["criterion/polite"] == 0.5
    assert m["group/weight:essential"] == 0.5 and m["group/weight:important"] == 1.0
    assert m["group/weight:pitfall"] == 0.5 and m["group/tag:axis:tone"] == 1.0
    assert not any(k.startswith("criterion/") and k != "criterion/polite" for k in m)
    e = eval_metrics(records, ["polite"], div_sum=0.0, div_tokens=0, seconds=0.0, own=own)
    assert e["eval/group/tag:axis:completeness"] == 0.5 and e["eval/criterion/polite"] == 0.5
    plain = eval_metrics(records, ["polite"], div_sum=0.0, div_tokens=0, seconds=0.0)
    assert not any("group/" in k for k in plain)


# ---------------------------------------------------------------------------- lint


def test_lint_judges_discrimination_over_the_chains_a_criterion_applies_to():
    chains = [score_chain(SHARED, {"id": f"s{i}", "task_id": "t2", "text": "sorry"}, tasks=BY_ID).to_record()
              for i in range(8)]
    found = {(f.code, tuple(f.criteria)) for f in lint_rubric(SHARED, chains, tasks=TASKS)}
    assert ("saturated", ("apologises",)) in found
    assert not any(code == "unscored" for code, _ in found)   # polite applies to none of these chains
    # without the tasks, the shared criterion looks unscored on all 8
    assert ("unscored", ("polite",)) in {(f.code, tuple(f.criteria)) for f in lint_rubric(SHARED, chains)}


def test_lint_names_the_task_of_a_near_duplicate_criterion():
    dup = task_from_data({"id": "t9", "prompt": "p", "criteria": [
        {"id": "thanks", "description": "Thanks the customer.", "weight": 1,
         "check": {"type": "contains", "terms": ["thank"]}}]})
    found = [f for f in lint_rubric(SHARED, tasks=[dup]) if f.code == "near-duplicate"]
    assert found and found[0].criteria == ["polite", "thanks"] and found[0].message.startswith("task 't9'")


# ---------------------------------------------------------------------------- before / after


def test_compare_eval_adds_a_paired_row_per_group():
    before = [{"task_id": "t1", "scores": {"polite": 0.0, "offers-refund": 0.0, "blames-customer": 1.0},
               "total": -2 / 7},
              {"task_id": "t2", "scores": {"apologises": 0.0}, "total": 0.0}]
    after = [{"task_id": "t1", "scores": {"polite": 1.0, "offers-refund": 1.0, "blames-customer": 0.0}, "total": 1.0},
             {"task_id": "t2", "scores": {"apologises": 1.0}, "total": 1.0}]
    table = compare_eval(before, after, SHARED, tasks=TASKS).set_index("criterion")
    assert list(table.index) == ["polite", "weight:essential", "weight:important", "weight:pitfall",
                                 "tag:axis:completeness", "tag:axis:tone", "total"]
    assert table.loc["weight:essential", "before"] == 0.0 and table.loc["weight:essential", "after"] == 1.0
    assert table.loc["weight:pitfall", "diff"] == -1.0 and table.loc["weight:important", "prompts"] == 1
    assert table.loc["polite", "prompts"] == 1      # t2 replaces the shared rubric: polite is t1's only


# ---------------------------------------------------------------------------- CLI


def _files(tmp_path, tasks):
    rubric = tmp_path / "r.yaml"
    rubric.write_text("name: support\ncriteria:\n  - {id: polite, description: Thanks the customer., weight: 2, "
                      "check: {type: contains, terms: [thank]}}\n", encoding="utf-8")
    t = tmp_path / "t.jsonl"
    t.write_text("".join(json.dumps(x) + "\n" for x in tasks), encoding="utf-8")
    c = tmp_path / "c.jsonl"
    c.write_text("".join(json.dumps(x) + "\n" for x in CHAINS), encoding="utf-8")
    return rubric, t, c


def test_cli_score_uses_each_tasks_rubric_and_prints_groups(tmp_path, capsys):
    rubric, tasks, chains = _files(tmp_path, [t.model_dump(exclude_defaults=True) for t in TASKS])
    out = tmp_path / "s.jsonl"
    assert main(["score", "--rubric", str(rubric), "--chains", str(chains), "--tasks", str(tasks),
                 "--out", str(out)]) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines[2]["scores"] == {"apologises": 1.0}
    printed = capsys.readouterr().out
    assert "weight:essential" in printed and "tag:axis:tone" in printed


def test_cli_refuses_a_task_criterion_clashing_with_a_shared_id(tmp_path, capsys):
    clash = {"id": "t1", "prompt": "p", "criteria": [{"id": "polite", "description": "x", "weight": 1}]}
    rubric, tasks, chains = _files(tmp_path, [clash])
    out = tmp_path / "s.jsonl"
    for argv in (["score", "--rubric", str(rubric), "--chains", str(chains), "--tasks", str(tasks),
                  "--out", str(out)],
                 ["lint", "--rubric", str(rubric), "--tasks", str(tasks)],
                 ["signal", "--rubric", str(rubric), "--tasks", str(tasks), "--model", "tiny-random",
                  "--out", str(tmp_path / "s.json")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "criterion 'polite' has the id of a shared rubric criterion" in err[0]
        assert str(tasks) in err[0]
    assert not out.exists()


# ---------------------------------------------------------------------------- signal


def test_signal_reports_task_criteria_over_their_own_chains_and_groups_them(tiny):
    from rcsd_core.design.signals import measure_signal, signal_table

    model, tokenizer = tiny
    report = measure_signal(SHARED, TASKS, model=model, tokenizer=tokenizer, samples=2, max_new_tokens=4)
    c = report["criteria"]
    assert list(c) == ["polite", "offers-refund", "blames-customer", "apologises"]
    # n per criterion: 2 chains per context for each task that has it
    assert (c["polite"]["n_student"], c["offers-refund"]["n_student"], c["apologises"]["n_teacher"]) == (4, 2, 2)
    assert c["polite"]["shared"] and not c["apologises"]["shared"]
    assert set(report["groups"]) == {"weight:essential", "weight:important", "weight:pitfall",
                                     "tag:axis:completeness", "tag:axis:tone"}
    assert report["groups"]["weight:pitfall"]["n_student"] == 2
    table = signal_table(report)
    assert list(table["criterion"]) == ["polite", "weight:essential", "weight:important", "weight:pitfall",
                                        "tag:axis:completeness", "tag:axis:tone", "total"]
