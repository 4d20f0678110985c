"""Store: flags and reviews in SQLite, appended and never rewritten.

    store = ReviewStore(workspace.store_path(root))
    flag_id = store.add_flag(chain, rubric_name="grade-school-math", rubric_version="…",
                             reason="answer line missing", flagged_by="ana", criterion="final-answer-line")
    store.add_review(flag_id, reviewer="ben", decision="reject", note="…",
                     verdicts={"final-answer-line": 0.0})
    queue = store.queue(status="open")
    store.excluded_chain_ids()           # chains whose latest decision is reject

    # a review round: every chain to `overlap` distinct reviewers, balanced
    round_id = store.create_round("r1", chains, rubric_name="…", rubric_version="…",
                                  reviewers=["ana", "ben", "cy"], overlap=2, created_by="lead")
    store.reviewer_queue(round_id, "ben")   # ben's own chains and his own status on each
    store.visible_reviews(flag_id, "ben")   # others' verdicts only once ben has submitted his
    store.review_rows(round_id)             # each reviewer's latest review per chain (`rcsd agreement`)

Tables, all append-only (triggers refuse UPDATE and DELETE):
- `flags`: a JSON snapshot of the chain as it was flagged (text, scores, …), the rubric name and
  version, an optional criterion, the reason, who flagged it and when.
- `reviews`: a decision on a flag — accept | reject | rubric-needs-work — with reviewer, note,
  per-criterion human verdicts {criterion id: 1.0 | 0.0 | null} and time.
- `rounds`: a named review round (rubric, overlap, reviewers, who created it, when) and
  `assignments`: which reviewer reviews which flag of a round. Creating a round flags each chain
  once ("review round <name>") and assigns it, in one transaction. Only the assigned reviewers
  review a round's flag. An older database gets these two tables when it is opened (created if
  missing; the flags and reviews in it are untouched).
A flag's status is its latest review's decision ("open" when it has none); the history is every
review in order. The database runs in WAL mode with a busy timeout, and each write is its own
short transaction, so two reviewers (threads or processes) writing at once lose nothing.
Rejected chains (`excluded_chain_ids()`) are left out of the Preview page's rates, totals and lint.

A database that cannot be used raises InputError, never a raw sqlite3 error, so a page can show
one line and stay usable: a damaged file ("review database is damaged: file is not a database;
move it aside to start a new one"), one that cannot be written or opened (read-only file or
folder, full disk), or one locked by another writer past the busy timeout. Nothing is repaired
or rewritten in place: moving the file aside is the user's call.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import pandas as pd

from rcsd_core.errors import InputError
from rcsd_core.files import utc_now

DECISIONS = ("accept", "reject", "rubric-needs-work")
STATUSES = ("open", *DECISIONS)
BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS flags (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    chain_id TEXT NOT NULL,
    chain_json TEXT NOT NULL,
    rubric_name TEXT NOT NULL,
    rubric_version TEXT NOT NULL,
    criterion TEXT,
    reason TEXT NOT NULL,
    flagged_by TEXT NOT NULL,
    time TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS reviews (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    flag_id INTEGER NOT NULL REFERENCES flags(id),
    chain_id TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('accept', 'reject', 'rubric-needs-work')),
    note TEXT NOT NULL DEFAULT '',
    verdicts_json TEXT NOT NULL DEFAULT '{}',
    time TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rounds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    rubric_name TEXT NOT NULL,
    rubric_version TEXT NOT NULL,
    overlap INTEGER NOT NULL CHECK (overlap >= 1),
    reviewers_json TEXT NOT NULL,
    created_by TEXT NOT NULL,
    time TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS assignments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    round_id INTEGER NOT NULL REFERENCES rounds(id),
    flag_id INTEGER NOT NULL REFERENCES flags(id),
    chain_id TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    UNIQUE (round_id, flag_id, reviewer)
);
CREATE INDEX IF NOT EXISTS reviews_flag ON reviews(flag_id, id);
CREATE INDEX IF NOT EXISTS assignments_reviewer ON assignments(round_id, reviewer);
CREATE INDEX IF NOT EXISTS assignments_flag ON assignments(flag_id);
CREATE INDEX IF NOT EXISTS flags_chain ON flags(chain_id);
CREATE TRIGGER IF NOT EXISTS flags_no_update BEFORE UPDATE ON flags
    BEGIN SELECT RAISE(ABORT, 'flags are append-only'); END;
CREATE TRIGGER IF NOT EXISTS flags_no_delete BEFORE DELETE ON flags
    BEGIN SELECT RAISE(ABORT, 'flags are append-only'); END;
CREATE TRIGGER IF NOT EXISTS reviews_no_update BEFORE UPDATE ON reviews
    BEGIN SELECT RAISE(ABORT, 'reviews are append-only'); END;
CREATE TRIGGER IF NOT EXISTS reviews_no_delete BEFORE DELETE ON reviews
    BEGIN SELECT RAISE(ABORT, 'reviews are append-only'); END;
CREATE TRIGGER IF NOT EXISTS rounds_no_update BEFORE UPDATE ON rounds
    BEGIN SELECT RAISE(ABORT, 'rounds are append-only'); END;
CREATE TRIGGER IF NOT EXISTS rounds_no_delete BEFORE DELETE ON rounds
    BEGIN SELECT RAISE(ABORT, 'rounds are append-only'); END;
CREATE TRIGGER IF NOT EXISTS assignments_no_update BEFORE UPDATE ON assignments
    BEGIN SELECT RAISE(ABORT, 'assignments are append-only'); END;
CREATE TRIGGER IF NOT EXISTS assignments_no_delete BEFORE DELETE ON assignments
    BEGIN SELECT RAISE(ABORT, 'assignments are append-only'); END;
"""

# The latest review of each flag: the highest review id (ids only grow, so ties cannot happen).
_LATEST = """
SELECT r.* FROM reviews r
JOIN (SELECT flag_id, MAX(id) AS last FROM reviews GROUP BY flag_id) l ON r.id = l.last
"""


class ReviewStore:
    """Flags and reviews in one SQLite file (WAL); every method opens its own short connection."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with self._usable():
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise sqlite3.OperationalError(f"unable to open database file ({exc.strerror})") from None
            with closing(self._connect()) as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)

    @contextmanager
    def _usable(self) -> Iterator[None]:
        """sqlite3 errors of an unusable database as one InputError naming the file and the way out."""
        try:
            yield
        except sqlite3.IntegrityError:
            raise   # a constraint we broke ourselves: a bug, keep the traceback
        except sqlite3.DatabaseError as exc:
            text = str(exc)
            lowered = text.lower()
            if "locked" in lowered or "busy" in lowered:
                message = (f"review database is busy ({text}): another process held it for more than "
                           f"{BUSY_TIMEOUT_S:g}s; try again")
            elif any(w in lowered for w in ("readonly", "read-only", "unable to open", "disk i/o", "full",
                                            "permission", "authorization")):
                message = (f"review database cannot be opened or written ({text}); reviews need a writable file "
                           "and folder: check the permissions and free space, or set RCSD_HOME elsewhere")
            else:
                message = f"review database is damaged: {text}; move it aside to start a new one"
            raise InputError(message, source=self.path) from None

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we open transactions ourselves (BEGIN IMMEDIATE takes the write
        # lock up front, so two writers queue on the busy timeout instead of failing mid-way).
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        return db

    def _insert(self, sql: str, params: tuple) -> int:
        with self._usable(), closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                cursor = db.execute(sql, params)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            return int(cursor.lastrowid)

    def _rows(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with self._usable(), closing(self._connect()) as db:
            return db.execute(sql, params).fetchall()

    # ------------------------------------------------------------------------ writes

    def add_flag(self, chain: dict, *, rubric_name: str, rubric_version: str, reason: str, flagged_by: str,
                 criterion: str | None = None) -> int:
        """Flag a chain for review; the chain is stored as it is now (a snapshot). Returns the flag id."""
        if not isinstance(chain.get("id"), str) or not chain["id"]:
            raise InputError("the chain has no id", field="chain")
        if not reason.strip():
            raise InputError("give a reason for the flag", field="reason")
        if not flagged_by.strip():
            raise InputError("say who flags it", field="flagged_by")
        return self._insert(
            "INSERT INTO flags (chain_id, chain_json, rubric_name, rubric_version, criterion, reason, flagged_by, time)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (chain["id"], json.dumps(chain, ensure_ascii=False), rubric_name, rubric_version, criterion or None,
             reason.strip(), flagged_by.strip(), utc_now("milliseconds")))

    def add_review(self, flag_id: int, *, reviewer: str, decision: str, note: str = "",
                   verdicts: dict[str, float | None] | None = None) -> int:
        """Append a decision on a flag; earlier decisions stay in the history. Returns the review id."""
        if decision not in DECISIONS:
            raise InputError(f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}", field="decision")
        if not reviewer.strip():
            raise InputError("say who reviews it", field="reviewer")
        clean: dict[str, float | None] = {}
        for cid, value in (verdicts or {}).items():
            if value not in (None, 0.0, 1.0):
                raise InputError(f"verdict for {cid!r} must be 1.0, 0.0 or null, not {value!r}", field="verdicts")
            clean[cid] = None if value is None else float(value)
        flag = self.flag(flag_id)
        assigned = self.assigned_reviewers(flag_id)
        if assigned and reviewer.strip() not in assigned:
            raise InputError(f"flag {flag_id} belongs to a review round; it is assigned to {', '.join(assigned)}, "
                             f"not {reviewer.strip()!r}", field="reviewer")
        return self._insert(
            "INSERT INTO reviews (flag_id, chain_id, reviewer, decision, note, verdicts_json, time)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (int(flag_id), flag["chain_id"], reviewer.strip(), decision, note.strip(), json.dumps(clean), utc_now("milliseconds")))

    # ------------------------------------------------------------------------ reads

    def flag(self, flag_id: int) -> dict:
        """One flag with its chain snapshot, status and latest review."""
        rows = self._rows("SELECT * FROM flags WHERE id = ?", (int(flag_id),))
        if not rows:
            raise InputError(f"no flag with id {flag_id}", field="flag")
        flag = _flag_record(rows[0])
        history = self.history(flag_id)
        latest = history[-1] if history else None
        flag["status"] = latest["decision"] if latest else "open"
        flag["latest"] = latest
        return flag

    def history(self, flag_id: int) -> list[dict]:
        """Every review of a flag, oldest first."""
        return [_review_record(r) for r in self._rows("SELECT * FROM reviews WHERE flag_id = ? ORDER BY id",
                                                      (int(flag_id),))]

    def queue(self, *, rubric: str | None = None, criterion: str | None = None, status: str | None = None,
              reviewer: str | None = None, rounds: bool = True) -> pd.DataFrame:
        """The flags with their current status, newest first, optionally filtered.

        `reviewer` keeps flags that reviewer has decided at least once; `rounds=False` leaves out the
        flags of review rounds (their status would show one reviewer another's verdict).
        """
        rows = self._rows(
            "SELECT f.id, f.chain_id, f.rubric_name, f.rubric_version, f.criterion, f.reason, f.flagged_by, f.time,"
            " COALESCE(l.decision, 'open') AS status, l.reviewer AS last_reviewer, l.time AS decided"
            f" FROM flags f LEFT JOIN ({_LATEST}) l ON l.flag_id = f.id ORDER BY f.id DESC")
        frame = pd.DataFrame([dict(r) for r in rows],
                             columns=["id", "chain_id", "rubric_name", "rubric_version", "criterion", "reason",
                                      "flagged_by", "time", "status", "last_reviewer", "decided"])
        if rubric:
            frame = frame[frame["rubric_name"] == rubric]
        if criterion:
            frame = frame[frame["criterion"] == criterion]
        if status:
            frame = frame[frame["status"] == status]
        if reviewer:
            ids = {r["flag_id"] for r in self._rows("SELECT DISTINCT flag_id FROM reviews WHERE reviewer = ?",
                                                    (reviewer,))}
            frame = frame[frame["id"].isin(ids)]
        if not rounds:
            ids = {r[0] for r in self._rows("SELECT DISTINCT flag_id FROM assignments")}
            frame = frame[~frame["id"].isin(ids)]
        return frame.reset_index(drop=True)

    def reviewers(self) -> list[str]:
        return [r[0] for r in self._rows("SELECT DISTINCT reviewer FROM reviews ORDER BY reviewer")]

    def excluded_chain_ids(self) -> set[str]:
        """Chains whose latest decision (over all their flags) is reject: keep them out of training and eval."""
        rows = self._rows(
            "SELECT r.chain_id, r.decision FROM reviews r"
            " JOIN (SELECT chain_id, MAX(id) AS last FROM reviews GROUP BY chain_id) l ON r.id = l.last")
        return {r["chain_id"] for r in rows if r["decision"] == "reject"}

    def reviewed_chains(self) -> list[dict]:
        """Each reviewed flag's chain snapshot with its review block: status, verdicts, note, history."""
        out = []
        for row in self._rows(f"SELECT f.*, l.id AS review_id FROM flags f JOIN ({_LATEST}) l ON l.flag_id = f.id"
                              " ORDER BY f.id"):
            flag = _flag_record(row)
            history = self.history(flag["id"])
            latest = history[-1]
            # chain_id + criterion_scores: the reviews shape `rcsd calibrate --reviews` reads; the
            # snapshot's own id + scores make the same file usable as its --scores too.
            out.append({**flag["chain"], "chain_id": flag["chain_id"], "criterion_scores": latest["verdicts"],
                        "reviewer": latest["reviewer"], "review": {
                "flag_id": flag["id"], "rubric": flag["rubric_name"], "rubric_version": flag["rubric_version"],
                "criterion": flag["criterion"], "reason": flag["reason"], "decision": latest["decision"],
                "reviewer": latest["reviewer"], "note": latest["note"], "verdicts": latest["verdicts"],
                "time": latest["time"], "history": history}})
        return out

    def export_jsonl(self, path: str | Path | None = None) -> str:
        """Reviewed chains as JSONL text (written atomically to `path` when given)."""
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.reviewed_chains())
        if path is not None:
            from rcsd_core.files import atomic_write_text
            atomic_write_text(path, text)
        return text

    def verdict_pairs(self, rubric: str | None = None) -> pd.DataFrame:
        """Automatic score vs the latest human verdict, one row per (flag, criterion) a reviewer judged.

        Columns: flag_id, chain_id, rubric, criterion, auto, human. Calibration reads this.
        """
        rows = []
        for chain in self.reviewed_chains():
            review = chain["review"]
            if rubric and review["rubric"] != rubric:
                continue
            for cid, human in review["verdicts"].items():
                if human is None:
                    continue
                rows.append({"flag_id": review["flag_id"], "chain_id": chain["id"], "rubric": review["rubric"],
                             "criterion": cid, "auto": (chain.get("scores") or {}).get(cid), "human": human})
        return pd.DataFrame(rows, columns=["flag_id", "chain_id", "rubric", "criterion", "auto", "human"])

    # ------------------------------------------------------------------------ review rounds

    def create_round(self, name: str, chains: Sequence[dict], *, rubric_name: str, rubric_version: str,
                     reviewers: Sequence[str], overlap: int, created_by: str) -> int:
        """A review round: each chain flagged once and assigned to `overlap` distinct reviewers
        (balanced, see `assign`), all in one transaction. Returns the round id."""
        name = name.strip()
        people = [r.strip() for r in reviewers]
        if not name:
            raise InputError("give the round a name", field="name")
        if not created_by.strip():
            raise InputError("say who creates the round", field="created_by")
        if any(not r for r in people) or len(set(people)) != len(people):
            raise InputError("reviewers must be distinct, non-empty names", field="reviewers")
        if not chains:
            raise InputError("a round needs at least one chain", field="chains")
        ids = [c.get("id") for c in chains]
        if any(not isinstance(i, str) or not i for i in ids) or len(set(ids)) != len(ids):
            raise InputError("every chain needs a distinct id", field="chains")
        plan = assign(len(chains), people, overlap)
        now = utc_now("milliseconds")
        with self._usable(), closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                if db.execute("SELECT 1 FROM rounds WHERE name = ?", (name,)).fetchone():
                    raise InputError(f"a review round named {name!r} exists already", field="name")
                round_id = db.execute(
                    "INSERT INTO rounds (name, rubric_name, rubric_version, overlap, reviewers_json, created_by, time)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (name, rubric_name, rubric_version, int(overlap), json.dumps(people), created_by.strip(),
                     now)).lastrowid
                for chain, assigned in zip(chains, plan):
                    flag_id = db.execute(
                        "INSERT INTO flags (chain_id, chain_json, rubric_name, rubric_version, criterion, reason,"
                        " flagged_by, time) VALUES (?, ?, ?, ?, NULL, ?, ?, ?)",
                        (chain["id"], json.dumps(chain, ensure_ascii=False), rubric_name, rubric_version,
                         f"review round {name}", created_by.strip(), now)).lastrowid
                    db.executemany("INSERT INTO assignments (round_id, flag_id, chain_id, reviewer) VALUES (?, ?, ?, ?)",
                                   [(round_id, flag_id, chain["id"], r) for r in assigned])
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        return int(round_id)

    def rounds(self) -> list[dict]:
        """Every review round, oldest first: id, name, rubric, overlap, reviewers, created_by, time, n_chains."""
        out = []
        for row in self._rows("SELECT r.*, (SELECT COUNT(DISTINCT flag_id) FROM assignments a WHERE a.round_id = r.id)"
                              " AS n_chains FROM rounds r ORDER BY r.id"):
            record = dict(row)
            record["reviewers"] = json.loads(record.pop("reviewers_json"))
            out.append(record)
        return out

    def round(self, round_id: int) -> dict:
        for record in self.rounds():
            if record["id"] == int(round_id):
                return record
        raise InputError(f"no review round with id {round_id}", field="round")

    def assignments(self, round_id: int) -> pd.DataFrame:
        """Columns flag_id, chain_id, reviewer: who reviews what in a round."""
        rows = self._rows("SELECT flag_id, chain_id, reviewer FROM assignments WHERE round_id = ? ORDER BY id",
                          (int(round_id),))
        return pd.DataFrame([dict(r) for r in rows], columns=["flag_id", "chain_id", "reviewer"])

    def assigned_reviewers(self, flag_id: int) -> list[str]:
        """The reviewers a round assigned this flag to ([] for a flag outside any round)."""
        return [r[0] for r in self._rows("SELECT reviewer FROM assignments WHERE flag_id = ? ORDER BY id",
                                         (int(flag_id),))]

    def reviewer_queue(self, round_id: int, reviewer: str) -> pd.DataFrame:
        """A reviewer's own chains in a round, in assignment order, with their own latest decision
        (`status`, "open" before they submit) — never another reviewer's. Columns flag_id, chain_id,
        status, decided."""
        rows = self._rows(
            "SELECT a.flag_id, a.chain_id, COALESCE(r.decision, 'open') AS status, r.time AS decided"
            " FROM assignments a LEFT JOIN (SELECT r.* FROM reviews r JOIN (SELECT flag_id, MAX(id) AS last"
            "   FROM reviews WHERE reviewer = ? GROUP BY flag_id) l ON r.id = l.last) r ON r.flag_id = a.flag_id"
            " WHERE a.round_id = ? AND a.reviewer = ? ORDER BY a.id", (reviewer, int(round_id), reviewer))
        return pd.DataFrame([dict(r) for r in rows], columns=["flag_id", "chain_id", "status", "decided"])

    def progress(self, round_id: int) -> pd.DataFrame:
        """Per reviewer of a round: assigned, done (chains they decided), open."""
        rows = []
        for reviewer in self.round(round_id)["reviewers"]:
            queue = self.reviewer_queue(round_id, reviewer)
            done = int((queue["status"] != "open").sum())
            rows.append({"reviewer": reviewer, "assigned": len(queue), "done": done, "open": len(queue) - done})
        return pd.DataFrame(rows, columns=["reviewer", "assigned", "done", "open"])

    def visible_reviews(self, flag_id: int, reviewer: str) -> list[dict]:
        """The reviews `reviewer` may see on a flag: on a round's flag, only their own until they
        have submitted one, then everyone's; outside a round, every review (the history)."""
        history = self.history(flag_id)
        if not self.assigned_reviewers(flag_id):
            return history
        if any(h["reviewer"] == reviewer for h in history):
            return history
        return []

    def review_rows(self, round_id: int | None = None) -> list[dict]:
        """Each reviewer's latest review of each flag (of one round, or all), oldest first:
        {chain_id, reviewer, criterion_scores, decision, note, flag_id, rubric, rubric_version, time} —
        the rows `rcsd agreement --reviews` reads."""
        where, params = ("", ()) if round_id is None else (
            " WHERE r.flag_id IN (SELECT flag_id FROM assignments WHERE round_id = ?)", (int(round_id),))
        rows = self._rows(
            "SELECT r.*, f.rubric_name, f.rubric_version FROM reviews r"
            " JOIN (SELECT flag_id, reviewer, MAX(id) AS last FROM reviews GROUP BY flag_id, reviewer) l"
            " ON r.id = l.last JOIN flags f ON f.id = r.flag_id" + where + " ORDER BY r.id", params)
        out = []
        for row in rows:
            record = _review_record(row)
            out.append({"chain_id": record["chain_id"], "reviewer": record["reviewer"],
                        "criterion_scores": record["verdicts"], "decision": record["decision"],
                        "note": record["note"], "flag_id": record["flag_id"], "rubric": record["rubric_name"],
                        "rubric_version": record["rubric_version"], "time": record["time"]})
        return out

    def round_chains(self, round_id: int) -> list[dict]:
        """The chain snapshots of a round, in assignment order (one per flag)."""
        rows = self._rows("SELECT f.* FROM flags f WHERE f.id IN (SELECT flag_id FROM assignments WHERE round_id = ?)"
                          " ORDER BY f.id", (int(round_id),))
        return [_flag_record(r)["chain"] for r in rows]

    def export_review_rows_jsonl(self, path: str | Path | None = None, round_id: int | None = None) -> str:
        """`review_rows` as JSONL text (written atomically to `path` when given)."""
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.review_rows(round_id))
        if path is not None:
            from rcsd_core.files import atomic_write_text
            atomic_write_text(path, text)
        return text


def assign(n_chains: int, reviewers: Sequence[str], overlap: int) -> list[list[str]]:
    """Each of n chains to `overlap` distinct reviewers, balanced: chain i takes the reviewers at
    positions i·k … i·k + k − 1 (mod R) of the list, so the n·k places go round the reviewers in turn,
    each reviewer gets ⌊n·k/R⌋ or ⌈n·k/R⌉ chains and the reviewer pairs rotate."""
    if not reviewers:
        raise InputError("name at least one reviewer", field="reviewers")
    if not 1 <= overlap <= len(reviewers):
        raise InputError(f"overlap must be between 1 and the number of reviewers ({len(reviewers)}), not {overlap}",
                         field="overlap")
    r = len(reviewers)
    return [[reviewers[(i * overlap + j) % r] for j in range(overlap)] for i in range(n_chains)]


def disagreements(chain: dict, verdicts: dict[str, float | None]) -> list[dict]:
    """Criteria where a human verdict differs from the chain's automatic score."""
    out = []
    for cid, human in verdicts.items():
        auto = (chain.get("scores") or {}).get(cid)
        if human is not None and auto is not None and float(auto) != float(human):
            out.append({"criterion": cid, "auto": auto, "human": human})
    return out


def _flag_record(row: sqlite3.Row) -> dict:
    record = dict(row)
    record["chain"] = json.loads(record.pop("chain_json"))
    return record


def _review_record(row: sqlite3.Row) -> dict:
    record = dict(row)
    record["verdicts"] = json.loads(record.pop("verdicts_json"))
    return record



