"""`rcsd score` takes the judge options the other commands take: a local model (on --device, with
--threads) or an OpenAI-compatible URL; options that can never work are refused before any file is read."""

from __future__ import annotations

import json

from rcsd_core.cli import main

RUBRIC = """name: judged
criteria:
  - id: polite
    description: Thanks the customer.
    weight: 1
  - id: short
    description: Short.
    weight: 1
    check: {type: max_words, limit: 5}
"""


def _inputs(tmp_path):
    (tmp_path / "r.yaml").write_text(RUBRIC)
    (tmp_path / "c.jsonl").write_text(json.dumps({"id": "c1", "task_id": "t", "text": "Thank you, done."}) + "\n")
    return tmp_path / "r.yaml", tmp_path / "c.jsonl"


def test_score_with_a_local_judge_on_a_device(tmp_path):
    rubric, chains = _inputs(tmp_path)
    out = tmp_path / "s.jsonl"
    assert main(["score", "--rubric", str(rubric), "--chains", str(chains), "--judge", "tiny-random",
                 "--device", "cpu", "--threads", "1", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    verdict = record["judge"]["polite"]          # the local model was asked (a random model may be unsure: null)
    assert verdict["judge"] == "tiny-random" and verdict["raw"].startswith("P(yes)=")
    assert record["scores"]["short"] == 1.0 and "short" not in record["judge"]


def test_score_with_a_judge_url_uses_the_remote_judge(tmp_path, capsys):
    rubric, chains = _inputs(tmp_path)
    # nothing listens on port 9: every call fails, the judged criterion stays unscored, exit 1
    code = main(["score", "--rubric", str(rubric), "--chains", str(chains), "--judge", "m", "--judge-url",
                 "http://127.0.0.1:9/v1", "--out", str(tmp_path / "s.jsonl")])
    assert code == 1 and "judge calls failed" in capsys.readouterr().err
    assert json.loads((tmp_path / "s.jsonl").read_text())["scores"]["polite"] is None


def test_score_refuses_bad_judge_options_before_reading_files(tmp_path, capsys):
    missing = str(tmp_path / "nope.jsonl")
    assert main(["score", "--rubric", missing, "--chains", missing, "--judge-url", "http://127.0.0.1:9/v1",
                 "--out", str(tmp_path / "s.jsonl")]) == 2
    assert "--judge-url needs --judge" in capsys.readouterr().err
    assert main(["score", "--rubric", missing, "--chains", missing, "--judge", "no-such-model",
                 "--out", str(tmp_path / "s.jsonl")]) == 2
    assert "unknown model 'no-such-model'" in capsys.readouterr().err
    assert main(["score", "--rubric", missing, "--chains", missing, "--judge", "tiny-random", "--device", "tpu9",
                 "--out", str(tmp_path / "s.jsonl")]) == 2
    assert not (tmp_path / "s.jsonl").exists()
