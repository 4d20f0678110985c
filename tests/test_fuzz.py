"""Property-based fuzzing of every document a user hands the project: rubric YAML, task JSONL, round configs.

Documents are generated (valid ones, then broken ones) and mutated into hostile ones: anchors and
aliases, huge numbers, control characters and line separators, deep nesting, bad UTF-8, truncation,
oversized padding, flipped bytes. Whatever comes in, exactly one of two things may happen:

- accepted and usable: it loads, versions, scores, dumps and loads back to the same version (the
  same tasks, an equal config);
- refused with an InputError (from the CLI: exit 2 and one line on stderr).

Anything else (a traceback, a hang, an unbounded expansion) fails, and so does any example slower
than DEADLINE. The whole file runs in well under a minute on two shared cores; for a longer hunt:

    HYPOTHESIS_PROFILE=fuzz-long pytest -p no:cacheprovider tests/test_fuzz.py
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import string
import tempfile
import warnings
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rcsd_core.cli import main
from rcsd_core.contracts.config import RoundConfig, config_from_data, load_config
from rcsd_core.contracts.rubric import MAX_RUBRIC_BYTES, Rubric, dump_rubric, load_rubric, parse_rubric
from rcsd_core.contracts.tasks import load_tasks
from rcsd_core.errors import InputError
from rcsd_core.files import parse_yaml, write_jsonl
from rcsd_core.scoring.checks import CheckTimeout, run_check
from rcsd_core.scoring.scores import total_score

DEADLINE = timedelta(seconds=3)   # per example; a bomb that gets through takes minutes
REPO = Path(__file__).resolve().parent.parent

settings.register_profile("fuzz", deadline=DEADLINE, derandomize=True, database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                 HealthCheck.filter_too_much])
settings.register_profile("fuzz-long", parent=settings.get_profile("fuzz"), derandomize=False, max_examples=2000)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "fuzz")


def examples(n: int):
    """The profile's settings with n examples (the long profile keeps its own count)."""
    profile = settings.get_profile(PROFILE)
    return settings(profile, max_examples=profile.max_examples if PROFILE == "fuzz-long" else n)


# ---------------------------------------------------------------------------- building blocks

def mostly(valid: st.SearchStrategy, hostile: st.SearchStrategy, odds: int = 5) -> st.SearchStrategy:
    """`hostile` once in `odds`, else `valid`: enough good documents get through to be used."""
    return st.integers(1, odds).flatmap(lambda k: hostile if k == odds else valid)


SPECIALS = "\x00\x01\x07\x08\t\n\x0b\x0c\r\x1b\x7f\x85\xa0\u2028\u2029\ufeff\ufffe\U0001f600é'\"#:&*!%@`|>-?[]{},"
text = st.text(alphabet=st.one_of(st.sampled_from(SPECIALS), st.characters(blacklist_categories=("Cs",))),
               max_size=40)
plain = st.text(alphabet=string.ascii_letters + string.digits + " .,:-", min_size=1, max_size=30)
words = mostly(plain, st.one_of(text, st.just("")))
hostile_number = st.one_of(st.integers(), st.floats(), st.sampled_from(
    [0, -0.0, 1e308, -1e308, 5e-324, 10**400, float("inf"), float("nan"), True, "5", None]))
weight = mostly(st.one_of(st.integers(-5, 10).filter(bool), st.floats(-10, 10).filter(bool)), hostile_number, odds=10)
count = mostly(st.integers(0, 500), hostile_number)
PATTERNS = [r"(?m)^Answer:\s*-?[\d,.]+\s*\Z", r"(?im)^\s*answer\s*:\s*(.+?)\s*$", r"\d+", r"(a|aa)+$",
            r"((a{100}){100}){100}", r"(?:x{50}){50}", r"a{1000000}", r"(", r"[", r"x" * 1200, r"(\w+)\s*=\s*(\d+)",
            r"(?i)answer: (.*)", r"\p{L}+", r"(?:abc){e<=1}", "(" * 80 + ")" * 80, r"\N{DOG}", r"(?P<n>x)(?P=n)",
            r"[a-z]{1,4294967294}", r"(.*)*$", r"\d{1,3}(,\d{3})*"]
pattern = mostly(st.sampled_from(PATTERNS), text)
flags = st.lists(mostly(st.sampled_from(["IGNORECASE", "MULTILINE", "DOTALL"]), st.sampled_from(["VERBOSE", "x"])),
                 max_size=3)

check = st.one_of(
    st.none(),
    st.fixed_dictionaries({"type": st.sampled_from(["regex", "not_regex"]), "pattern": pattern},
                          optional={"flags": flags}),
    st.fixed_dictionaries({"type": st.just("contains"), "terms": st.lists(words, min_size=1, max_size=4)},
                          optional={"mode": st.sampled_from(["any", "all", "all", "some"]),
                                    "case_sensitive": st.booleans()}),
    st.fixed_dictionaries({"type": st.sampled_from(["max_words", "min_words"]), "limit": count}),
    st.fixed_dictionaries({"type": st.just("answer_match")},
                          optional={"pattern": mostly(st.sampled_from([r"answer: (\d+)", r"(?i)=\s*(\S+)"]), pattern),
                                    "tolerance": mostly(st.floats(0, 1), hostile_number)}),
    st.fixed_dictionaries({"type": mostly(st.just("judge"), st.sampled_from(["nope", ""]))}),
)
criterion_id = mostly(st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True), text, odds=20)
criterion = st.fixed_dictionaries(
    {"id": criterion_id, "description": mostly(st.one_of(plain, text.filter(bool)), st.just(""), odds=20),
     "weight": weight},
    optional={"title": text, "check": check})
rubric_data = st.fixed_dictionaries(
    {"name": mostly(st.from_regex(r"[a-z0-9][a-z0-9-]{0,10}", fullmatch=True), text, odds=20),
     "criteria": st.lists(criterion, min_size=1, max_size=6, unique_by=lambda c: c["id"])},
    optional={"description": text, "unknown": text,
              "examples": st.lists(st.fixed_dictionaries({"prompt": words, "answer": words}), max_size=2)})


@st.composite
def mutated(draw, document: bytes, limit: int) -> bytes:
    """The document with up to three hostile edits."""
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3]))):
        kind = draw(st.sampled_from(["alias", "bomb", "number", "control", "nest", "utf8", "truncate", "pad",
                                     "flip", "duplicate", "tab", "merge"]))
        lines = document.split(b"\n")
        at = draw(st.integers(0, max(len(lines) - 1, 0)))
        if kind == "alias":
            document = document.replace(b": ", b": &a ", 1) + b"\nalias: *a\n"
        elif kind == "bomb":
            bomb = b"a: &a [x, x, x, x, x, x, x, x, x]\n" + b"".join(
                b"%c: &%c [%s]\n" % (n, n, b", ".join([b"*%c" % p] * 9)) for p, n in zip(b"abcdefgh", b"bcdefghi"))
            document = bomb + document
        elif kind == "number":
            huge = draw(st.sampled_from([b"9" * 5000, b"1.0e+999", b"-.inf", b".nan", b"1e12", b"0x7fffffffffffffff",
                                         b"1_000_000_000_000", b"-0"]))
            document = document.replace(b": 1\n", b": " + huge + b"\n", 1) if b": 1\n" in document else \
                document + b"\nsteps: " + huge + b"\n"
        elif kind == "control":
            char = draw(st.sampled_from(["\x00", "\x07", "\x1b", "\x7f", "\x85", "\u2028", "\r", "\ufeff", "\t"]))
            pos = draw(st.integers(0, len(document)))
            document = document[:pos] + char.encode("utf-8") + document[pos:]
        elif kind == "nest":
            depth = draw(st.sampled_from([10, 40, 200, 5000]))
            lines.insert(at, b"deep: " + b"[" * depth + b"]" * depth)
            document = b"\n".join(lines)
        elif kind == "utf8":
            pos = draw(st.integers(0, len(document)))
            bad = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xe2\x82", b"\xc0\xaf"]))
            document = document[:pos] + bad + document[pos:]
        elif kind == "truncate":
            document = document[:draw(st.integers(0, len(document)))]
        elif kind == "pad":
            document = document + b"\n# " + b"x" * (limit + 10) + b"\n"
        elif kind == "flip" and document:
            pos = draw(st.integers(0, len(document) - 1))
            document = document[:pos] + bytes([draw(st.integers(0, 255))]) + document[pos + 1:]
        elif kind == "duplicate" and lines:
            lines.insert(at, lines[at])
            document = b"\n".join(lines)
        elif kind == "tab":
            document = document.replace(b"  ", b"\t", 1)
        elif kind == "merge":
            document = b"base: &b {x: 1}\nother: {<<: *b}\n" + document
    return document


def documents(data: st.SearchStrategy, limit: int, dump=None) -> st.SearchStrategy[bytes]:
    """YAML of generated data, mutated (or not)."""
    dump = dump or (lambda d: yaml.safe_dump(d, allow_unicode=True, sort_keys=False).encode("utf-8"))
    return data.map(dump).flatmap(lambda doc: mutated(doc, limit))


@contextlib.contextmanager
def scratch():
    with tempfile.TemporaryDirectory(prefix="rcsd-fuzz-") as folder:
        yield Path(folder)


def cli(*args: str) -> tuple[int, str]:
    """`rcsd ...` in this process: (exit code, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(args))
    return code, err.getvalue()


def assert_refused_by_cli(code: int, err: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rcsd ") and ": error: " in lines[0], err


# ---------------------------------------------------------------------------- rubrics


def usable_rubric(rubric: Rubric) -> None:
    """Accepted means usable: versions, scores a chain within its limits, dumps and reloads the same."""
    version = rubric.version
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CheckTimeout)
        scores = {c.id: run_check(c.check, "work: 2 + 2 = 4\nAnswer: 4", "4", timeout=0.05)
                  for c in rubric.criteria if not c.is_judged}
    total = total_score(rubric, scores)
    assert total is None or math.isfinite(total)
    again = parse_rubric(dump_rubric(rubric))
    assert again.version == version and again == rubric


@examples(700)
@given(documents(rubric_data, MAX_RUBRIC_BYTES, dump=None))
def test_rubric_yaml_is_accepted_and_usable_or_refused(document):
    with scratch() as folder:
        path = folder / "rubric.yaml"
        path.write_bytes(document)
        try:
            rubric = load_rubric(path)
        except InputError as exc:
            assert exc.message and str(exc).startswith(str(path))
            event(f"refused: {exc.message[:30]}")
            return
        event("accepted")
        usable_rubric(rubric)


@examples(300)
@given(rubric_data)
def test_rubric_data_from_the_editor_is_accepted_and_usable_or_refused(data):
    """The editor path (plain data, no YAML) and our own dump, with its line separators and escapes."""
    from rcsd_core.contracts.rubric import rubric_from_data

    try:
        rubric = rubric_from_data(data)
    except InputError:
        event("refused")
        return
    event("accepted")
    usable_rubric(rubric)


@examples(100)
@given(documents(rubric_data, MAX_RUBRIC_BYTES))
def test_rcsd_score_exits_0_or_2_with_one_line(document):
    with scratch() as folder:
        (folder / "r.yaml").write_bytes(document)
        (folder / "c.jsonl").write_text('{"id": "a", "task_id": "t", "text": "Answer: 4"}\n')
        code, err = cli("score", "--rubric", str(folder / "r.yaml"), "--chains", str(folder / "c.jsonl"),
                        "--out", str(folder / "s.jsonl"))
        event(f"exit {code}")
        if code == 2:
            assert_refused_by_cli(code, err)
            assert not (folder / "s.jsonl").exists()
        else:
            assert code == 0, err
            load_rubric(folder / "r.yaml")


# ---------------------------------------------------------------------------- tasks

task = st.fixed_dictionaries(
    {"id": mostly(plain, st.one_of(text, hostile_number), odds=15),
     "prompt": mostly(st.one_of(plain, text.filter(bool)), hostile_number, odds=15)},
    optional={"reference": mostly(st.one_of(plain, text, st.integers(), st.floats(-1e6, 1e6)), hostile_number),
              "split": mostly(st.sampled_from(["train", "eval"]), st.sampled_from(["x", None, 1])),
              "criteria": st.lists(criterion, max_size=2), "meta": st.dictionaries(plain, text, max_size=2)})


def jsonl(tasks: list[dict]) -> bytes:
    return "".join(json.dumps(t, ensure_ascii=False) + "\n" for t in tasks).encode("utf-8")


@st.composite
def task_documents(draw) -> bytes:
    document = draw(st.lists(task, min_size=1, max_size=5, unique_by=lambda t: str(t["id"])).map(jsonl))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3]))):
        kind = draw(st.sampled_from(["line", "utf8", "control", "nest", "number", "truncate", "flip"]))
        pos = draw(st.integers(0, len(document)))
        if kind == "line":
            extra = draw(st.sampled_from([b"[1, 2]", b"null", b"{", b'{"id": "x"}', b"NaN", b'"just a string"',
                                          b'{"id": "d", "prompt": "p"}', b'{"id": "d", "prompt": "p"}']))
            document = document + extra + b"\n"
        elif kind == "utf8":
            document = document[:pos] + draw(st.sampled_from([b"\xff", b"\xed\xa0\x80", b"\xc3"])) + document[pos:]
        elif kind == "control":
            document = document[:pos] + draw(st.sampled_from([b"\x00", b"\x1b", b"\r", b"\xc2\x85"])) + document[pos:]
        elif kind == "nest":
            depth = draw(st.sampled_from([50, 5000, 100_000]))
            document += b'{"id": "n", "prompt": "p", "x": ' + b"[" * depth + b"]" * depth + b"}\n"
        elif kind == "number":
            document += b'{"id": "big", "prompt": "p", "reference": ' + draw(st.sampled_from(
                [b"9" * 5000, b"1e999", b"-1e999", b"Infinity", b"NaN"])) + b"}\n"
        elif kind == "truncate":
            document = document[:pos]
        elif kind == "flip" and document:
            at = min(pos, len(document) - 1)
            document = document[:at] + bytes([draw(st.integers(0, 255))]) + document[at + 1:]
    return document


@examples(600)
@given(task_documents())
def test_task_jsonl_is_accepted_and_usable_or_refused(document):
    with scratch() as folder:
        path = folder / "tasks.jsonl"
        path.write_bytes(document)
        try:
            tasks = load_tasks(path)
        except InputError as exc:
            assert exc.message and str(exc).startswith(str(path))
            event("refused")
            return
        event("accepted")
        assert tasks and len({t.id for t in tasks}) == len(tasks)
        write_jsonl(folder / "again.jsonl", [t.model_dump(exclude_none=True) for t in tasks])
        assert load_tasks(folder / "again.jsonl") == tasks


# ---------------------------------------------------------------------------- round configs

MINIMAL = {"model": "tiny-random", "rubric": str(REPO / "sample_rubrics" / "arithmetic.yaml"),
           "tasks": str(REPO / "sample_rubrics" / "arithmetic.tasks.jsonl"), "method": "rcsd", "steps": 1,
           "prompts_per_step": 1, "samples_per_prompt": 1, "max_new_tokens": 4, "seed": 0}
PLAUSIBLE = {"steps": st.integers(1, 50), "learning_rate": st.floats(1e-6, 1e-2), "lora_rank": st.integers(1, 64),
             "temperature": st.floats(0, 2), "device": st.sampled_from(["auto", "cpu", "cuda:1", "mps"]),
             "tau": st.floats(0.1, 3), "divergence": st.sampled_from(["forward_kl", "jsd", "topk_forward_kl"]),
             "teacher": st.sampled_from(["frozen", "live", "ema"]), "max_new_tokens": st.integers(1, 512),
             "rubric": rubric_data, "lora_targets": st.lists(plain, min_size=1, max_size=3)}
hostile_value = st.one_of(hostile_number, text, plain, st.booleans(), st.none(), st.lists(plain, max_size=3),
                          st.dictionaries(plain, hostile_number, max_size=2), rubric_data)
override = mostly(st.sampled_from(sorted(PLAUSIBLE)).flatmap(lambda k: st.tuples(st.just(k), PLAUSIBLE[k])),
                  st.tuples(st.one_of(st.sampled_from(list(RoundConfig.model_fields)), plain), hostile_value))
config_data = st.lists(override, max_size=4).map(lambda pairs: {**MINIMAL, **dict(pairs)})


def usable_config(config: RoundConfig) -> None:
    again = config_from_data(parse_yaml(config.to_yaml()))
    assert again == config
    for name, field in RoundConfig.model_fields.items():
        value = getattr(config, name)
        assert not (isinstance(value, float) and not math.isfinite(value)), name


@examples(500)
@given(documents(config_data, 2**20))
def test_round_config_yaml_is_accepted_and_usable_or_refused(document):
    with scratch() as folder:
        path = folder / "round.yaml"
        path.write_bytes(document)
        try:
            config = load_config(path)
        except InputError as exc:
            assert exc.message and str(exc).startswith(str(path))
            event("refused")
            return
        event("accepted")
        usable_config(config)


@examples(80)
@given(documents(config_data, 2**20))
def test_rcsd_train_exits_0_or_2_with_one_line(document):
    with scratch() as folder:
        (folder / "round.yaml").write_bytes(document)
        code, err = cli("train", "--config", str(folder / "round.yaml"), "--runs-root", str(folder / "runs"),
                        "--no-start")
        event(f"exit {code}")
        if code == 2:
            assert_refused_by_cli(code, err)
            runs = folder / "runs"
            assert not runs.exists() or not any(runs.iterdir())      # refused: nothing created
        else:
            assert code == 0, err
            from rcsd_core.contracts.runs import load_run_config

            (run_dir,) = (folder / "runs").iterdir()
            frozen = load_run_config(run_dir)
            usable_config(frozen)
            assert Path(frozen.tasks).parent == run_dir.resolve()


def test_the_generators_reach_both_outcomes():
    """The strategies are not so broken that everything is refused (or everything accepted)."""
    from hypothesis import Phase

    for strategy, parse in ((documents(rubric_data, MAX_RUBRIC_BYTES), parse_rubric),
                            (documents(config_data, 2**20), lambda t: config_from_data(parse_yaml(t)))):
        seen: set[str] = set()

        @settings(database=None, derandomize=True, max_examples=100, phases=[Phase.generate], deadline=None)
        @given(strategy)
        def collect(document: bytes) -> None:
            try:
                parse(document.decode("utf-8"))
                seen.add("accepted")
            except (InputError, UnicodeDecodeError):
                seen.add("refused")

        collect()
        assert seen == {"accepted", "refused"}
