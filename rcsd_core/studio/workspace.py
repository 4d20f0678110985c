"""Workspace: where the studio keeps rubrics, task sets, previewed chains, runs and reviews.

    root = workspace_root()            # $RCSD_HOME, default ~/rcsd-workspace
    ensure_workspace(root)             # creates the folders; copies the sample rubrics in once
    version = save_rubric_version(root, rubric)
    rubric = load_rubric_version(root, "grade-school-math")          # the current version

Layout under the root:

    rubrics/<name>/<version>.yaml   immutable versions (the version is the content hash)
    rubrics/<name>/history.jsonl    one appended line per save: version, time, note, parent
    rubrics/<name>/current          the version the studio opens by default
    rubrics/<name>/tasks            (optional) the task set this rubric is usually tried on
    tasks/<name>.jsonl              task sets (DESIGN §2 tasks JSONL)
    chains/<id>.jsonl               previewed chains with their scores; <id>.meta.json beside it
    runs/<run-id>/                  round run directories (rcsd_core.contracts.runs)
    reviews.sqlite                  flags and reviews (rcsd_core.studio.store)

Every function takes the workspace root explicitly; pages get it from `workspace_root()` once
and never build paths themselves. Uploads go through `import_rubric` / `import_task_set`, which
refuse oversized, non-UTF-8 or invalid files with an InputError and change nothing then. Every
name that becomes a path (rubric, task set, chain set, run) passes `contracts.names.check_name`.
A rubric upload is capped at MAX_RUBRIC_BYTES, the same constant that caps saving and loading
a rubric, so an accepted upload always loads back; an upload never replaces an existing task set.
The helpers that turn a rubric into editor rows and back live at the end of this module.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import secrets
from pathlib import Path
from typing import Any

from rcsd_core.errors import InputError
from rcsd_core.files import (append_jsonl, atomic_write_text, decode_utf8, read_jsonl, read_text, utc_now, utc_stamp,
                             write_jsonl)
from rcsd_core.contracts.names import check_name
from rcsd_core.contracts.rubric import (CHECK_TYPES, MAX_RUBRIC_BYTES, Rubric, checked_rubric_yaml, load_rubric,
                                        parse_rubric, rubric_errors)
from rcsd_core.contracts.tasks import Task, load_tasks

DEFAULT_HOME = Path("~/rcsd-workspace")
MAX_UPLOAD_BYTES = 10 * 2**20     # the studio refuses larger uploads (matches .streamlit/config.toml)
SAMPLES_DIR = Path(__file__).resolve().parents[2] / "sample_rubrics"


# ---------------------------------------------------------------------------- the root

def workspace_root() -> Path:
    """$RCSD_HOME, or ~/rcsd-workspace when it is not set."""
    return Path(os.environ.get("RCSD_HOME") or DEFAULT_HOME).expanduser().resolve()


def ensure_workspace(root: str | Path) -> Path:
    """Create the workspace folders; on first start copy the sample rubrics and task sets in."""
    root = Path(root)
    for sub in ("rubrics", "tasks", "chains", "runs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    marker = root / ".seeded"
    if not marker.exists():
        seed_samples(root)
        atomic_write_text(marker, utc_now() + "\n")
    return root


def seed_samples(root: str | Path) -> list[str]:
    """Copy each sample_rubrics/<domain>.yaml (+ .tasks.jsonl) into the workspace; returns rubric names."""
    root = Path(root)
    names = []
    for path in sorted(SAMPLES_DIR.glob("*.yaml")):
        rubric = load_rubric(path)
        save_rubric_version(root, rubric, note=f"sample {path.name}")
        tasks = path.with_name(path.stem + ".tasks.jsonl")
        if tasks.is_file():
            target = root / "tasks" / f"{path.stem}.jsonl"
            if not target.exists():
                atomic_write_text(target, read_text(tasks))
            atomic_write_text(rubric_dir(root, rubric.name) / "tasks", path.stem + "\n")
        names.append(rubric.name)
    return names


def runs_root(root: str | Path) -> Path:
    return Path(root) / "runs"


def store_path(root: str | Path) -> Path:
    return Path(root) / "reviews.sqlite"


def run_dir(root: str | Path, run_id: str) -> Path:
    return runs_root(root) / check_name(run_id, "run", field="run")


# ---------------------------------------------------------------------------- rubrics

def list_rubrics(root: str | Path) -> list[str]:
    """Names of the rubrics in the workspace, sorted (a stray folder with an invalid name is left out)."""
    base = Path(root) / "rubrics"
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if p.is_dir() and (p / "current").is_file() and _valid(p.name, "rubric"))


def rubric_versions(root: str | Path, name: str) -> list[dict]:
    """The save history of a rubric, oldest first: {version, time, note, parent}."""
    path = rubric_dir(root, name) / "history.jsonl"
    return read_jsonl(path, tolerate_partial_tail=True) if path.is_file() else []


def current_version(root: str | Path, name: str) -> str:
    path = rubric_dir(root, name) / "current"
    if not path.is_file():
        raise InputError(f"no rubric named {name!r} in the workspace", field="rubric")
    return read_text(path).strip()


def rubric_path(root: str | Path, name: str, version: str | None = None) -> Path:
    """Path of a saved version (the current one by default)."""
    version = version or current_version(root, name)
    if not re.fullmatch(r"[0-9a-f]{12}", version):
        raise InputError(f"invalid rubric version {version!r}", field="version")
    path = rubric_dir(root, name) / f"{version}.yaml"
    if not path.is_file():
        raise InputError(f"rubric {name!r} has no version {version}", field="version")
    return path


def load_rubric_version(root: str | Path, name: str, version: str | None = None) -> Rubric:
    return load_rubric(rubric_path(root, name, version))


def rubric_yaml(root: str | Path, name: str, version: str | None = None) -> str:
    return read_text(rubric_path(root, name, version))


def save_rubric_version(root: str | Path, rubric: Rubric, *, note: str = "",
                        provenance: dict[str, Any] | None = None) -> str:
    """Save the rubric as a new immutable version and make it current; returns the version.

    A version file is written once and never overwritten: saving content that already exists
    only moves the `current` pointer (and logs it). `provenance` (e.g. the review a promoted
    worked example came from, or the review items a version answers) is kept in its history entry.
    """
    folder = rubric_dir(root, rubric.name)
    text = checked_rubric_yaml(rubric)   # refused before anything is written when it could not load back
    folder.mkdir(parents=True, exist_ok=True)
    version = rubric.version
    path = folder / f"{version}.yaml"
    if not path.exists():
        atomic_write_text(path, text)
    parent = read_text(folder / "current").strip() if (folder / "current").is_file() else None
    if parent != version:
        entry = {"version": version, "time": utc_now(), "note": note, "parent": parent}
        if provenance:
            entry["provenance"] = provenance
        append_jsonl(folder / "history.jsonl", entry)
        atomic_write_text(folder / "current", version + "\n")
    return version


def set_current_version(root: str | Path, name: str, version: str) -> None:
    """Make an older version current again (logged like a save)."""
    rubric = load_rubric_version(root, name, version)
    save_rubric_version(root, rubric, note=f"restored {version}")


def duplicate_rubric(root: str | Path, name: str, new_name: str) -> str:
    """Copy the current version of a rubric under a new name; returns the new version."""
    rubric_dir(root, new_name)   # refuses a bad name with a clear message
    if new_name in list_rubrics(root):
        raise InputError(f"a rubric named {new_name!r} already exists", field="name")
    data = load_rubric_version(root, name).model_dump(mode="json")
    data["name"] = new_name
    return save_rubric_version(root, _validated(data, "duplicate"), note=f"duplicated from {name}")


def create_rubric(root: str | Path, name: str, description: str = "") -> str:
    """A new rubric with one placeholder criterion to edit."""
    rubric_dir(root, name)
    if name in list_rubrics(root):
        raise InputError(f"a rubric named {name!r} already exists", field="name")
    data = {"name": name, "description": description,
            "criteria": [{"id": "final-answer", "title": "Final answer",
                          "description": "The answer ends with a clear final answer line.", "weight": 1}]}
    return save_rubric_version(root, _validated(data, "new rubric"), note="created")


def import_rubric(root: str | Path, data: bytes, filename: str = "upload.yaml") -> Rubric:
    """Validate an uploaded rubric YAML and save it as a new version of its rubric.

    Capped at the rubric limit (MAX_RUBRIC_BYTES), not the general upload limit: a version the
    workspace could not load back would break every page that lists rubrics.
    """
    _check_size(data, filename, limit=min(MAX_UPLOAD_BYTES, MAX_RUBRIC_BYTES))
    rubric = parse_rubric(decode_utf8(data, source=filename), source=filename)
    save_rubric_version(root, rubric, note=f"imported {Path(filename).name}")
    return rubric


def rubric_diff(root: str | Path, name: str, old: str, new: str) -> str:
    """A unified diff between two saved versions' YAML ('' when they are the same)."""
    a = rubric_yaml(root, name, old).splitlines(keepends=True)
    b = rubric_yaml(root, name, new).splitlines(keepends=True)
    return "".join(difflib.unified_diff(a, b, fromfile=f"{name}@{old}", tofile=f"{name}@{new}"))


def suggested_task_set(root: str | Path, name: str) -> str | None:
    """The task set a rubric was last tried on (at first the sample pairing), when one is recorded."""
    path = rubric_dir(root, name) / "tasks"
    if path.is_file():
        value = read_text(path).strip()
        if value in list_task_sets(root):
            return value
    return None


def remember_task_set(root: str | Path, name: str, task_set: str) -> None:
    """Record `task_set` as the one `name` is tried on: Preview and Train open on it next time."""
    if task_set in list_task_sets(root) and rubric_dir(root, name).is_dir():
        atomic_write_text(rubric_dir(root, name) / "tasks", task_set + "\n")


def rubric_dir(root: str | Path, name: str) -> Path:
    """The folder of a rubric's versions and what the studio remembers for it (task set, judge)."""
    return Path(root) / "rubrics" / check_name(name, "rubric")


# ---------------------------------------------------------------------------- task sets

def list_task_sets(root: str | Path) -> list[str]:
    base = Path(root) / "tasks"
    return sorted(p.stem for p in base.glob("*.jsonl") if _valid(p.stem, "task set")) if base.is_dir() else []


def task_set_path(root: str | Path, name: str) -> Path:
    path = Path(root) / "tasks" / f"{check_name(name, 'task set')}.jsonl"
    if not path.is_file():
        raise InputError(f"no task set named {name!r} in the workspace", field="tasks")
    return path


def load_task_set(root: str | Path, name: str, *, split: str | None = None) -> list[Task]:
    return load_tasks(task_set_path(root, name), split=split)


def import_task_set(root: str | Path, data: bytes, filename: str) -> str:
    """Validate an uploaded tasks JSONL and store it as tasks/<stem>.jsonl; returns the set's name.

    The upload is validated from a staging file; an invalid one leaves the workspace unchanged.
    A task set already named so is never replaced (runs and previews refer to it by name): the
    same content again is accepted as it is, other content is refused, to be uploaded under
    another file name. The new file is linked into place, which fails if another upload of the
    same name got there first.
    """
    _check_size(data, filename)
    name = re.sub(r"[^A-Za-z0-9._-]", "-", Path(filename).name.removesuffix(".jsonl").removesuffix(".tasks"))
    name = name.strip("-.") or "tasks"
    try:
        check_name(name, "task set")
    except InputError as exc:
        raise InputError(f"cannot derive a task set name from the file name: {exc.message}", source=filename,
                         field="tasks") from None
    text = decode_utf8(data, source=filename)
    target = Path(root) / "tasks" / f"{name}.jsonl"
    if target.exists():
        _refuse_other_task_set(target, text, name, filename)
        return name
    staging = target.with_name(f".{name}.{secrets.token_hex(4)}.upload")
    atomic_write_text(staging, text)
    try:
        try:
            load_tasks(staging)
        except InputError as exc:   # name the upload, not the staging file
            raise InputError(exc.message, source=filename, line=exc.line, field=exc.field) from None
        try:
            os.link(staging, target)     # exclusive: never replaces a file that appeared meanwhile
        except FileExistsError:
            _refuse_other_task_set(target, text, name, filename)
    finally:
        staging.unlink(missing_ok=True)
    return name


def _refuse_other_task_set(target: Path, text: str, name: str, filename: str) -> None:
    if read_text(target) != text:
        raise InputError(f"a task set named {name!r} already exists with other content; rename the file to "
                         "upload it as a new set", source=filename, field="tasks")


# ---------------------------------------------------------------------------- previewed chains

def save_chain_set(root: str | Path, records: list[dict], meta: dict[str, Any]) -> str:
    """Save previewed chains as chains/<id>.jsonl (+ meta); chain ids become '<set id>/<chain id>'.

    Prefixing makes every chain id unique across the workspace, so a review decision points at
    exactly one chain.
    """
    set_id = utc_stamp() + "-" + secrets.token_hex(3)
    chains = [{**r, "id": f"{set_id}/{r['id']}"} for r in records]
    base = Path(root) / "chains"
    write_jsonl(base / f"{set_id}.jsonl", chains)
    atomic_write_text(base / f"{set_id}.meta.json",
                      json.dumps({**meta, "id": set_id, "time": utc_now(), "chains": len(chains)}, indent=1))
    return set_id


def list_chain_sets(root: str | Path) -> list[dict]:
    """Metadata of saved chain sets, newest first."""
    base = Path(root) / "chains"
    metas = []
    for path in sorted(base.glob("*.meta.json"), reverse=True) if base.is_dir() else []:
        try:
            metas.append(json.loads(read_text(path)))
        except (InputError, json.JSONDecodeError):
            continue
    return metas


def load_chain_set(root: str | Path, set_id: str) -> list[dict]:
    return read_jsonl(Path(root) / "chains" / f"{check_name(set_id, 'chain set')}.jsonl")


def chain_set_meta(root: str | Path, set_id: str) -> dict:
    return json.loads(read_text(Path(root) / "chains" / f"{check_name(set_id, 'chain set')}.meta.json"))


def save_signal_report(root: str | Path, report: dict) -> str:
    """Keep a signal report (rcsd_core.design.signals) as signals/<id>.json; returns its id."""
    report_id = utc_stamp() + "-" + secrets.token_hex(3)
    atomic_write_text(Path(root) / "signals" / f"{report_id}.json", json.dumps(report, indent=1))
    return report_id


def save_ablation_report(root: str | Path, report: dict) -> str:
    """Keep an ablation report (rcsd_core.design.ablation) as ablations/<id>.json; returns its id."""
    report_id = utc_stamp() + "-" + secrets.token_hex(3)
    atomic_write_text(Path(root) / "ablations" / f"{report_id}.json", json.dumps(report, indent=1))
    return report_id


def latest_ablation_report(root: str | Path, rubric_name: str, rubric_version: str | None = None) -> dict | None:
    """The newest saved ablation report for a rubric (and version, when given), or None."""
    base = Path(root) / "ablations"
    for path in sorted(base.glob("*.json"), reverse=True) if base.is_dir() else []:
        report = json.loads(read_text(path))
        if report.get("rubric") == rubric_name and rubric_version in (None, report.get("rubric_version")):
            return report
    return None


def latest_signal_report(root: str | Path, rubric_name: str, rubric_version: str | None = None) -> dict | None:
    """The newest saved signal report for a rubric (and version, when given), or None."""
    base = Path(root) / "signals"
    for path in sorted(base.glob("*.json"), reverse=True) if base.is_dir() else []:
        report = json.loads(read_text(path))
        if report.get("rubric") == rubric_name and rubric_version in (None, report.get("rubric_version")):
            return report
    return None


# ---------------------------------------------------------------------------- editor rows

# The rubric editor shows one row per criterion; a check's fields spread over fixed columns.
EDITOR_COLUMNS = ["id", "title", "description", "weight", "check", "pattern", "flags", "terms", "mode",
                  "case_sensitive", "limit", "tolerance", "held_out"]
CHECK_CHOICES = ["none (judge)", *[t for t in CHECK_TYPES if t != "judge"]]


def criteria_rows(rubric: Rubric | None) -> list[dict]:
    """Editor rows for a rubric's criteria (list fields joined with ', ')."""
    rows = []
    for c in rubric.criteria if rubric else []:
        check = c.check.model_dump() if c.check is not None else {}
        rows.append({"id": c.id, "title": c.title, "description": c.description, "weight": float(c.weight),
                     "check": check.get("type") if check.get("type") not in (None, "judge") else "none (judge)",
                     "pattern": check.get("pattern") or "",
                     "flags": ", ".join(check.get("flags") or []),
                     "terms": ", ".join(check.get("terms") or []),
                     "mode": check.get("mode") or "",
                     "case_sensitive": bool(check.get("case_sensitive", False)),
                     "limit": check.get("limit"),
                     "tolerance": check.get("tolerance"),
                     "held_out": c.held_out})
    return rows


def rubric_data_from_rows(name: str, description: str, rows: list[dict],
                          examples: list[dict] | None = None) -> dict:
    """Plain rubric data from editor rows; validation is left to `rubric_errors`."""
    criteria = []
    for row in rows:
        if _untouched(row):
            continue   # an added row the user has not filled in yet
        crit: dict[str, Any] = {"id": _text(row.get("id")), "title": _text(row.get("title")),
                                "description": _text(row.get("description")), "weight": _number(row.get("weight"))}
        kind = _text(row.get("check"))
        if kind and kind != "none (judge)":
            check: dict[str, Any] = {"type": kind}
            if kind in ("regex", "not_regex"):
                check["pattern"] = _text(row.get("pattern"))
                flags = _split(row.get("flags"))
                if flags:
                    check["flags"] = [f.upper() for f in flags]
            elif kind == "answer_match":
                if not _blank(row.get("pattern")):
                    check["pattern"] = _text(row.get("pattern"))
                if not _blank(row.get("tolerance")):
                    check["tolerance"] = _number(row.get("tolerance"))
            elif kind == "contains":
                check["terms"] = _split(row.get("terms"))
                if not _blank(row.get("mode")):
                    check["mode"] = _text(row.get("mode"))
                check["case_sensitive"] = bool(row.get("case_sensitive") or False)
            elif kind in ("max_words", "min_words"):
                limit = _number(row.get("limit"))
                check["limit"] = int(limit) if isinstance(limit, float) and limit.is_integer() else limit
            crit["check"] = check
        if row.get("held_out") in (True,):  # a bool or numpy bool from the editor; NaN (blank) is not
            crit["held_out"] = True
        criteria.append(crit)
    data = {"name": name.strip(), "description": description.strip(), "criteria": criteria}
    examples = [e for e in (examples or []) if not (_blank(e.get("prompt")) and _blank(e.get("answer")))]
    if examples:
        data["examples"] = [{"prompt": _text(e.get("prompt")), "answer": _text(e.get("answer"))} for e in examples]
    return data


def _untouched(row: dict) -> bool:
    """A row with nothing typed into it: every cell blank or at the editor's default. A row with
    anything in it (a pattern, a weight) is validated, so a missing id is reported, never dropped."""
    defaults = {"check": "none (judge)", "case_sensitive": False}
    return all(_blank(v) or (k in defaults and v == defaults[k]) for k, v in row.items())


def row_positions(rows: list[dict]) -> list[int]:
    """The 1-based table positions of the rows rubric_data_from_rows keeps (for row_problems)."""
    return [i for i, row in enumerate(rows, start=1) if not _untouched(row)]


def row_problems(data: dict, positions: list[int] | None = None) -> list[dict]:
    """Validation problems of editor data, each tied to its row: {row, criterion, field, message}.

    `row` is the position in the editor's table (`positions`, from row_positions), or the
    criterion's position when not given.

    Each row is validated on its own (so a message lands beside the right row even when ids are
    missing or repeated), then the whole rubric for the name, duplicates and limits.
    """
    problems = []
    criteria = data.get("criteria") or []
    at = positions or list(range(1, len(criteria) + 1))
    for i, crit in enumerate(criteria):
        # alone, a held-out row would be "every criterion held out": that is the whole rubric's check below
        alone = {k: v for k, v in crit.items() if k != "held_out"} if isinstance(crit, dict) else crit
        single = {"name": data.get("name") or "x", "criteria": [alone]}
        for _, field, message in rubric_errors(single):
            if field.startswith("name"):
                continue
            problems.append({"row": at[i], "criterion": crit.get("id") or "", "field": field, "message": message})
    ids = [c.get("id") for c in criteria]
    for i, cid in enumerate(ids):
        if cid and ids.index(cid) != i:
            problems.append({"row": at[i], "criterion": cid, "field": "id",
                             "message": f"duplicate criterion id (first on row {at[ids.index(cid)]})"})
    if not problems:
        for cid, field, message in rubric_errors(data):
            row = at[ids.index(cid)] if cid in ids else None
            problems.append({"row": row, "criterion": cid or "", "field": field or "rubric", "message": message})
    return problems


def _validated(data: dict, what: str) -> Rubric:
    from rcsd_core.contracts.rubric import rubric_from_data
    return rubric_from_data(data, source=what)


# ---------------------------------------------------------------------------- helpers

def _valid(name: str, kind: str) -> bool:
    try:
        check_name(name, kind)
        return True
    except InputError:
        return False


def _check_size(data: bytes, filename: str, limit: int | None = None) -> None:
    limit = MAX_UPLOAD_BYTES if limit is None else limit
    if len(data) > limit:
        raise InputError(f"upload is {len(data):,} bytes, above the {limit:,}-byte limit", source=filename)
    if not data.strip():
        raise InputError("upload is empty", source=filename)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value.strip())


def _text(value: Any) -> str:
    return "" if _blank(value) else str(value).strip()


def _number(value: Any) -> Any:
    if _blank(value):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return value   # left for validation to name


def _split(value: Any) -> list[str]:
    if _blank(value):
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value).split(",") if part.strip()]

