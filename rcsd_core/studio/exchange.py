"""The studio's imports and exports of outside formats (`rcsd_core.formats`), for the pages.

    name, rubric, n = import_upload(root, data, "healthbench.jsonl", "detect")   # Rubrics page
    data = review_export(store, "argilla")                                        # Review page
    data = run_export(run_dir, "sdft")                                            # Results page

An upload is written to a private temporary folder under its own file name, read by the format's
importer (the same code as `rcsd import`), and only then stored: its tasks as a new task set
(`workspace.import_task_set`, never replacing another set), its shared rubric — the source's, or
the minimal one — as a rubric version paired with that set. Errors name the upload, its line or
row and field. Exports return the file's bytes for a download button.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from rcsd_core.contracts import runs
from rcsd_core.contracts.rubric import rubric_from_data
from rcsd_core.contracts.tasks import load_tasks
from rcsd_core.errors import InputError
from rcsd_core.formats.exports import export_bytes, export_records
from rcsd_core.formats.imports import IMPORT_FORMATS, import_source, sniff_format, tasks_jsonl
from rcsd_core.studio import workspace as ws

UPLOAD_TYPES = ["jsonl", "json", "parquet", "csv"]
EXPORT_CHOICES = {      # label → (format, file suffix, mime)
    "TRL prompt-completion": ("trl-prompt-completion", ".jsonl", "application/jsonl"),
    "TRL conversational": ("trl-conversational", ".jsonl", "application/jsonl"),
    "SDFT (privileged context)": ("sdft", ".jsonl", "application/jsonl"),
    "Argilla records": ("argilla", ".jsonl", "application/jsonl"),
    "Label Studio tasks": ("labelstudio", ".json", "application/json"),
}


def import_upload(root: str | Path, data: bytes, filename: str, fmt: str = "detect") -> tuple[str, str, int]:
    """Import an uploaded file; returns (task set name, rubric name, number of tasks)."""
    ws._check_size(data, filename)
    name = Path(filename).name
    with tempfile.TemporaryDirectory(prefix="rcsd-import-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            chosen = sniff_format(path) if fmt == "detect" else fmt
            if chosen not in IMPORT_FORMATS:
                raise InputError(f"unknown format {chosen!r}", field="format")
            result = import_source(chosen, path)
        except InputError as exc:
            raise InputError(exc.message, source=filename, line=exc.line, row=exc.row, field=exc.field) from None
    stem = Path(name).stem.removesuffix(".tasks")
    task_set = ws.import_task_set(root, tasks_jsonl(result.tasks).encode("utf-8"), f"{stem}.jsonl")
    rubric = result.rubric
    ws.save_rubric_version(root, rubric, note=f"imported with {name} ({chosen})")
    ws.remember_task_set(root, rubric.name, task_set)     # Preview and Train open the pair together
    return task_set, rubric.name, len(result.tasks)


def review_export(store, label: str) -> bytes:
    """Reviewed chains (the Review page's store) in an export format: rejected chains left out of TRL data."""
    fmt, suffix, _ = EXPORT_CHOICES[label]
    if fmt == "sdft":
        raise InputError("SDFT data comes from a run or a task set (Results page), not from reviews", field="format")
    chains = store.reviewed_chains()
    reviews = {c["id"]: c["review"] for c in chains}
    scores = {c["id"]: {"id": c["id"], "scores": c.get("scores") or {}, "total": c.get("total")} for c in chains}
    records = export_records(fmt, [dict(c) for c in chains], scores=scores, reviews=reviews, source="reviews")
    return export_bytes(records, suffix)


def run_export(run_dir: str | Path, label: str) -> bytes:
    """A run's sampled chains (samples.jsonl) with their scores, its frozen tasks and rubric."""
    fmt, suffix, _ = EXPORT_CHOICES[label]
    config = runs.load_run_config(run_dir)
    rubric = rubric_from_data(config.rubric) if isinstance(config.rubric, dict) else None
    tasks = load_tasks(config.tasks)
    chains = []
    for record in runs.read_samples(run_dir):
        chain = dict(record)
        if chain.get("step") is not None:      # a task's sample ids repeat from step to step
            chain["id"] = f"{chain.get('kind', 'train')}-{chain['step']}/{chain['id']}"
        chains.append(chain)
    if not chains and fmt == "sdft":
        chains = [{"id": t.id, "task_id": t.id, "text": ""} for t in tasks if (t.split or "train") == "train"]
    scores = {c["id"]: {"id": c["id"], "scores": c.get("scores") or {}, "total": c.get("total")} for c in chains}
    records = export_records(fmt, chains, tasks=tasks, rubric=rubric, scores=scores, source=runs.SAMPLES_FILE)
    return export_bytes(records, suffix)


def export_file_name(label: str, stem: str) -> tuple[str, str]:
    fmt, suffix, mime = EXPORT_CHOICES[label]
    return f"{stem}-{fmt}{suffix}", mime
