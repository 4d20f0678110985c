"""Agreement statistics against hand-computed and textbook values, their degenerate cases (said in a
note, never a number), the last-row-wins rule, and `rcsd agreement` (exact JSON shape, exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rcsd_core.errors import InputError
from rcsd_core.scoring.agreement import (agreement_report, cohen_kappa, disagreeing_chains, fleiss_kappa,
                                         judge_agreement, krippendorff_alpha, latest_ratings, majority,
                                         pairwise_cohen, review_rows_from_file, to_json)

ROOT = Path(__file__).resolve().parent.parent


def test_fleiss_textbook_example():
    # Fleiss (1971) as tabulated on Wikipedia: 10 subjects, 14 raters each, 5 categories.
    counts = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
              [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    # By hand: P_i = (Σ_j n_ij² − 14) / (14·13), e.g. row 1 (196 − 14)/182 = 1.000, row 2 (4+36+16+4 − 14)/182
    # = 0.253; mean P̄ = 0.378. Category shares p_j = column sums / 140 = 20/140, 28/140, 39/140, 23/140,
    # 30/140 = 0.143, 0.200, 0.279, 0.164, 0.214; P_e = Σ p_j² = 0.213; κ = (0.378 − 0.213)/(1 − 0.213) = 0.210.
    items = {}
    for i, row in enumerate(counts):
        values = [c for c, n in enumerate(row) for _ in range(n)]
        items[f"s{i}"] = {f"r{j}": v for j, v in enumerate(values)}
    result = fleiss_kappa(items)
    assert result["n"] == 10 and result["m"] == 14 and result["left_out"] == 0
    assert result["kappa"] == pytest.approx(0.20993, abs=1e-5)


def test_krippendorff_textbook_example_with_missing_values():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 observers, 12 units, values 1-5,
    # missing ratings (None). Unit 12 has one value: not pairable. Coincidences o_ck = Σ_u pairs/(m_u − 1):
    # unit 1 (1,1,1): o_11 += 3·2/2 = 3; unit 6 (1,2,3,4): each ordered pair 1/3, so o_12 = o_13 = … = 1/3;
    # unit 2 (2,3,2,2): o_22 += 6/3 = 2, o_23 = o_32 += 3/3 = 1; … Totals n_c = 9, 13, 10, 5, 3 (n = 40),
    # the diagonal sums to 7 + 10 + 8 + 4 + 3 = 32, so Σ_{c≠k} o_ck = 8; Σ_{c≠k} n_c n_k = 40² − (81 + 169 +
    # 100 + 25 + 9) = 1216; α = 1 − (n − 1)·8/1216 = 1 − 312/1216 = 0.743 (the paper's nominal α).
    data = {"A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
            "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
            "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
            "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None]}
    items = {f"u{i}": {r: v[i] for r, v in data.items() if v[i] is not None} for i in range(12)}
    result = krippendorff_alpha(items)
    assert result["alpha"] == pytest.approx(1 - 312 / 1216) and result["alpha"] == pytest.approx(0.743, abs=5e-4)
    assert result["n_items"] == 11 and result["n_values"] == 40


def test_cohen_pairs_by_hand():
    # ana vs ben on 4 chains: (1,1) (1,0) (0,0) (0,0): po = 3/4; ana passes 2/4, ben 1/4;
    # pe = 0.5·0.25 + 0.5·0.75 = 0.5; κ = (0.75 − 0.5)/0.5 = 0.5. cy rates only c1 with ana: too few items.
    items = {"c1": {"ana": 1.0, "ben": 1.0, "cy": 1.0}, "c2": {"ana": 1.0, "ben": 0.0},
             "c3": {"ana": 0.0, "ben": 0.0}, "c4": {"ana": 0.0, "ben": 0.0}}
    pairs = {(p["reviewer_a"], p["reviewer_b"]): p for p in pairwise_cohen(items)}
    assert pairs[("ana", "ben")]["n"] == 4 and pairs[("ana", "ben")]["kappa"] == pytest.approx(0.5)
    assert pairs[("ana", "cy")]["kappa"] is None and "too few items" in pairs[("ana", "cy")]["note"]
    assert cohen_kappa([1, 1, 1], [1, 1, 1]) == (None, "undefined: every rating is in one class")


def test_binary_three_reviewers_by_hand():
    # 3 reviewers, overlap 2, 6 chains; verdicts per chain (two each):
    # c1 (1,1) c2 (1,1) c3 (0,0) c4 (1,0) c5 (0,0) c6 (1,1)
    items = {"c1": {"a": 1.0, "b": 1.0}, "c2": {"b": 1.0, "c": 1.0}, "c3": {"a": 0.0, "c": 0.0},
             "c4": {"a": 1.0, "b": 0.0}, "c5": {"b": 0.0, "c": 0.0}, "c6": {"a": 1.0, "c": 1.0}}
    # Fleiss, m = 2: P_i = 1 for the 5 agreeing chains, 0 for c4 → P̄ = 5/6. Shares: pass 7/12, fail 5/12;
    # P_e = 49/144 + 25/144 = 74/144; κ = (5/6 − 74/144)/(1 − 74/144) = (120 − 74)/(144 − 74) = 46/70.
    assert fleiss_kappa(items)["kappa"] == pytest.approx(46 / 70)
    # Krippendorff: o_11 = 2·3 = 6 (c1, c2, c6), o_00 = 2·2 = 4 (c3, c5), o_10 = o_01 = 1 (c4); n_1 = 7,
    # n_0 = 5, n = 12; α = 1 − 11·2/(2·7·5) = 1 − 22/70 = 48/70.
    assert krippendorff_alpha(items)["alpha"] == pytest.approx(48 / 70)
    # Judge against the majority: c4 ties (left out). Judge: c1 1, c2 0, c3 0, c5 1, c6 1 vs majority
    # 1, 1, 0, 0, 1 → tp 2 (c1, c6), fn 1 (c2), fp 1 (c5), tn 1 (c3). precision 2/3, recall 2/3, F1 2/3;
    # po = 3/5; judge passes 3/5, humans 3/5; pe = 0.36 + 0.16 = 0.52; κ = (0.6 − 0.52)/0.48 = 1/6.
    judge = {"c1": 1.0, "c2": 0.0, "c3": 0.0, "c4": 1.0, "c5": 0.8, "c6": 1.0}
    got = judge_agreement(items, judge)
    assert (got["tp"], got["fp"], got["fn"], got["tn"], got["ties"]) == (2, 1, 1, 1, 1)
    assert got["precision"] == pytest.approx(2 / 3) and got["recall"] == pytest.approx(2 / 3)
    assert got["f1"] == pytest.approx(2 / 3) and got["kappa"] == pytest.approx(1 / 6)
    assert "1 tied chain left out" in got["note"]
    assert [d["chain_id"] for d in disagreeing_chains(items, judge)] == ["c2", "c4", "c5"]


def test_fleiss_uses_the_most_common_rating_count():
    # three chains rated twice, one rated three times (left out of Fleiss, kept by alpha)
    items = {"c1": {"a": 1.0, "b": 1.0}, "c2": {"a": 0.0, "b": 0.0}, "c3": {"a": 1.0, "b": 0.0},
             "c4": {"a": 1.0, "b": 1.0, "c": 0.0}, "c5": {"a": 1.0}}
    result = fleiss_kappa(items)
    assert (result["n"], result["m"], result["left_out"]) == (3, 2, 2)
    # P̄ = (1 + 1 + 0)/3 = 2/3; shares 3/6, 3/6; P_e = 0.5; κ = (2/3 − 1/2)/(1/2) = 1/3
    assert result["kappa"] == pytest.approx(1 / 3) and "2 left out" in result["note"]


def test_degenerate_cases_are_said():
    one_class = {"c1": {"a": 1.0, "b": 1.0}, "c2": {"a": 1.0, "b": 1.0}}
    assert fleiss_kappa(one_class)["kappa"] is None and "one class" in fleiss_kappa(one_class)["note"]
    assert krippendorff_alpha(one_class)["alpha"] is None and "one class" in krippendorff_alpha(one_class)["note"]
    one_item = {"c1": {"a": 1.0, "b": 0.0}}
    assert fleiss_kappa(one_item)["kappa"] is None and "too few" in fleiss_kappa(one_item)["note"]
    assert krippendorff_alpha(one_item)["alpha"] is None and "too few" in krippendorff_alpha(one_item)["note"]
    singles = {"c1": {"a": 1.0}, "c2": {"b": 0.0}}
    assert fleiss_kappa(singles)["kappa"] is None and "no chain has two ratings" in fleiss_kappa(singles)["note"]
    # the judge never passes, the humans never pass: precision and recall undefined, kappa undefined
    fails = {"c1": {"a": 0.0}, "c2": {"a": 0.0}}
    got = judge_agreement(fails, {"c1": 0.0, "c2": 0.0})
    assert got["precision"] is None and got["recall"] is None and got["f1"] is None and got["kappa"] is None
    assert "precision undefined" in got["note"] and "recall undefined" in got["note"]
    assert majority([1.0, 0.0]) is None and majority([1.0, 1.0, 0.0]) == 1.0 and majority([]) is None


def test_last_row_of_a_reviewer_wins_whole():
    rows = [{"chain_id": "c1", "reviewer": "a", "criterion_scores": {"x": 1.0, "y": 1.0}},
            {"chain_id": "c1", "reviewer": "b", "criterion_scores": {"x": 0.0}},
            {"chain_id": "c1", "reviewer": "a", "criterion_scores": {"x": 0.0, "y": None}}]
    assert latest_ratings(rows) == {"x": {"c1": {"a": 0.0, "b": 0.0}}, "y": {}}
    report = agreement_report(rows)
    assert report["criteria"]["y"]["n_items"] == 0 and report["criteria"]["x"]["n_items"] == 1
    assert "no judge scores given" in report["criteria"]["x"]["note"]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run_cli(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "rcsd_core.cli", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=120)


def test_cli_agreement_writes_the_exact_shape(tmp_path):
    reviews = write_jsonl(tmp_path / "r.jsonl", [
        {"chain_id": c, "reviewer": r, "criterion_scores": {"ok": v}, "review": {"decision": "accept"}}
        for c, r, v in [("c1", "a", 1.0), ("c1", "b", 1.0), ("c2", "b", 1.0), ("c2", "c", 1.0), ("c3", "a", 0.0),
                        ("c3", "c", 0.0), ("c4", "a", 1.0), ("c4", "b", 0.0), ("c5", "b", 0.0), ("c5", "c", 0.0),
                        ("c6", "a", 1.0), ("c6", "c", 1.0)]])
    scores = write_jsonl(tmp_path / "s.jsonl", [{"id": c, "scores": {"ok": v}} for c, v in
                                                [("c1", 1.0), ("c2", 0.0), ("c3", 0.0), ("c4", 1.0), ("c5", 0.8),
                                                 ("c6", 1.0)]])
    out = tmp_path / "a.json"
    done = run_cli("agreement", "--reviews", reviews, "--scores", scores, "--out", out)
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    assert list(data) == ["criteria"] and list(data["criteria"]) == ["ok"]
    row = data["criteria"]["ok"]
    assert list(row) == ["n_items", "fleiss_kappa", "krippendorff_alpha", "judge_kappa", "precision", "recall", "f1",
                         "note"]
    assert row["n_items"] == 6 and row["fleiss_kappa"] == pytest.approx(46 / 70)
    assert row["krippendorff_alpha"] == pytest.approx(48 / 70) and row["judge_kappa"] == pytest.approx(1 / 6)
    assert row["f1"] == pytest.approx(2 / 3) and "tied" in row["note"]
    assert "reviewer pair" in done.stdout
    # without scores: judge figures null, said in the note
    done = run_cli("agreement", "--reviews", reviews, "--out", out)
    row = json.loads(out.read_text())["criteria"]["ok"]
    assert row["judge_kappa"] is None and row["precision"] is None and "no judge scores" in row["note"]


@pytest.mark.parametrize("bad, line, field", [
    ({"chain_id": "c1", "criterion_scores": {"ok": 1.0}}, 2, "reviewer"),
    ({"chain_id": "c1", "reviewer": "a", "criterion_scores": {"ok": 0.5}}, 2, "criterion_scores.ok"),
    ({"chain_id": 3, "reviewer": "a", "criterion_scores": {}}, 2, "chain_id"),
    ({"chain_id": "c1", "reviewer": "a", "criterion_scores": []}, 2, "criterion_scores"),
])
def test_bad_review_rows_name_line_and_field(tmp_path, bad, line, field):
    reviews = write_jsonl(tmp_path / "r.jsonl", [{"chain_id": "c0", "reviewer": "a", "criterion_scores": {}}, bad])
    with pytest.raises(InputError) as err:
        review_rows_from_file(reviews)
    assert (err.value.line, err.value.field) == (line, field)


def test_cli_agreement_bad_input_exits_2_without_output(tmp_path):
    reviews = write_jsonl(tmp_path / "r.jsonl", [{"chain_id": "c1", "reviewer": "a", "criterion_scores": {"ok": "y"}}])
    out = tmp_path / "a.json"
    done = run_cli("agreement", "--reviews", reviews, "--out", out)
    assert done.returncode == 2 and not out.exists()
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "r.jsonl:1:" in lines[0] and "criterion_scores.ok" in lines[0]
    scores = write_jsonl(tmp_path / "s.jsonl", [{"id": "c1"}])
    reviews = write_jsonl(tmp_path / "r.jsonl", [{"chain_id": "c1", "reviewer": "a", "criterion_scores": {"ok": 1}}])
    done = run_cli("agreement", "--reviews", reviews, "--scores", scores, "--out", out)
    assert done.returncode == 2 and not out.exists() and "s.jsonl" in done.stderr and "scores" in done.stderr
