"""The OpenAI-compatible judge against a real HTTP server on 127.0.0.1 (started here, in a thread):
yes, no, garbage, logprobs, 500-then-ok, always-500, slow -> timeout, 401 and a server without logprobs."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rcsd_core.errors import InputError
from rcsd_core.scoring.remote import OpenAIJudge, parse_yes_no, yes_probability
from rcsd_core.contracts.rubric import Criterion

CRITERION = Criterion(id="final-answer", title="Final answer", description="Ends with 'Answer: <n>'.", weight=3)


class Endpoint:
    """What the fake server does next: a queue of (status, reply text or body, delay, logprobs)."""

    def __init__(self):
        self.script: list[dict] = []
        self.requests: list[dict] = []
        self.headers: list[dict] = []


def make_handler(endpoint: Endpoint):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            endpoint.requests.append({"path": self.path, **body})
            endpoint.headers.append(dict(self.headers))
            step = endpoint.script.pop(0) if endpoint.script else {"reply": "Yes"}
            time.sleep(step.get("delay", 0))
            status = step.get("status", 200)
            if status != 200:
                payload = step.get("body", "upstream error").encode()
            elif body.get("logprobs") and step.get("reject_logprobs"):
                status, payload = 400, b'{"error": {"message": "logprobs is not supported"}}'
                endpoint.script.insert(0, {k: v for k, v in step.items() if k != "reject_logprobs"})
            else:
                choice = {"index": 0, "message": {"role": "assistant", "content": step["reply"]},
                          "finish_reason": "stop"}
                if body.get("logprobs") and "top" in step:
                    choice["logprobs"] = {"content": [{"token": step["reply"][:3], "logprob": -0.1,
                                                       "top_logprobs": [{"token": t, "logprob": lp}
                                                                        for t, lp in step["top"]]}]}
                payload = json.dumps({"id": "x", "object": "chat.completion", "choices": [choice]}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            try:
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)

    return Handler


@pytest.fixture(scope="module")
def server():
    endpoint = Endpoint()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(endpoint))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield endpoint, f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture()
def endpoint(server):
    endpoint, url = server
    endpoint.script.clear()
    endpoint.requests.clear()
    endpoint.headers.clear()
    return endpoint, url


def ask(judge):
    return judge.judge(CRITERION, prompt="What is 3 + 4?", text="3 + 4 = 7\nAnswer: 7", reference="7")


def test_yes_and_no_with_the_judge_prompt(endpoint, monkeypatch):
    ep, url = endpoint
    monkeypatch.setenv("RCSD_TEST_KEY", "sekrit")
    judge = OpenAIJudge(url + "/", "judge-model", api_key_env="RCSD_TEST_KEY", retries=0)
    ep.script += [{"reply": "Yes."}, {"reply": "**No** - it ends with a sentence."}]
    yes, no = ask(judge), ask(judge)
    assert (yes.score, yes.raw, yes.judge) == (1.0, "Yes.", "openai:judge-model")
    assert no.score == 0.0 and no.raw.startswith("**No**") and no.probability is None
    request = ep.requests[0]
    assert request["path"] == "/v1/chat/completions" and request["model"] == "judge-model"
    assert request["temperature"] == 0 and "Answer: 7" in request["messages"][-1]["content"]
    assert ep.headers[0]["Authorization"] == "Bearer sekrit"
    assert "sekrit" not in repr(judge) and "sekrit" not in yes.raw


def test_garbage_scores_none_never_zero(endpoint):
    ep, url = endpoint
    judge = OpenAIJudge(url, "m", api_key_env="RCSD_UNSET_KEY_FOR_TEST", retries=0)
    ep.script += [{"reply": "Maybe, it depends."}, {"reply": ""}, {"status": 200, "reply": "The answer is yes"}]
    verdicts = [ask(judge) for _ in range(3)]
    assert [v.score for v in verdicts] == [None, None, None]
    assert verdicts[0].raw.startswith("Maybe, it depends.") and "no usable verdict" in verdicts[0].raw
    assert "Authorization" not in ep.headers[0]


def test_logprobs_give_the_probability(endpoint):
    ep, url = endpoint
    judge = OpenAIJudge(url, "m", retries=0)
    ep.script.append({"reply": "Yes", "top": [("Yes", -0.2231), ("No", -1.6094), ("Maybe", -5.0)]})
    verdict = ask(judge)
    assert verdict.score == 1.0
    assert verdict.probability == pytest.approx(0.8 / (0.8 + 0.2), abs=1e-3)
    assert ep.requests[0]["logprobs"] is True and ep.requests[0]["top_logprobs"] == 5


def test_retries_a_500_then_succeeds(endpoint):
    ep, url = endpoint
    judge = OpenAIJudge(url, "m", retries=2, backoff=0.01)
    ep.script += [{"status": 500}, {"status": 503}, {"reply": "No"}]
    assert ask(judge).score == 0.0 and len(ep.requests) == 3


def test_gives_up_after_retries_with_the_error_kept(endpoint):
    ep, url = endpoint
    judge = OpenAIJudge(url, "m", retries=1, backoff=0.01)
    ep.script += [{"status": 500, "body": "boom"}] * 2
    verdict = ask(judge)
    assert verdict.score is None and "HTTP 500: boom" in verdict.raw and "2 attempts" in verdict.raw


def test_slow_server_times_out_then_retry_succeeds(endpoint):
    ep, url = endpoint
    judge = OpenAIJudge(url, "m", timeout=0.3, retries=1, backoff=0.01)
    ep.script += [{"reply": "Yes", "delay": 2.0}, {"reply": "Yes"}]
    start = time.perf_counter()
    assert ask(judge).score == 1.0
    assert time.perf_counter() - start < 1.8  # did not wait for the slow reply
    slow = OpenAIJudge(url, "m", timeout=0.2, retries=0)
    ep.script += [{"reply": "Yes", "delay": 0.6}]
    verdict = ask(slow)
    assert verdict.score is None and "timed out" in verdict.raw


def test_connection_refused_is_a_null_verdict():
    judge = OpenAIJudge("http://127.0.0.1:9/v1", "m", retries=1, backoff=0.01)  # discard port: nothing listens
    verdict = ask(judge)
    assert verdict.score is None and "connection failed" in verdict.raw


def test_auth_error_raises_input_error(endpoint):
    ep, url = endpoint
    judge = OpenAIJudge(url, "m", retries=3, backoff=0.01)
    ep.script.append({"status": 401, "body": "bad key"})
    with pytest.raises(InputError, match="HTTP 401.*check the API key"):
        ask(judge)
    assert len(ep.requests) == 1  # not retried


def test_server_without_logprobs_is_asked_again_without(endpoint):
    ep, url = endpoint
    judge = OpenAIJudge(url, "m", retries=0)
    ep.script.append({"reply": "Yes", "reject_logprobs": True})
    assert ask(judge).score == 1.0
    assert [r.get("logprobs") for r in ep.requests] == [True, None] and judge.logprobs is False


def test_bad_configuration_is_refused():
    with pytest.raises(InputError, match="base URL"):
        OpenAIJudge("ftp://example", "m")
    with pytest.raises(InputError, match="model"):
        OpenAIJudge("http://127.0.0.1:1/v1", "")


@pytest.mark.parametrize("text,score", [("Yes", 1.0), (" no.", 0.0), ("**YES**", 1.0), ("<think>hmm</think>No", 0.0),
                                        ("Noted.", None), ("I say yes", None), (None, None), ('"No"', 0.0)])
def test_parse_yes_no(text, score):
    assert parse_yes_no(text) == score


def test_yes_probability_needs_mass():
    assert yes_probability(None) is None
    assert yes_probability({"content": [{"token": "Sure", "logprob": 0.0, "top_logprobs": [
        {"token": "Sure", "logprob": 0.0}, {"token": "Yes", "logprob": -9.0}]}]}) is None


# ---------------------------------------------------------------------------- hostile servers


class Hostile(BaseHTTPRequestHandler):
    """A server that misbehaves as `Hostile.mode` says: trickle, huge, huge-unsized, echo, redirect."""
    mode = "trickle"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        try:
            if self.mode == "trickle":   # a valid reply, one byte every 50 ms: each read is quick, the whole is not
                payload = json.dumps({"choices": [{"message": {"content": "Yes" + " " * 200}}]}).encode()
                self._head(200, len(payload))
                for i in range(len(payload)):
                    self.wfile.write(payload[i:i + 1])
                    self.wfile.flush()
                    time.sleep(0.05)
            elif self.mode in ("huge", "huge-unsized"):
                chunk = b" " * 2**16
                self._head(200, 64 * len(chunk) if self.mode == "huge" else None)
                for _ in range(64):                                # 4 MiB of whitespace
                    self.wfile.write(chunk)
            elif self.mode == "echo":     # an error body that echoes the request, key included
                payload = (f"invalid request: headers were {dict(self.headers)!r}\n" + "more detail " * 200).encode()
                self._head(400, len(payload))
                self.wfile.write(payload)
            elif self.mode == "redirect":
                self.send_response(307)
                self.send_header("Location", "http://example.com/v1/chat/completions")
                self.send_header("Content-Length", "0")
                self.end_headers()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _head(self, status: int, length: int | None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if length is None:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()


@pytest.fixture(scope="module")
def hostile():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def test_a_trickling_reply_is_bounded_by_the_total_timeout(hostile):
    Hostile.mode = "trickle"    # ~12 s to send it all, each byte well inside the read timeout
    judge = OpenAIJudge(hostile, "m", timeout=0.5, retries=0)
    start = time.perf_counter()
    verdict = ask(judge)
    assert time.perf_counter() - start < 1.5
    assert verdict.score is None and "timed out after 0.5s" in verdict.raw


@pytest.mark.parametrize("mode", ["huge", "huge-unsized"])
def test_a_huge_reply_is_cut_at_the_byte_cap(hostile, mode):
    Hostile.mode = mode
    judge = OpenAIJudge(hostile, "m", timeout=5, retries=0)
    verdict = ask(judge)
    assert verdict.score is None and "larger than 1,048,576 bytes" in verdict.raw


def test_error_bodies_are_cut_and_never_show_the_key(hostile, monkeypatch):
    Hostile.mode = "echo"
    monkeypatch.setenv("RCSD_TEST_KEY", "sk-very-secret-123")
    judge = OpenAIJudge(hostile.replace("http://", "http://user:pa55word@"), "m", api_key_env="RCSD_TEST_KEY",
                        retries=0)
    with pytest.raises(InputError, match="HTTP 400") as info:
        ask(judge)
    message = str(info.value)
    assert "sk-very-secret-123" not in message and "pa55word" not in message and "user:" not in message
    assert "\n" not in message and len(message) < 400
    assert "pa55word" not in repr(judge)


def test_redirects_are_not_followed(hostile):
    Hostile.mode = "redirect"
    with pytest.raises(InputError, match="HTTP 307 .*redirect"):
        ask(OpenAIJudge(hostile, "m", retries=0))


@pytest.mark.parametrize("url", ["http://example.com/v1", "http://10.0.0.7:8000/v1", "http://judge.internal/v1",
                                 "http://127.0.0.1.example.com/v1"])
def test_plain_http_only_to_this_machine(url):
    with pytest.raises(InputError, match="plain http is only allowed"):
        OpenAIJudge(url, "m")


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/v1", "http://localhost:8000/v1", "http://[::1]:8000/v1",
                                 "https://api.example.com/v1", "https://user:pw@api.example.com/v1"])
def test_https_anywhere_and_http_to_loopback(url):
    assert "pw" not in repr(OpenAIJudge(url, "m"))


def test_lint_fails_when_every_judge_call_failed(write_file, tmp_path, capsys):
    from rcsd_core.cli import main

    rubric = write_file("r.yaml", "name: r\ncriteria:\n  - {id: fmt, description: Answer line., weight: 3, check: "
                                  "{type: regex, pattern: 'Answer:'}}\n  - {id: clear, description: Clear., weight: 1}\n")
    chains = write_file("c.jsonl", '{"id": "a", "task_id": "t", "text": "Answer: 4"}\n')
    args = ["--rubric", str(rubric), "--chains", str(chains), "--judge", "m", "--judge-url", "http://127.0.0.1:9/v1"]
    out = tmp_path / "findings.json"
    assert main(["lint", *args, "--out", str(out)]) == 1
    findings = json.loads(out.read_text())
    failed = [f for f in findings if f["code"] == "judge-failed"]
    assert failed and failed[0]["severity"] == "error" and "all 1 judge calls failed" in failed[0]["message"]
    capsys.readouterr()
    assert main(["score", *args, "--out", str(tmp_path / "s.jsonl")]) == 1
    assert "every one of 1 judge calls failed" in capsys.readouterr().err


def test_counts_tell_all_failed_from_some_failed(endpoint):
    ep, url = endpoint
    judge = OpenAIJudge(url, "m", retries=0)
    ep.script += [{"status": 500}, {"reply": "Yes"}]
    ask(judge), ask(judge)
    assert (judge.attempts, judge.failures, judge.all_failed) == (2, 1, False)
    broken = OpenAIJudge("http://127.0.0.1:9/v1", "m", retries=0)
    ask(broken)
    assert broken.all_failed and "connection failed" in broken.last_error
