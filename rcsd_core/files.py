"""File helpers every contract shares: strict UTF-8 reads, atomic writes, JSONL in and out.

Saves go to a temporary file in the same folder and are renamed over the target, so a reader
never sees half a file and a crash leaves the old version intact. JSONL readers name the file and
line of a bad record; `read_jsonl(..., tolerate_partial_tail=True)` skips a half-written last line,
which is what a reader tailing a live run's metrics needs.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

from rcsd_core.errors import InputError

MAX_INPUT_BYTES = 50 * 2**20  # uploads and input files above this are refused


def utc_now(timespec: str = "seconds") -> str:
    """The current time in UTC as ISO 8601, the form every record and status file stores."""
    return datetime.now(timezone.utc).isoformat(timespec=timespec)


def utc_stamp() -> str:
    """The current UTC time as a sortable id prefix, e.g. 20261127-084300."""
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")


def strict_json(value: Any) -> Any:
    """A value made strict JSON: NaN/inf (pandas' missing values) become None, numpy scalars Python ones.

    json.dumps writes a bare NaN, which no strict parser reads; results go through this first.
    """
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def read_text(path: str | Path, *, max_bytes: int = MAX_INPUT_BYTES) -> str:
    """Read a UTF-8 text file, refusing missing, oversized or non-UTF-8 files with an InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", source=path)
    size = path.stat().st_size
    if size > max_bytes:
        raise InputError(f"file is {size:,} bytes, above the {max_bytes:,}-byte limit", source=path)
    return decode_utf8(path.read_bytes(), source=path)


def decode_utf8(data: bytes, *, source: str | Path) -> str:
    """Decode bytes as UTF-8 (a BOM is allowed), naming the line of the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"not UTF-8 text (bad byte 0x{data[exc.start]:02x} at offset {exc.start})",
                         source=source, line=line) from None


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write text to path via a temp file and rename; the target is complete or untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> Path:
    """Write records as JSONL atomically."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    return atomic_write_text(path, text)


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one record as a single flushed line (metrics, reviews): never rewrites the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def iter_jsonl(path: str | Path, *, tolerate_partial_tail: bool = False) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line; bad lines raise an InputError.

    With tolerate_partial_tail, a last line without its newline that does not parse is skipped
    (a writer may be in the middle of it).
    """
    path = Path(path)
    text = read_text(path) if not tolerate_partial_tail else _read_tail_tolerant(path)
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            is_tail = number == len(lines) and not text.endswith("\n")
            if tolerate_partial_tail and is_tail:
                return
            raise InputError(f"invalid JSON ({exc.msg} at column {exc.colno})", source=path, line=number) from None
        if not isinstance(obj, dict):
            raise InputError(f"expected a JSON object, got {type(obj).__name__}", source=path, line=number)
        yield number, obj


def read_jsonl(path: str | Path, *, tolerate_partial_tail: bool = False) -> list[dict]:
    """All objects of a JSONL file (see iter_jsonl)."""
    return [obj for _, obj in iter_jsonl(path, tolerate_partial_tail=tolerate_partial_tail)]


def _read_tail_tolerant(path: Path) -> str:
    if not path.exists():
        return ""
    data = path.read_bytes()
    # a writer may be mid-way through a multi-byte character on the last line
    return data.decode("utf-8", errors="replace")
