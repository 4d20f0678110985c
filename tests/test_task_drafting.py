"""Drafting each task's own criteria (stage 1 per question): a scripted drafter, a scripted
OpenAI-compatible endpoint on 127.0.0.1, and the CLI (`rcsd draft --per-task`): valid drafts become
the task's criteria, invalid ones are recorded with their reason, raw replies are kept, and a
second run skips what is already drafted."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rcsd_core.cli import main
from rcsd_core.contracts.rubric import rubric_from_data
from rcsd_core.contracts.tasks import load_tasks, rubric_for_task, task_from_data
from rcsd_core.design.task_drafting import RemoteDrafter, draft_task_set, read_cache, validate_task_draft
from rcsd_core.files import read_jsonl
from rcsd_core.scoring.remote import RemoteUnavailable

SHARED = rubric_from_data({"name": "support", "criteria": [
    {"id": "polite", "title": "Polite", "description": "Thanks the customer.", "weight": 2,
     "check": {"type": "contains", "terms": ["thank"]}}]})
TASKS = [task_from_data({"id": f"t{i}", "prompt": f"Question {i}?", "reference": str(i)}) for i in range(3)]
GOOD = ("```yaml\n- title: Offers a refund\n  description: The answer offers a full refund.\n  weight: 5\n"
        "- title: Polite\n  description: Thanks the customer.\n  weight: 2\n"
        "- title: Blames the customer\n  description: Says it is the customer's fault.\n  weight: -2\n```")


class Scripted:
    """A drafter replying from a list, counting its calls."""

    name = "scripted"

    def __init__(self, replies):
        self.replies = list(replies)
        self.calls = 0

    def complete(self, messages):
        self.calls += 1
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply, True


def test_a_valid_draft_becomes_the_tasks_criteria_and_repeats_of_shared_ones_are_dropped():
    verdict = validate_task_draft(GOOD, TASKS[0], SHARED)
    assert verdict["error"] is None
    assert [c["id"] for c in verdict["criteria"]] == ["offers-a-refund", "blames-the-customer"]
    assert [c["weight"] for c in verdict["criteria"]] == [5, -2]
    assert verdict["dropped"] == [{"reason": "repeats the shared criterion 'polite'", "title": "Polite"}]


@pytest.mark.parametrize("reply, reason", [
    ("I cannot help with that.", "no criteria found"),
    ("- title: Polite\n  description: Thanks the customer.\n  weight: 2\n", "every drafted criterion repeats"),
])
def test_an_invalid_draft_is_recorded_with_its_reason(reply, reason):
    verdict = validate_task_draft(reply, TASKS[0], SHARED)
    assert verdict["criteria"] is None and reason in verdict["error"]


def test_draft_task_set_is_resumable_and_keeps_the_raw_replies(tmp_path):
    cache = tmp_path / "out.jsonl.drafts.jsonl"
    person = task_from_data({"id": "p", "prompt": "Hand-written?", "criteria": [
        {"id": "own", "description": "Written by a person.", "weight": 1}]})
    drafter = Scripted([GOOD, "nothing useful", RemoteUnavailable("HTTP 503 (after 3 attempts)")])
    seen = []
    tasks, outcomes = draft_task_set([*TASKS, person], drafter, cache=cache, shared=SHARED,
                                     progress=lambda d, t: seen.append((d, t)))
    assert [o.status for o in outcomes] == ["drafted", "invalid", "no-reply", "kept"]
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)] and drafter.calls == 3
    assert [c.id for c in rubric_for_task(SHARED, tasks[0]).criteria] == ["polite", "offers-a-refund",
                                                                          "blames-the-customer"]
    assert tasks[1].criteria is None and tasks[2].criteria is None and tasks[3] is person
    records = read_cache(cache)
    assert set(records) == {"t0", "t1"}                      # no reply: not cached, asked again next run
    assert records["t0"]["raw"] == GOOD and records["t1"]["raw"] == "nothing useful"
    assert "no criteria found" in records["t1"]["error"]

    again = Scripted([GOOD])
    tasks, outcomes = draft_task_set([*TASKS, person], again, cache=cache, shared=SHARED)
    assert [o.status for o in outcomes] == ["cached", "cached", "drafted", "kept"] and again.calls == 1
    assert tasks[0].criteria and tasks[2].criteria
    # a changed prompt is drafted afresh
    changed = task_from_data({"id": "t0", "prompt": "Another question?"})
    third = Scripted(["nope"])
    _, outcomes = draft_task_set([changed], third, cache=cache, shared=SHARED)
    assert outcomes[0].status == "invalid" and third.calls == 1


# ---------------------------------------------------------------------------- a scripted endpoint


@pytest.fixture
def endpoint():
    replies, requests = [], []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            content = replies.pop(0) if replies else "no idea"
            payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": content},
                                               "finish_reason": "stop"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", replies, requests
    server.shutdown()
    server.server_close()


def test_a_remote_drafter_asks_the_endpoint_about_each_task(endpoint):
    url, replies, requests = endpoint
    replies.append(GOOD)
    text, finished = RemoteDrafter(url, "big-model").complete([{"role": "user", "content": "hi"}])
    assert text == GOOD and finished
    assert requests[0]["model"] == "big-model" and "logprobs" not in requests[0]


def test_cli_draft_per_task_writes_tasks_with_criteria_and_resumes(tmp_path, endpoint, capsys):
    url, replies, requests = endpoint
    rubric = tmp_path / "r.yaml"
    rubric.write_text("name: support\ncriteria:\n  - {id: polite, title: Polite, description: Thanks the customer., "
                      "weight: 2, check: {type: contains, terms: [thank]}}\n", encoding="utf-8")
    tasks = tmp_path / "t.jsonl"
    tasks.write_text("".join(json.dumps(t.model_dump(exclude_defaults=True)) + "\n" for t in TASKS), encoding="utf-8")
    out = tmp_path / "drafted.jsonl"
    argv = ["draft", "--per-task", "--tasks", str(tasks), "--rubric", str(rubric), "--model", "big-model",
            "--model-url", url, "--out", str(out)]
    replies += [GOOD, "garbage"]          # the third task gets "no idea" (the server's default)
    assert main(argv) == 0
    written = load_tasks(out)
    assert [bool(t.criteria) for t in written] == [True, False, False]
    assert "Question 0?" in requests[0]["messages"][1]["content"]
    assert "Thanks the customer." in requests[0]["messages"][1]["content"]   # the shared criteria are shown
    err = capsys.readouterr().err
    assert "1 of 3 tasks have criteria" in err and "t1: invalid:" in err
    assert len(read_jsonl(f"{out}.drafts.jsonl")) == 3
    asked = len(requests)
    assert main(argv) == 0 and len(requests) == asked      # everything cached: no new call
    assert [bool(t.criteria) for t in load_tasks(out)] == [True, False, False]


def test_cli_draft_refuses_bad_input_before_any_model(tmp_path, capsys):
    tasks = tmp_path / "t.jsonl"
    tasks.write_text(json.dumps({"id": "a", "prompt": "p"}) + "\n", encoding="utf-8")
    out = tmp_path / "o.jsonl"
    assert main(["draft", "--per-task", "--tasks", str(tasks), "--model", "m", "--model-url",
                 "http://example.com/v1", "--out", str(out)]) == 2
    assert "plain http" in capsys.readouterr().err and not out.exists()
    assert main(["draft", "--tasks", str(tasks), "--out", str(out)]) == 2
    assert "--name" in capsys.readouterr().err


def test_a_local_model_drafts_without_crashing_on_gibberish(tiny, tmp_path):
    from rcsd_core.design.task_drafting import LocalDrafter

    model, tokenizer = tiny
    drafter = LocalDrafter(model, tokenizer, name="tiny-random", max_new_tokens=12)
    tasks, outcomes = draft_task_set(TASKS[:2], drafter, cache=tmp_path / "c.jsonl", shared=SHARED)
    assert len(tasks) == 2 and all(o.status in ("drafted", "invalid") for o in outcomes)
    records = read_cache(tmp_path / "c.jsonl")
    assert set(records) == {"t0", "t1"} and all(isinstance(r["raw"], str) for r in records.values())
    assert all(r["model"] == "tiny-random" for r in records.values())
