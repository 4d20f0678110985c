"""Reviewed chains for annotation tools: Argilla records and Label Studio tasks.

Each chain becomes one item with the prompt and the chain's text, rcsd's automatic per-criterion
verdicts as model suggestions (predictions), and — where a human reviewed it — the reviewer's
per-criterion verdicts and decision as responses (annotations). A verdict is "yes" (score 1.0:
the criterion is met, or for a pitfall the flaw is present), "no" (0.0) or left out (unscored).

Argilla (v2 SDK, `rg.Record.to_dict()` / `from_dict` shape; log them with
`dataset.records.log([rg.Record.from_dict(r) for r in records])`):

    {"id": chain id, "fields": {"prompt": …, "response": …},
     "metadata": {"task_id", "total", "decision", "reviewer"},
     "suggestions": {<criterion id>: {"value": "yes"|"no", "score": null, "agent": "rcsd"}},
     "responses": {<criterion id>: [{"value": "yes"|"no", "user_id": reviewer}], "decision": [...]}}

  The data set's settings: TextField `prompt` and `response`; one LabelQuestion per criterion id
  with labels yes/no (its title as the question's title); a LabelQuestion `decision` with
  accept / reject / rubric-needs-work. Argilla wants user ids of its own users: map reviewer
  names to them before logging responses, or drop `responses` to review afresh.

Label Studio (JSON import: a list of tasks):

    {"data": {"chain_id", "task_id", "prompt", "response", "reviewer"?},
     "predictions": [{"model_version": "rcsd", "score": total, "result": [<choices result>…]}],
     "annotations": [{"result": [<choices result>…], "ground_truth": false}]}

  a result is {"from_name": <criterion id>, "to_name": "response", "type": "choices",
  "value": {"choices": ["yes"]}}; `labelstudio_config(criteria)` gives the labeling config
  (a Text `response` and one Choices per criterion, plus `decision`). Label Studio's
  `completed_by` is one of its own user ids, so the reviewer's name goes in `data.reviewer`.
"""

from __future__ import annotations

from typing import Any, Iterable
from xml.sax.saxutils import quoteattr

from rcsd_core.contracts.rubric import Criterion

DECISION = "decision"


def verdict_label(score: Any) -> str | None:
    if score is None:
        return None
    return "yes" if float(score) >= 0.5 else "no"


def argilla_records(chains: Iterable[dict], prompts: dict[str, str], scores: dict[str, dict],
                    reviews: dict[str, dict]) -> list[dict]:
    records = []
    for chain in chains:
        auto = (scores.get(chain["id"]) or {}).get("scores") or chain.get("scores") or {}
        total = (scores.get(chain["id"]) or {}).get("total", chain.get("total"))
        review = reviews.get(chain["id"])
        metadata: dict[str, Any] = {"task_id": chain.get("task_id"), "total": total}
        record: dict[str, Any] = {
            "id": chain["id"],
            "fields": {"prompt": prompts.get(chain.get("task_id"), chain.get("prompt", "")), "response": chain["text"]},
            "metadata": metadata,
            "suggestions": {cid: {"value": verdict_label(s), "score": None, "agent": "rcsd"}
                            for cid, s in auto.items() if s is not None},
            "responses": {},
        }
        if review:
            metadata.update(decision=review.get("decision"), reviewer=review.get("reviewer"))
            user = review.get("reviewer")
            record["responses"] = {cid: [{"value": verdict_label(v), "user_id": user}]
                                   for cid, v in (review.get("verdicts") or {}).items() if v is not None}
            if review.get("decision"):
                record["responses"][DECISION] = [{"value": review["decision"], "user_id": user}]
        records.append(record)
    return records


def _choices(values: dict[str, Any]) -> list[dict]:
    return [{"from_name": cid, "to_name": "response", "type": "choices", "value": {"choices": [label]}}
            for cid, label in values.items() if label is not None]


def labelstudio_tasks(chains: Iterable[dict], prompts: dict[str, str], scores: dict[str, dict],
                      reviews: dict[str, dict]) -> list[dict]:
    tasks = []
    for chain in chains:
        auto = (scores.get(chain["id"]) or {}).get("scores") or chain.get("scores") or {}
        total = (scores.get(chain["id"]) or {}).get("total", chain.get("total"))
        item: dict[str, Any] = {
            "data": {"chain_id": chain["id"], "task_id": chain.get("task_id"),
                     "prompt": prompts.get(chain.get("task_id"), chain.get("prompt", "")), "response": chain["text"]},
            "predictions": [{"model_version": "rcsd", "score": total,
                             "result": _choices({cid: verdict_label(s) for cid, s in auto.items()})}],
        }
        review = reviews.get(chain["id"])
        if review:
            labels = {cid: verdict_label(v) for cid, v in (review.get("verdicts") or {}).items()}
            if review.get("decision"):
                labels[DECISION] = review["decision"]
            item["data"]["reviewer"] = review.get("reviewer")
            item["annotations"] = [{"result": _choices(labels), "ground_truth": False}]
        tasks.append(item)
    return tasks


def labelstudio_config(criteria: Iterable[Criterion]) -> str:
    """A Label Studio labeling config matching `labelstudio_tasks`' results."""
    lines = ["<View>", '  <Text name="prompt" value="$prompt"/>', '  <Text name="response" value="$response"/>']
    for c in criteria:
        lines += [f"  <Header value={quoteattr(c.label)}/>",
                  f'  <Choices name={quoteattr(c.id)} toName="response" choice="single">',
                  '    <Choice value="yes"/>', '    <Choice value="no"/>', "  </Choices>"]
    lines += ['  <Choices name="decision" toName="response" choice="single">',
              '    <Choice value="accept"/>', '    <Choice value="reject"/>', '    <Choice value="rubric-needs-work"/>',
              "  </Choices>", "</View>"]
    return "\n".join(lines)
