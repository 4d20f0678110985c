"""Review rounds in the store: balanced overlap assignment, each reviewer's own queue and progress,
the hiding rule (no one sees another's verdict before submitting their own), append-only tables,
an older database opening unchanged, and four processes writing at once losing nothing."""

from __future__ import annotations

import multiprocessing
import sqlite3
from collections import Counter

import pytest

from rcsd_core.errors import InputError
from rcsd_core.scoring.agreement import agreement_report
from rcsd_core.studio.store import ReviewStore, assign


def chains(n: int) -> list[dict]:
    return [{"id": f"set/t{i}:student:0", "task_id": f"t{i}", "text": f"chain {i}",
             "scores": {"ok": float(i % 2), "short": 1.0}} for i in range(n)]


@pytest.fixture()
def store(tmp_path):
    return ReviewStore(tmp_path / "reviews.sqlite")


def make_round(store, n=9, reviewers=("ana", "ben", "cy"), overlap=2, name="r1"):
    return store.create_round(name, chains(n), rubric_name="arith", rubric_version="v1", reviewers=list(reviewers),
                              overlap=overlap, created_by="lead")


def test_three_reviewers_overlap_two_every_chain_exactly_twice(store):
    round_id = make_round(store, n=10)
    table = store.assignments(round_id)
    per_chain = table.groupby("chain_id")["reviewer"].apply(list)
    assert len(per_chain) == 10
    assert all(len(people) == 2 and len(set(people)) == 2 for people in per_chain)  # exactly twice, distinct
    load = Counter(table["reviewer"])
    assert sorted(load.values()) == [6, 7, 7]  # 20 places over 3 reviewers: balanced to within one
    pairs = Counter(tuple(sorted(p)) for p in per_chain)
    assert set(pairs) == {("ana", "ben"), ("ana", "cy"), ("ben", "cy")}  # pairs rotate
    assert store.round(round_id)["n_chains"] == 10 and store.round(round_id)["overlap"] == 2


@pytest.mark.parametrize("n, r, k", [(1, 1, 1), (7, 4, 3), (5, 5, 5), (13, 3, 1), (6, 4, 2)])
def test_assign_is_balanced_and_distinct(n, r, k):
    people = [f"p{i}" for i in range(r)]
    plan = assign(n, people, k)
    assert all(len(set(chain)) == k for chain in plan)
    load = Counter(p for chain in plan for p in chain)
    assert max(load.values(), default=0) - min((load.get(p, 0) for p in people), default=0) <= 1


def test_bad_rounds_are_refused_and_write_nothing(store):
    with pytest.raises(InputError, match="overlap"):
        make_round(store, overlap=4)
    with pytest.raises(InputError, match="distinct"):
        make_round(store, reviewers=("ana", "ana"))
    make_round(store, name="r1")
    with pytest.raises(InputError, match="exists already"):
        make_round(store, name="r1")
    assert len(store.rounds()) == 1 and len(store.queue()) == 9  # the refused ones flagged nothing


def test_own_queue_progress_and_only_assigned_reviewers(store):
    round_id = make_round(store, n=3)  # c0: ana, ben · c1: cy, ana · c2: ben, cy
    ana = store.reviewer_queue(round_id, "ana")
    assert list(ana["chain_id"]) == ["set/t0:student:0", "set/t1:student:0"] and set(ana["status"]) == {"open"}
    store.add_review(int(ana["flag_id"][0]), reviewer="ana", decision="accept", verdicts={"ok": 1.0})
    ben = store.reviewer_queue(round_id, "ben")
    assert list(ben["status"]) == ["open", "open"]  # ana's decision is not ben's status
    assert list(store.reviewer_queue(round_id, "ana")["status"]) == ["accept", "open"]
    progress = store.progress(round_id).set_index("reviewer")
    assert progress.loc["ana", "done"] == 1 and progress.loc["ana", "open"] == 1 and progress.loc["ben", "done"] == 0
    with pytest.raises(InputError, match="assigned to ana, ben"):
        store.add_review(int(ana["flag_id"][0]), reviewer="cy", decision="reject")


def test_no_reviewer_sees_another_verdict_before_submitting(store):
    round_id = make_round(store, n=3)
    flag_id = int(store.reviewer_queue(round_id, "ana")["flag_id"][0])  # shared by ana and ben
    store.add_review(flag_id, reviewer="ana", decision="reject", verdicts={"ok": 0.0}, note="wrong sum")
    assert store.visible_reviews(flag_id, "ben") == []  # ben has not submitted: sees nothing
    assert [h["reviewer"] for h in store.visible_reviews(flag_id, "ana")] == ["ana"]
    store.add_review(flag_id, reviewer="ben", decision="accept", verdicts={"ok": 1.0})
    assert [h["reviewer"] for h in store.visible_reviews(flag_id, "ben")] == ["ana", "ben"]  # now both
    # a flag outside any round keeps its full history visible
    free = store.add_flag(chains(1)[0], rubric_name="arith", rubric_version="v1", reason="odd", flagged_by="x")
    store.add_review(free, reviewer="ana", decision="accept")
    assert len(store.visible_reviews(free, "ben")) == 1


def test_review_rows_feed_agreement_last_row_of_a_reviewer_wins(store):
    round_id = make_round(store, n=3)
    ids = {c: int(f) for c, f in zip(store.assignments(round_id)["chain_id"], store.assignments(round_id)["flag_id"])}
    c0 = ids["set/t0:student:0"]
    store.add_review(c0, reviewer="ana", decision="accept", verdicts={"ok": 0.0})
    store.add_review(c0, reviewer="ana", decision="accept", verdicts={"ok": 1.0})  # replaces her first
    store.add_review(c0, reviewer="ben", decision="accept", verdicts={"ok": 1.0})
    rows = store.review_rows(round_id)
    assert [(r["reviewer"], r["criterion_scores"]) for r in rows] == [("ana", {"ok": 1.0}), ("ben", {"ok": 1.0})]
    report = agreement_report(rows)
    assert report["criteria"]["ok"]["n_items"] == 1 and report["criteria"]["ok"]["disagreements"] == []
    assert store.export_review_rows_jsonl(round_id=round_id).count("\n") == 2


def test_new_tables_are_append_only(store):
    make_round(store, n=2)
    with sqlite3.connect(store.path) as db:
        for sql in ("UPDATE rounds SET overlap = 1", "DELETE FROM rounds", "UPDATE assignments SET reviewer = 'x'",
                    "DELETE FROM assignments"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                db.execute(sql)


def test_an_older_database_opens_with_its_data(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:  # the schema before review rounds
        db.executescript("""
            CREATE TABLE flags (id INTEGER PRIMARY KEY AUTOINCREMENT, chain_id TEXT NOT NULL, chain_json TEXT NOT NULL,
                rubric_name TEXT NOT NULL, rubric_version TEXT NOT NULL, criterion TEXT, reason TEXT NOT NULL,
                flagged_by TEXT NOT NULL, time TEXT NOT NULL);
            CREATE TABLE reviews (id INTEGER PRIMARY KEY AUTOINCREMENT, flag_id INTEGER NOT NULL REFERENCES flags(id),
                chain_id TEXT NOT NULL, reviewer TEXT NOT NULL, decision TEXT NOT NULL
                CHECK (decision IN ('accept', 'reject', 'rubric-needs-work')), note TEXT NOT NULL DEFAULT '',
                verdicts_json TEXT NOT NULL DEFAULT '{}', time TEXT NOT NULL);
            CREATE TRIGGER flags_no_update BEFORE UPDATE ON flags BEGIN SELECT RAISE(ABORT, 'flags are append-only'); END;
            INSERT INTO flags VALUES (1, 'c1', '{"id": "c1", "text": "x"}', 'arith', 'v0', NULL, 'odd', 'ana', 't');
            INSERT INTO reviews VALUES (1, 1, 'c1', 'ben', 'reject', '', '{"ok": 0.0}', 't');
        """)
    store = ReviewStore(path)
    assert store.flag(1)["status"] == "reject" and store.excluded_chain_ids() == {"c1"}
    assert store.review_rows() == [{"chain_id": "c1", "reviewer": "ben", "criterion_scores": {"ok": 0.0},
                                    "decision": "reject", "note": "", "flag_id": 1, "rubric": "arith",
                                    "rubric_version": "v0", "time": "t"}]
    round_id = make_round(store, n=2)
    assert len(store.assignments(round_id)) == 4


def _review_all(path: str, round_id: int, reviewer: str) -> None:
    store = ReviewStore(path)
    for flag_id in store.reviewer_queue(round_id, reviewer)["flag_id"]:
        for decision in ("rubric-needs-work", "accept"):
            store.add_review(int(flag_id), reviewer=reviewer, decision=decision, verdicts={"ok": 1.0})


def test_four_processes_writing_at_once_lose_nothing(store):
    people = ["ana", "ben", "cy", "dee"]
    round_id = make_round(store, n=12, reviewers=people, overlap=2)
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    procs = [context.Process(target=_review_all, args=(str(store.path), round_id, p)) for p in people]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert all(p.exitcode == 0 for p in procs)
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT COUNT(*) FROM reviews").fetchone()[0] == 12 * 2 * 2  # every write kept
    assert len(store.review_rows(round_id)) == 24
    assert set(store.progress(round_id)["done"]) == {6} and set(store.progress(round_id)["open"]) == {0}
