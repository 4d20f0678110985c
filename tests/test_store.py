"""The review store: append-only flags and reviews, latest decision wins, concurrent writers lose nothing."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import threading

import pytest

from rcsd_core.errors import InputError
from rcsd_core.studio.store import ReviewStore, disagreements


def chain(i: int = 0) -> dict:
    return {"id": f"set/t{i}:student:0", "task_id": f"t{i}", "text": f"chain {i}",
            "scores": {"concise": 1.0, "correct": 0.0, "judged": None}, "total": 0.5}


@pytest.fixture()
def store(tmp_path):
    return ReviewStore(tmp_path / "reviews.sqlite")


def flag(store, i=0, **kw):
    return store.add_flag(chain(i), rubric_name=kw.get("rubric", "r"), rubric_version="v1", reason="odd",
                          flagged_by="ana", criterion=kw.get("criterion"))


def test_wal_mode_and_append_only(store):
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    f = flag(store)
    store.add_review(f, reviewer="ben", decision="accept")
    with sqlite3.connect(store.path) as db:
        for sql in ("UPDATE flags SET reason = 'x'", "DELETE FROM flags", "UPDATE reviews SET decision = 'reject'",
                    "DELETE FROM reviews"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                db.execute(sql)


def test_latest_review_is_the_status_and_history_is_kept(store):
    f = flag(store, criterion="concise")
    assert store.flag(f)["status"] == "open"
    store.add_review(f, reviewer="ben", decision="reject", note="bad", verdicts={"concise": 0.0})
    store.add_review(f, reviewer="cy", decision="accept", note="fine after all", verdicts={"concise": 1.0})
    current = store.flag(f)
    assert current["status"] == "accept" and current["latest"]["reviewer"] == "cy"
    assert [h["decision"] for h in store.history(f)] == ["reject", "accept"]
    assert store.excluded_chain_ids() == set()
    assert current["chain"]["text"] == "chain 0"                      # the snapshot


def test_filters_and_exclusion(store):
    a, b, c = flag(store, 0, criterion="concise"), flag(store, 1, rubric="other"), flag(store, 2)
    store.add_review(a, reviewer="ben", decision="reject")
    store.add_review(b, reviewer="cy", decision="rubric-needs-work")
    assert list(store.queue(status="open")["id"]) == [c]
    assert list(store.queue(rubric="other")["id"]) == [b]
    assert list(store.queue(criterion="concise")["id"]) == [a]
    assert list(store.queue(reviewer="ben")["id"]) == [a]
    assert store.reviewers() == ["ben", "cy"]
    assert store.excluded_chain_ids() == {"set/t0:student:0"}


def test_bad_input_changes_nothing(store):
    f = flag(store)
    for kwargs, match in [({"decision": "maybe"}, "decision must be"), ({"reviewer": " "}, "who reviews"),
                          ({"verdicts": {"concise": 0.5}}, "must be 1.0, 0.0 or null")]:
        with pytest.raises(InputError, match=match):
            store.add_review(f, **{"reviewer": "ben", "decision": "accept", **kwargs})
    with pytest.raises(InputError, match="no flag"):
        store.add_review(99, reviewer="ben", decision="accept")
    with pytest.raises(InputError, match="reason"):
        store.add_flag(chain(), rubric_name="r", rubric_version="v", reason="", flagged_by="ana")
    assert store.history(f) == []


def test_export_disagreement_and_verdict_pairs(store, tmp_path):
    f = flag(store)
    store.add_review(f, reviewer="ben", decision="reject", verdicts={"concise": 0.0, "correct": 0.0, "judged": 1.0})
    flag(store, 1)                                                   # unreviewed: not exported
    lines = [json.loads(line) for line in store.export_jsonl(tmp_path / "out.jsonl").splitlines()]
    assert len(lines) == 1 and (tmp_path / "out.jsonl").read_text().count("\n") == 1
    row = lines[0]
    assert row["id"] == row["chain_id"] == "set/t0:student:0" and row["scores"]["concise"] == 1.0
    assert row["criterion_scores"] == {"concise": 0.0, "correct": 0.0, "judged": 1.0}
    assert row["review"]["decision"] == "reject" and len(row["review"]["history"]) == 1
    assert disagreements(chain(), row["criterion_scores"]) == [{"criterion": "concise", "auto": 1.0, "human": 0.0}]
    pairs = store.verdict_pairs()
    assert set(pairs["criterion"]) == {"concise", "correct", "judged"}
    assert pairs.set_index("criterion").loc["judged", "auto"] is None or \
        pairs.set_index("criterion")["auto"].isna()["judged"]


def _review_many(path: str, reviewer: str, flag_ids: list[int]) -> None:
    store = ReviewStore(path)
    for f in flag_ids:
        store.add_review(f, reviewer=reviewer, decision="accept", note=reviewer)


def test_two_threads_lose_nothing(store):
    ids = [flag(store, i) for i in range(30)]
    threads = [threading.Thread(target=_review_many, args=(str(store.path), name, ids)) for name in ("ben", "cy")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(len(store.history(f)) == 2 for f in ids)


def test_two_processes_lose_nothing(store):
    ids = [flag(store, i) for i in range(30)]
    # fork where it exists (fast); each child opens its own connections, nothing is shared
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    procs = [context.Process(target=_review_many, args=(str(store.path), name, ids)) for name in ("ben", "cy")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert sum(len(store.history(f)) for f in ids) == 60
    assert {h["reviewer"] for f in ids for h in store.history(f)} == {"ben", "cy"}


# ---------------------------------------------------------------------------- an unusable database


def test_a_file_that_is_not_a_database_is_a_clear_input_error(tmp_path):
    path = tmp_path / "reviews.sqlite"
    path.write_bytes(b"not a database at all\n" * 300)
    with pytest.raises(InputError, match="review database is damaged: file is not a database; move it aside") as info:
        ReviewStore(path)
    assert info.value.source == str(path)
    assert path.read_bytes() == b"not a database at all\n" * 300          # left as it was


def test_a_corrupted_database_is_reported_on_reads_and_writes(tmp_path):
    path = tmp_path / "reviews.sqlite"
    store = ReviewStore(path)
    for i in range(40):
        store.add_flag({"id": f"c{i}", "text": "x" * 2000}, rubric_name="r", rubric_version="v", reason="odd",
                       flagged_by="ana")
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    data[4096 * 2: 4096 * 12] = b"\xab" * (4096 * 10)                    # scribble over the table pages
    path.write_bytes(bytes(data))
    damaged = ReviewStore(path)
    for action in (damaged.queue, damaged.excluded_chain_ids, lambda: damaged.add_flag(
            chain(1), rubric_name="r", rubric_version="v", reason="odd", flagged_by="ana")):
        with pytest.raises(InputError, match="review database is damaged"):
            action()


def test_a_read_only_database_still_reads_and_refuses_writes_clearly(tmp_path, monkeypatch):
    from rcsd_core.studio import store as store_module

    path = tmp_path / "reviews.sqlite"
    store = ReviewStore(path)
    f = flag(store)
    connect = sqlite3.connect

    def read_only(database, *args, **kwargs):   # what a read-only file or mount gives (tests may run as root)
        return connect(f"file:{database}?mode=ro", *args, uri=True, **kwargs)

    monkeypatch.setattr(store_module.sqlite3, "connect", read_only)
    again = ReviewStore(path)
    assert list(again.queue()["id"]) == [f]
    with pytest.raises(InputError, match="cannot be opened or written .*readonly"):
        again.add_review(f, reviewer="ben", decision="accept")
    with pytest.raises(InputError, match="cannot be opened or written"):
        flag(again)


def test_an_unreachable_database_folder_is_a_clear_input_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the workspace folder should be")
    with pytest.raises(InputError, match="cannot be opened or written"):
        ReviewStore(blocker / "reviews.sqlite")
