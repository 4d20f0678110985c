"""A judge behind an OpenAI-compatible HTTP endpoint (OpenAI, vLLM, llama.cpp server, Ollama, ...).

    judge = OpenAIJudge("http://127.0.0.1:8000/v1", "Qwen/Qwen3-8B", api_key_env="OPENAI_API_KEY")
    verdict = judge.judge(criterion, prompt=task.prompt, text=chain_text, reference=task.reference)

It POSTs `{base_url}/chat/completions` with the yes/no question of `contexts.judge_messages`
(temperature 0, a few tokens, first-token logprobs requested), and reads the verdict from the
reply's first word; when the server returns logprobs, P(yes) among yes/no is kept too. A reply
that is neither yes nor no scores None — never 0 — and the raw reply is kept either way.

Transient failures (timeouts, connection errors, HTTP 429 and 5xx) are retried with exponential
backoff; when retries run out the verdict is None with the error as its raw text, so one flaky
call does not stop a scoring pass. Configuration errors (HTTP 400 other than an unsupported
`logprobs`, 401, 403, 404) raise InputError at once: every later call would fail the same way.
A server that rejects `logprobs` is asked again without it, once, and then never again.

The API key is read from the environment variable `api_key_env` at call time and is never put
in a verdict, a message or the judge's repr; without it no Authorization header is sent
(local servers need none). HTTP goes through `requests` (a dependency of streamlit and gguf,
so always installed with the studio).

A reply is untrusted input and is bounded: it is streamed and dropped past MAX_RESPONSE_BYTES or
past the total deadline (`timeout` for the whole call, however slowly the bytes trickle in; a
stalled read can add at most one more `timeout`). Plain http is allowed only to a loopback
host (127.0.0.0/8, ::1, localhost); anything else must be https, so a key and the chains never
cross a network in clear text. Redirects are not followed. Messages never carry the key or the
`user:pass@` of a URL, and a server's error body is cut to one short line with the key masked
(some servers echo the request). `attempts` / `failures` count calls, so a caller can tell
"every call failed" (`all_failed`) from "some verdicts were unclear".
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
import time
from urllib.parse import urlparse, urlunparse

import requests

from rcsd_core.errors import InputError
from rcsd_core.scoring.judges import MIN_YES_NO_MASS, Verdict, judge_messages
from rcsd_core.contracts.rubric import Criterion

_YES = {"yes", "y", "true", "pass", "passes", "met"}
_NO = {"no", "n", "false", "fail", "fails", "unmet"}
_FIRST_WORD = re.compile(r"[a-z]+")
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
MAX_RESPONSE_BYTES = 2**20     # a yes/no verdict with logprobs is a few KB
MAX_ERROR_CHARS = 200          # of a server's error body kept in a message

# ---------------------------------------------------------------------------- parsing (pure)


def parse_yes_no(text: str | None) -> float | None:
    """1.0 / 0.0 from a reply that starts with yes or no (markdown, quotes and punctuation ignored),
    after an optional <think>...</think> block; None otherwise."""
    if not text:
        return None
    body = re.sub(r"(?s)<think>.*?</think>", "", text).strip().lower()
    match = _FIRST_WORD.search(body)
    if match is None or body[: match.start()].strip("*_\"'`([{ \t\n:>#-"):
        return None
    word = match.group(0)
    if word in _YES:
        return 1.0
    if word in _NO:
        return 0.0
    return None


def yes_probability(logprobs: dict | None) -> float | None:
    """P(yes) / (P(yes) + P(no)) from the first content token's top logprobs; None when absent or
    when yes and no together hold too little mass to mean anything."""
    try:
        first = logprobs["content"][0]
    except (TypeError, KeyError, IndexError):
        return None
    candidates = first.get("top_logprobs") or [{"token": first.get("token"), "logprob": first.get("logprob")}]
    p_yes = p_no = 0.0
    for entry in candidates:
        token = str(entry.get("token") or "").strip().strip("*_\"'`").lower()
        logprob = entry.get("logprob")
        if not isinstance(logprob, (int, float)) or not math.isfinite(logprob):
            continue
        if token in ("yes", "y"):
            p_yes += math.exp(logprob)
        elif token in ("no", "n"):
            p_no += math.exp(logprob)
    if p_yes + p_no < MIN_YES_NO_MASS:
        return None
    return p_yes / (p_yes + p_no)


# ---------------------------------------------------------------------------- the judge


class OpenAIJudge:
    """Yes/no judging through an OpenAI-compatible /chat/completions endpoint."""

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY", timeout: float = 30,
                 retries: int = 2, backoff: float = 0.5, max_tokens: int = 8, logprobs: bool = True,
                 name: str | None = None):
        try:
            parsed = urlparse(base_url)
            parsed.port  # noqa: B018 -- raises ValueError for a port that is not a number in range
        except ValueError:
            parsed = urlparse("")
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise InputError(f"judge base URL must be http(s)://host[:port]/path, got {scrub_url(base_url)!r}",
                             field="judge_url")
        if parsed.scheme == "http" and not is_loopback(parsed.hostname):
            raise InputError(f"plain http is only allowed to this machine (localhost); use https for "
                             f"{parsed.hostname!r}, so the key and the chains are not sent in clear text",
                             field="judge_url")
        if not model:
            raise InputError("the remote judge needs a model name", field="judge")
        if not (timeout > 0 and math.isfinite(timeout)) or retries < 0:
            raise InputError("judge timeout must be > 0 and retries >= 0", field="judge")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_tokens = max_tokens
        self.logprobs = logprobs
        self.name = name or f"openai:{model}"
        self.attempts = 0        # judge() calls made
        self.failures = 0        # of those, ones that got no reply at all (retries ran out)
        self.last_error: str | None = None
        self._session = requests.Session()

    def __repr__(self) -> str:
        return f"OpenAIJudge({scrub_url(self.base_url)!r}, {self.model!r}, api_key_env={self.api_key_env!r})"

    @property
    def all_failed(self) -> bool:
        """True when at least one call was made and none got a reply."""
        return self.attempts > 0 and self.failures == self.attempts

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def judge(self, criterion: Criterion, *, prompt: str, text: str, reference: str | None = None) -> Verdict:
        messages = judge_messages(criterion, prompt=prompt, text=text, reference=reference)
        self.attempts += 1
        try:
            reply = self._complete(messages)
        except _GaveUp as exc:
            self.failures += 1
            self.last_error = str(exc)
            return Verdict(score=None, probability=None, raw=f"error: {exc}", judge=self.name)
        return self.verdict_from_reply(reply)

    def chat(self, messages: list[dict]) -> tuple[str, bool]:
        """(the reply's text, whether it finished before max_tokens) for any chat, with the same URL
        rules, limits, retries and errors as judging (e.g. drafting a rubric, `design.task_drafting`).
        RemoteUnavailable when retries run out; InputError on a configuration error."""
        try:
            reply = self._complete(messages)
        except _GaveUp as exc:
            self.last_error = str(exc)
            raise RemoteUnavailable(str(exc)) from None
        try:
            choice = reply["choices"][0]
            return str(choice["message"].get("content") or ""), choice.get("finish_reason") != "length"
        except (TypeError, KeyError, IndexError, AttributeError):
            raise RemoteUnavailable(f"unexpected response: {self._scrub(str(reply))[:200]}") from None

    def verdict_from_reply(self, reply: dict) -> Verdict:
        """A Verdict from a chat completion response body (parsed JSON)."""
        try:
            choice = reply["choices"][0]
            content = choice["message"].get("content") or ""
        except (TypeError, KeyError, IndexError, AttributeError):
            return Verdict(score=None, probability=None, raw=f"unexpected response: {self._scrub(str(reply))[:500]}",
                           judge=self.name)
        score = parse_yes_no(content)
        probability = yes_probability(choice.get("logprobs"))
        raw = content if score is not None else f"{content} (no usable verdict)"
        return Verdict(score=score, probability=probability, raw=raw, judge=self.name)

    # ------------------------------------------------------------------------ HTTP

    def _payload(self, messages: list[dict]) -> dict:
        payload = {"model": self.model, "messages": messages, "temperature": 0, "max_tokens": self.max_tokens}
        if self.logprobs:
            payload.update(logprobs=True, top_logprobs=5)
        return payload

    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _complete(self, messages: list[dict]) -> dict:
        """POST with retries; the parsed JSON body, InputError on configuration errors, _GaveUp otherwise."""
        last = "no attempt made"
        attempt = 0
        shown_url = scrub_url(self.url)
        while attempt <= self.retries:
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                status, body = self._post(messages)
            except (requests.Timeout, _Deadline):
                last = f"timed out after {self.timeout:g}s"
                attempt += 1
                continue
            except _TooLarge:
                last = f"reply larger than {MAX_RESPONSE_BYTES:,} bytes"
                attempt += 1
                continue
            except requests.ConnectionError as exc:
                last = f"connection failed: {type(exc).__name__}"
                attempt += 1
                continue
            except requests.RequestException as exc:
                last = f"request failed: {type(exc).__name__}"
                attempt += 1
                continue
            text = body.decode("utf-8", errors="replace")
            if status == 200:
                try:
                    return json.loads(text)
                except (ValueError, RecursionError):
                    last = f"HTTP 200 with a body that is not JSON: {self._short(text)!r}"
                    attempt += 1
                    continue
            short = self._short(text)
            if status == 400 and self.logprobs and "logprob" in text.lower():
                self.logprobs = False  # this server does not do logprobs; ask without, from now on
                continue
            if status in RETRY_STATUS:
                last = f"HTTP {status}: {short}"
                attempt += 1
                continue
            if 300 <= status < 400:
                raise InputError(f"judge endpoint {shown_url} answered HTTP {status} (a redirect); give the final "
                                 "URL as --judge-url", field="judge")
            raise InputError(f"judge endpoint {shown_url} answered HTTP {status}: {short}"
                             + (" (check the API key)" if status in (401, 403) else ""), field="judge")
        raise _GaveUp(f"{last} (after {self.retries + 1} attempts)")

    def _post(self, messages: list[dict]) -> tuple[int, bytes]:
        """(status, body) of one POST, the body streamed under the byte cap and the total deadline."""
        deadline = time.monotonic() + self.timeout
        with self._session.post(self.url, json=self._payload(messages), headers=self._headers(),
                                timeout=self.timeout, stream=True, allow_redirects=False) as response:
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
                raise _TooLarge()
            body = bytearray()
            raw = response.raw
            while True:
                if time.monotonic() > deadline:
                    raise _Deadline()
                # read1: whatever has arrived (at least one byte), so a trickle cannot hold a
                # read past the deadline; each read still waits at most `timeout` for data
                chunk = raw.read1(64 * 1024, decode_content=True) if hasattr(raw, "read1") else raw.read(64 * 1024)
                if not chunk:
                    break
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    raise _TooLarge()
            if time.monotonic() > deadline:
                raise _Deadline()
            return response.status_code, bytes(body)

    def _short(self, text: str) -> str:
        """A server's text as one short line for a message: key masked, whitespace collapsed, cut."""
        line = " ".join(self._scrub(text).split())
        return line if len(line) <= MAX_ERROR_CHARS else line[:MAX_ERROR_CHARS] + "…"

    def _scrub(self, text: str) -> str:
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            text = text.replace(key, "***")
        parsed = urlparse(self.base_url)
        for secret in (parsed.password, parsed.username):
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
        return re.sub(r"(?i)(bearer\s+)[\w.~+/=-]+", r"\1***", text)


def scrub_url(url: str) -> str:
    """The URL without `user:pass@` (what a message or a log may show)."""
    try:
        parsed = urlparse(url)
    except ValueError:
        return "<unparseable URL>"
    if "@" not in parsed.netloc:
        return url
    return urlunparse(parsed._replace(netloc=parsed.netloc.rsplit("@", 1)[1]))


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower().rstrip(".") in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Deadline(Exception):
    """The whole call ran past its timeout."""


class _TooLarge(Exception):
    """The reply passed MAX_RESPONSE_BYTES."""


class _GaveUp(Exception):
    """Retries ran out on a transient failure."""


class RemoteUnavailable(Exception):
    """A chat call got no usable reply (retries ran out, or the body was not a chat completion)."""
