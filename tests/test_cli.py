"""The `rcsd` command line through a subprocess: score, preview, and bad input (exit 2, one line, no file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rcsd_core.cli import main
from rcsd_core.files import read_jsonl

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "TRANSFORMERS_VERBOSITY": "error"}


def rcsd(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rcsd_core.cli", *map(str, args)], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=240)


RUBRIC = """\
name: mini
criteria:
  - {id: fmt, description: Answer line., weight: 3, check: {type: regex, pattern: '(?m)^Answer:'}}
  - {id: correct, description: Right., weight: 5, check: {type: answer_match}}
  - {id: no-rubric, description: Mentions the rubric., weight: -2, check: {type: contains, terms: [rubric]}}
  - {id: clear, description: Clear., weight: 1}
"""


@pytest.fixture
def files(write_file):
    rubric = write_file("r.yaml", RUBRIC)
    tasks = write_file("t.jsonl", "".join(json.dumps(t) + "\n" for t in [
        {"id": "t1", "prompt": "2+2?", "reference": "4"}, {"id": "t2", "prompt": "3+3?", "reference": 6}]))
    chains = write_file("c.jsonl", "".join(json.dumps(c) + "\n" for c in [
        {"id": "a", "task_id": "t1", "text": "2+2=4\nAnswer: 4"},
        {"id": "b", "task_id": "t2", "text": "the rubric says\nAnswer: 7"},
        {"id": "c", "task_id": "t2", "text": "Answer: 7", "reference": "7"},     # own reference wins
        {"id": "d", "task_id": "zz", "text": "no answer"},
    ]))
    return rubric, tasks, chains


def test_score(files, tmp_path):
    rubric, tasks, chains = files
    out = tmp_path / "out" / "scores.jsonl"
    result = rcsd("score", "--rubric", rubric, "--chains", chains, "--tasks", tasks, "--out", out)
    assert result.returncode == 0, result.stderr
    scores = {r["id"]: r for r in read_jsonl(out)}
    assert scores["a"] == {"id": "a", "scores": {"fmt": 1.0, "correct": 1.0, "no-rubric": 0.0, "clear": None},
                           "total": 1.0}
    assert scores["b"]["scores"] == {"fmt": 1.0, "correct": 0.0, "no-rubric": 1.0, "clear": None}
    assert scores["b"]["total"] == pytest.approx((3 - 2) / 8)
    assert scores["c"]["scores"]["correct"] == 1.0
    assert scores["d"]["scores"]["correct"] is None and scores["d"]["total"] == 0.0
    # the summary table: one row per criterion plus the total
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["criterion", "weight", "pass_rate", "mean", "scored", "null"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["fmt"][2] == "0.750" and rows["clear"][4:] == ["0", "4"]
    assert "wrote 4 scores" in result.stderr


BAD_CASES = {
    "bad rubric": ("r.yaml", RUBRIC.replace("weight: 3", "weight: 0"), "r.yaml:3: criterion 'fmt'.weight:"),
    "bad chains json": ("c.jsonl", '{"id": "a", "text": "x"}\n{"id": \n', "c.jsonl:2: invalid JSON"),
    "chain without text": ("c.jsonl", '{"id": "a"}\n', "c.jsonl:1: text: missing or non-string 'text'"),
    "duplicate chain": ("c.jsonl", '{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n',
                        "c.jsonl:2: id: duplicate chain id 'a'"),
    "bad tasks": ("t.jsonl", '{"id": "t1"}\n', "t.jsonl:1: prompt: Field required"),
    "non-utf8 chains": ("c.jsonl", b'{"id": "a", "text": "\xe9"}\n', "c.jsonl:1: not UTF-8"),
}


@pytest.mark.parametrize("case", ["bad rubric", "non-utf8 chains"])
def test_score_bad_input_exits_2_with_one_line_and_no_output(files, tmp_path, write_file, case):
    rubric, tasks, chains = files
    name, content, expected = BAD_CASES[case]
    write_file(name, content)
    out = tmp_path / "scores.jsonl"
    result = rcsd("score", "--rubric", rubric, "--chains", chains, "--tasks", tasks, "--out", out)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("rcsd score: error: ")
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == "" and not out.exists()


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_score_bad_input_in_process(files, tmp_path, write_file, capsys, case):
    rubric, tasks, chains = files
    name, content, expected = BAD_CASES[case]
    write_file(name, content)
    out = tmp_path / "scores.jsonl"
    code = main(["score", "--rubric", str(rubric), "--chains", str(chains), "--tasks", str(tasks), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 2 and captured.err.count("\n") == 1 and expected in captured.err
    assert captured.out == "" and not out.exists()


def test_preview_bad_tasks_exits_2(files, tmp_path, write_file):
    rubric, tasks, _ = files
    write_file("t.jsonl", "")
    out = tmp_path / "chains.jsonl"
    result = rcsd("preview", "--rubric", rubric, "--tasks", tasks, "--model", "tiny-random", "--out", out)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "t.jsonl: no tasks in file" in result.stderr and not out.exists()


def test_preview_tiny_random(files, tmp_path):
    rubric, tasks, _ = files
    out = tmp_path / "chains.jsonl"
    result = rcsd("preview", "--rubric", rubric, "--tasks", tasks, "--model", "tiny-random", "--samples", 2,
                  "--max-new-tokens", 4, "--context", "both", "--seed", 1, "--out", out)
    assert result.returncode == 0, result.stderr
    records = read_jsonl(out)
    assert len(records) == 2 * 2 * 2
    for r in records:
        assert {"id", "task_id", "context", "sample", "text", "n_tokens", "model", "rubric_version", "scores",
                "total"} <= set(r)
        assert r["model"] == "tiny-random" and r["context"] in ("student", "teacher")
        assert r["scores"]["correct"] == 0.0 and r["scores"]["clear"] is None
    assert "student context" in result.stdout and "teacher context" in result.stdout
    assert "wrote 8 chains" in result.stderr


# In-process through main(): the same exit code and single line, without paying a subprocess start each.

@pytest.mark.parametrize("extra, expected", [
    (["--model", "no-such-org/no-such-model"], "model: unknown model 'no-such-org/no-such-model'"),
    (["--model", "tiny-random", "--device", "toaster"], "device: unknown device 'toaster'"),
    (["--model", "tiny-random", "--temperature", "-1"], "--temperature: must be 0 (greedy) or more"),
])
def test_preview_bad_options(files, tmp_path, capsys, extra, expected):
    rubric, tasks, _ = files
    out = tmp_path / "chains.jsonl"
    code = main(["preview", "--rubric", str(rubric), "--tasks", str(tasks), "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and expected in err, err
    assert not out.exists()


def test_out_is_a_folder(files, tmp_path, capsys):
    rubric, tasks, chains = files
    code = main(["score", "--rubric", str(rubric), "--chains", str(chains), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "--out: is a folder, not a file" in err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["preview", "--rubric", "r.yaml", "--tasks", "t.jsonl", "--out", "o", "--samples", "0"])
    assert info.value.code == 2
    assert "must be a positive integer" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["guidance", "signal"])
def test_an_unknown_divergence_is_refused_before_any_model_load(files, tmp_path, capsys, monkeypatch, command):
    import rcsd_core.modeling.models as models

    rubric, tasks, chains = files
    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    extra = ["--chains", str(chains), "--chain-id", "c1"] if command == "guidance" else []
    code = main([command, "--rubric", str(rubric), "--tasks", str(tasks), *extra, "--model", "tiny-random",
                 "--divergence", "bogus", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "unknown divergence 'bogus'" in err, err
    assert not (tmp_path / "out").exists()


def test_eval_counts_are_positive(capsys):
    with pytest.raises(SystemExit) as info:
        main(["eval", "--run-dir", "r", "--limit", "-1"])
    assert info.value.code == 2 and "must be a positive integer" in capsys.readouterr().err


def test_the_studio_runs_without_a_file_watcher():
    from rcsd_core.cli.app import app_command

    command = app_command("127.0.0.1", 8501)
    assert command[command.index("--server.fileWatcherType") + 1] == "none"
    assert command[command.index("--server.address") + 1] == "127.0.0.1"


# ---------------------------------------------------------------------------- the studio's server settings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_streamlit_config_hides_error_details_from_the_browser():
    import tomllib

    with open(os.path.join(REPO, ".streamlit", "config.toml"), "rb") as f:
        config = tomllib.load(f)
    # accepted by streamlit 1.67 (`streamlit config show`): "full", "stacktrace", "type", "none";
    # only "type" and "none" keep tracebacks and server paths out of the browser
    assert config["client"]["showErrorDetails"] == "none"
    assert config["server"]["address"] == "127.0.0.1" and config["server"]["enableXsrfProtection"] is True
    from rcsd_core.cli.app import MAX_UPLOAD_MB
    from rcsd_core.studio.workspace import MAX_UPLOAD_BYTES

    assert config["server"]["maxUploadSize"] == MAX_UPLOAD_MB == MAX_UPLOAD_BYTES // 2**20


def test_rcsd_app_passes_the_safety_settings_wherever_it_starts(monkeypatch, tmp_path):
    from rcsd_core.cli import app

    seen = {}
    monkeypatch.setattr(app, "serve", lambda command, **kw: seen.setdefault("command", command) and 0)
    monkeypatch.chdir(tmp_path)                                  # no .streamlit/config.toml here
    assert main(["app", "--port", "8599"]) == 0
    command = " ".join(seen["command"])
    assert "--client.showErrorDetails none" in command and "--server.address 127.0.0.1" in command
    assert "--server.enableXsrfProtection true" in command and "--server.maxUploadSize 10" in command


def test_stopping_rcsd_app_stops_the_server_it_started(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    # a parent that serves a stand-in server (prints its pid, then sleeps) the way `rcsd app` serves Streamlit
    pid_file = tmp_path / "child.pid"
    child = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    parent = subprocess.Popen([sys.executable, "-c", "import sys; from rcsd_core.cli.app import serve; "
                               f"sys.exit(serve([sys.executable, '-c', {child!r}]))"], cwd=REPO)
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    child_pid = int(pid_file.read_text())
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=30) != 0                  # the server died of the forwarded SIGTERM
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.kill(child_pid, 0)
