"""Shared test fixtures: the tiny random model, the sample rubrics and tasks, rubric builders.

Run the whole suite with `pytest` (everything, embedded-model smoke test included); `-m "not slow"`
skips the tests that need the embedded default model. Nothing here downloads anything: the tiny
model is built from a config with the embedded tokenizer, and the embedded default is converted
once from its GGUF into the cache ($RCSD_CACHE, default ~/.cache/rcsd) and reused after that.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rcsd_core.contracts.rubric import Rubric, load_rubric, rubric_from_data
from rcsd_core.contracts.tasks import Task, load_tasks

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "sample_rubrics"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """sample_rubrics/: <domain>.yaml and <domain>.tasks.jsonl for arithmetic, science, legal, clinical."""
    return SAMPLES


@pytest.fixture(scope="session")
def tiny():
    """(model, tokenizer): the tiny random Llama (2 layers, hidden 64) with the embedded tokenizer, eval mode, CPU.

    Session-scoped and shared: do not train it in place (deep-copy it, or call load_model("tiny-random")).
    """
    from rcsd_core.modeling.models import load_model

    return load_model("tiny-random", device="cpu", dtype="float32", seed=0)


@pytest.fixture(scope="session")
def tokenizer(tiny):
    """The embedded tokenizer (left padding, pad = eos when the tokenizer has none)."""
    return tiny[1]


@pytest.fixture(scope="session")
def arith_rubric_path() -> Path:
    return SAMPLES / "arithmetic.yaml"


@pytest.fixture(scope="session")
def arith_tasks_path() -> Path:
    return SAMPLES / "arithmetic.tasks.jsonl"


@pytest.fixture(scope="session")
def arith_rubric(arith_rubric_path) -> Rubric:
    """sample_rubrics/arithmetic.yaml: final-answer-line (regex, w3), correct-answer (answer_match, w5),
    shows-equation (regex, w2), concise (max_words 60, w1), restates-rubric (contains, pitfall w-2)."""
    return load_rubric(arith_rubric_path)


@pytest.fixture(scope="session")
def arith_tasks(arith_tasks_path) -> list[Task]:
    return load_tasks(arith_tasks_path)


@pytest.fixture
def make_rubric():
    """Build a Rubric from criteria given as dicts: make_rubric({"id": "a", "weight": 1, "check": {...}}, ...).

    `description` defaults to the id; `name` defaults to "test".
    """
    def build(*criteria: dict, name: str = "test", **extra) -> Rubric:
        rows = [{"description": c.get("id", "criterion"), **c} for c in criteria]
        return rubric_from_data({"name": name, "criteria": rows, **extra})

    return build


@pytest.fixture
def write_file(tmp_path):
    """write_file(name, text_or_bytes) -> Path under tmp_path (bytes are written as they are)."""
    def write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    return write


@pytest.fixture
def one_thread():
    """Run a test on one torch thread (tiny models on a busy 2-core machine are faster so), then restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class EosAs:
    """The tokenizer with another token standing in as end-of-turn (to make a random model stop)."""

    def __init__(self, tokenizer, eos_id: int):
        self._tokenizer = tokenizer
        self.eos_token_id = eos_id
        self.pad_token_id = tokenizer.pad_token_id

    def decode(self, ids, **kw):
        return self._tokenizer.decode(ids, **kw)


@pytest.fixture
def eos_as():
    """eos_as(tokenizer, token_id): the tokenizer with `token_id` as end-of-turn (a random model then stops)."""
    return EosAs
