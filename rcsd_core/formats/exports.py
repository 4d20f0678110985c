"""Export chains (with scores and reviews) to the files trainers and annotation tools read.

    records = export_records("sdft", chains, tasks=tasks, rubric=rubric)
    write_export("sdft.parquet", records)              # .jsonl, .parquet (TRL / SDFT) or .json

Formats: `trl-prompt-completion`, `trl-conversational`, `sdft` (`formats.trl`), `argilla`,
`labelstudio` (`formats.review_tools`). Given reviews (the Review page's export, or
`ReviewStore.export_jsonl`: one line per reviewed flag, the latest decision of a chain wins),
rejected chains are left out of the training sets (TRL, SDFT: a task whose every chain was
rejected keeps its row — SDFT samples afresh) and kept, with the decision, in the annotation
exports. Parquet is written with pyarrow; nested columns that vary in shape from row to row
(`criteria`, `examples`, `scores`) are stored as JSON text there, which the importers read back.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from rcsd_core.contracts.rubric import Rubric
from rcsd_core.contracts.tasks import Task
from rcsd_core.errors import InputError
from rcsd_core.files import atomic_write_text, iter_jsonl, write_jsonl
from rcsd_core.formats.ids import text_hash
from rcsd_core.formats.review_tools import argilla_records, labelstudio_tasks
from rcsd_core.formats.trl import sdft_rows, trl_rows

EXPORT_FORMATS = ("trl-prompt-completion", "trl-conversational", "sdft", "argilla", "labelstudio")
TRAINING_FORMATS = ("trl-prompt-completion", "trl-conversational", "sdft")
JSON_TEXT_COLUMNS = ("criteria", "examples", "scores")
SUFFIXES = {fmt: (".jsonl", ".parquet") for fmt in TRAINING_FORMATS} | {
    "argilla": (".jsonl", ".json"), "labelstudio": (".json", ".jsonl")}


def check_export_path(fmt: str, path: str | Path) -> None:
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"unknown format {fmt!r}; expected one of {', '.join(EXPORT_FORMATS)}", field="--format")
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES[fmt]:
        raise InputError(f"{fmt} is written as {' or '.join(SUFFIXES[fmt])}, not {suffix or '(no suffix)'}",
                         source=path, field="--out")
    if Path(path).is_dir():
        raise InputError("is a folder, not a file", source=path, field="--out")


def load_scores(path: str | Path) -> dict[str, dict]:
    scores = {}
    for line, row in iter_jsonl(path):
        if not isinstance(row.get("id"), str) or not isinstance(row.get("scores"), dict):
            raise InputError("each line needs a string 'id' and a 'scores' object", source=path, line=line,
                             field="scores" if isinstance(row.get("id"), str) else "id")
        scores[row["id"]] = row
    return scores


def load_reviews(path: str | Path) -> dict[str, dict]:
    """chain id → its latest review {decision, reviewer, verdicts, note}, from the Review page's export."""
    reviews = {}
    for line, row in iter_jsonl(path):
        chain_id = row.get("chain_id") or row.get("id")
        review = row.get("review")
        if not isinstance(chain_id, str):
            raise InputError("missing or non-string 'chain_id'", source=path, line=line, field="chain_id")
        if not isinstance(review, dict):
            review = {"verdicts": row.get("criterion_scores") or {}}
        if review.get("verdicts") is not None and not isinstance(review["verdicts"], dict):
            raise InputError("must be an object {criterion id: 1.0 | 0.0 | null}", source=path, line=line,
                             field="review.verdicts")
        reviews[chain_id] = review
    return reviews


def chain_tasks(chains: list[dict], tasks: list[Task] | None, *, source: str | Path = "<chains>") -> dict[str, Task]:
    """The task of every chain: from --tasks, or made from the chain's own `prompt` field."""
    by_id = {t.id: t for t in tasks or []}
    out = dict(by_id)
    for chain in chains:
        task_id = chain.get("task_id")
        if task_id in by_id:
            continue
        if isinstance(chain.get("prompt"), str) and chain["prompt"].strip():
            task_id = task_id if isinstance(task_id, str) else chain["id"]
            if task_id in out and out[task_id].prompt != chain["prompt"]:
                # two task sets may both have a task "t1": chains of different prompts stay apart
                task_id = f"{task_id}-{text_hash(chain['prompt'])}"
            chain["task_id"] = task_id
            out.setdefault(task_id, Task(id=task_id, prompt=chain["prompt"], reference=chain.get("reference")))
            continue
        raise InputError(f"chain {chain['id']!r}: its task {task_id!r} is not in the tasks given (--tasks) and "
                         "it has no prompt of its own", source=source, field="task_id")
    return out


def export_records(fmt: str, chains: list[dict], *, tasks: list[Task] | None = None, rubric: Rubric | None = None,
                   scores: dict[str, dict] | None = None, reviews: dict[str, dict] | None = None,
                   source: str | Path = "<chains>") -> list[dict]:
    reviews = reviews or {}
    by_id = chain_tasks(chains, tasks, source=source)
    if fmt in TRAINING_FORMATS:
        kept = [c for c in chains if (reviews.get(c["id"]) or {}).get("decision") != "reject"]
        if fmt == "sdft":
            order = dict.fromkeys(c["task_id"] for c in chains)
            return sdft_rows([by_id[t] for t in order], rubric)
        return trl_rows(fmt.removeprefix("trl-"), kept, by_id, rubric, scores)
    prompts = {t.id: t.prompt for t in by_id.values()}
    if fmt == "argilla":
        return argilla_records(chains, prompts, scores or {}, reviews)
    if fmt == "labelstudio":
        return labelstudio_tasks(chains, prompts, scores or {}, reviews)
    raise InputError(f"unknown format {fmt!r}; expected one of {', '.join(EXPORT_FORMATS)}", field="--format")


def write_export(path: str | Path, records: list[dict]) -> Path:
    """Write records atomically as JSONL, a JSON list, or Parquet (by the suffix)."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return _write_parquet(path, records)
        if suffix == ".json":
            return atomic_write_text(path, json.dumps(records, ensure_ascii=False, indent=1) + "\n")
        return write_jsonl(path, records)
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror or exc}", source=path, field="--out") from None


def export_bytes(records: list[dict], suffix: str) -> bytes:
    """The file's bytes, for a download button: the same content write_export writes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = write_export(Path(tmp) / f"export{suffix}", records)
        return path.read_bytes()


def parquet_ready(records: list[dict]) -> list[dict]:
    return [{k: (json.dumps(v, ensure_ascii=False) if k in JSON_TEXT_COLUMNS and v is not None else v)
             for k, v in r.items()} for r in records]


def _write_parquet(path: Path, records: list[dict[str, Any]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = parquet_ready(records)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    table = pa.Table.from_pylist([{k: r.get(k) for k in columns} for r in rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
