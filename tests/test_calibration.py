"""Calibration: accuracy and Cohen's kappa against hand-computed values, degenerate cases, and the
file join behind `rcsd calibrate` (last review wins; unreviewed and unscored chains left out)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rcsd_core.scoring.calibration import calibrate, cohen_kappa, pairs_from_files
from rcsd_core.errors import InputError

ROOT = Path(__file__).resolve().parent.parent


def test_accuracy_and_kappa_by_hand():
    # 10 pairs: both pass 4, auto only 1, human only 2, both fail 3
    pairs = [("a", 1.0, 1.0)] * 4 + [("a", 1.0, 0.0)] + [("a", 0.0, 1.0)] * 2 + [("a", 0.0, 0.0)] * 3
    row = calibrate(pairs).iloc[0]
    # po = 0.7; auto pass 0.5, human pass 0.6; pe = 0.5*0.6 + 0.5*0.4 = 0.5; kappa = (0.7-0.5)/0.5 = 0.4
    assert (row["n"], row["agree"], row["both_pass"], row["auto_only"], row["human_only"], row["both_fail"]) == \
        (10, 7, 4, 1, 2, 3)
    assert row["accuracy"] == pytest.approx(0.7) and row["kappa"] == pytest.approx(0.4)
    assert (row["auto_pass"], row["human_pass"]) == (5, 6) and row["note"] == ""


def test_perfect_and_opposite_agreement():
    perfect = calibrate([("a", 1, 1), ("a", 0, 0)] * 3).iloc[0]
    assert perfect["accuracy"] == 1.0 and perfect["kappa"] == pytest.approx(1.0)
    opposite = calibrate([("a", 1, 0), ("a", 0, 1)] * 3).iloc[0]
    assert opposite["accuracy"] == 0.0 and opposite["kappa"] == pytest.approx(-1.0)


def test_degenerate_cases():
    table = calibrate([("same", 1.0, 1.0)] * 5 + [("const", 1.0, 1.0)] * 3 + [("const", 1.0, 0.0)]
                      + [("nulls", None, 1.0), ("nulls", 1.0, None)] + [{"criterion_id": "d", "auto_score": 0.2,
                                                                            "human_score": 0.9}])
    rows = {r["criterion"]: r for r in table.to_dict("records")}
    assert list(rows) == ["same", "const", "nulls", "d"]  # first-seen order
    assert rows["same"]["accuracy"] == 1.0 and rows["same"]["kappa"] is None and "undefined" in rows["same"]["note"]
    # auto always passes, the human does not: chance = 0.75 = observed, kappa 0 (defined), noted
    assert rows["const"]["kappa"] == pytest.approx(0.0) and "all pass" in rows["const"]["note"]
    assert rows["nulls"]["n"] == 0 and rows["nulls"]["skipped"] == 2 and rows["nulls"]["accuracy"] is None
    assert rows["nulls"]["kappa"] is None and rows["nulls"]["note"] == "no pairs"
    assert rows["d"]["human_only"] == 1  # binarised at 0.5
    assert cohen_kappa(0, 0, 0, 0) == (None, "no pairs")
    assert calibrate([]).empty


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_files_join_last_review_wins(tmp_path):
    scores = write_jsonl(tmp_path / "s.jsonl", [
        {"id": "c1", "scores": {"a": 1.0, "b": 0.0}, "total": 0.5},
        {"id": "c2", "scores": {"a": 0.0, "b": None}, "total": 0.0},
        {"id": "c3", "scores": {"a": 1.0, "b": 1.0}, "total": 1.0}])
    reviews = write_jsonl(tmp_path / "r.jsonl", [
        {"chain_id": "c1", "criterion_scores": {"a": 0.0}, "reviewer": "x"},
        {"chain_id": "c1", "criterion_scores": {"a": 1.0, "b": 0.0}, "reviewer": "x"},  # replaces the first
        {"chain_id": "c2", "criterion_scores": {"a": 0.0, "b": 1.0, "zzz": 1.0}},
        {"chain_id": "gone", "criterion_scores": {"a": 1.0}}])
    pairs, unmatched = pairs_from_files(scores, reviews)
    assert sorted(pairs, key=str) == sorted([("a", 1.0, 1.0), ("b", 0.0, 0.0), ("a", 0.0, 0.0), ("b", None, 1.0)],
                                            key=str)
    assert unmatched == 1
    rows = {r["criterion"]: r for r in calibrate(pairs).to_dict("records")}
    assert rows["a"]["n"] == 2 and rows["b"]["n"] == 1 and rows["b"]["skipped"] == 1


def test_bad_review_file_names_line_and_field(tmp_path):
    scores = write_jsonl(tmp_path / "s.jsonl", [{"id": "c1", "scores": {"a": 1.0}}])
    reviews = write_jsonl(tmp_path / "r.jsonl", [{"chain_id": "c1", "criterion_scores": {"a": 1.0}},
                                                 {"chain_id": "c1", "criterion_scores": {"a": "yes"}}])
    with pytest.raises(InputError) as err:
        pairs_from_files(scores, reviews)
    assert err.value.line == 2 and err.value.field == "criterion_scores.a"


def test_cli_calibrate(tmp_path):
    scores = write_jsonl(tmp_path / "s.jsonl", [{"id": f"c{i}", "scores": {"a": float(i % 2)}} for i in range(4)])
    reviews = write_jsonl(tmp_path / "r.jsonl", [{"chain_id": f"c{i}", "criterion_scores": {"a": 1.0}}
                                                 for i in range(4)])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = tmp_path / "cal.csv"
    done = subprocess.run([sys.executable, "-m", "rcsd_core.cli", "calibrate", "--scores", str(scores), "--reviews",
                           str(reviews), "--out", str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "0.500" in done.stdout and "human decisions are all pass" in done.stdout
    assert out.read_text().splitlines()[0].startswith("criterion,n,agree,accuracy,kappa")
    bad = subprocess.run([sys.executable, "-m", "rcsd_core.cli", "calibrate", "--scores", str(tmp_path / "none.jsonl"),
                          "--reviews", str(reviews)], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "none.jsonl" in bad.stderr and "file not found" in bad.stderr


def test_nan_from_a_table_is_skipped_not_a_fail():
    # a judged criterion with no judge is unscored; read from a pandas table it arrives as NaN
    table = calibrate([("tone", float("nan"), 0.0), ("tone", 1.0, 1.0), ("tone", 0.0, float("nan"))])
    row = table.iloc[0]
    assert (row["n"], row["skipped"], row["both_fail"]) == (1, 2, 0)
    assert row["accuracy"] == 1.0
