"""Rows of a source file, each with where it came from, so every error names file, line or row.

    for where, row in read_rows("data.parquet"):     # JSONL, Parquet, CSV or a save_to_disk folder
        raise where.error("must be a string", field="prompt")

- `.jsonl` / `.json` (one object a line): `rcsd_core.files.iter_jsonl`; errors name the line.
- `.parquet`: pyarrow; errors name the row (from 1).
- `.csv`: pandas, every cell read as text (an empty cell is missing); errors name the data row
  (from 1, the header not counted).
- a folder written by `datasets.Dataset.save_to_disk` (or a `DatasetDict`'s): `datasets.load_from_disk`;
  a `DatasetDict`'s splits are read in order and each row gets `split` from its split's name
  (`train`; `test`/`validation`/`eval` → `eval`) unless it has its own.

Reading a table is left to pyarrow / pandas / datasets rather than hand-written: they already
know every Parquet encoding and CSV quoting rule; this module only adds the error locations.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from rcsd_core.errors import InputError
from rcsd_core.files import MAX_INPUT_BYTES, iter_jsonl

KIND_NAMES = {"jsonl": "a JSONL file", "parquet": "a Parquet file", "csv": "a CSV file",
              "dataset": "a save_to_disk folder"}
SPLIT_NAMES = {"train": "train", "test": "eval", "validation": "eval", "valid": "eval", "eval": "eval", "dev": "eval"}


@dataclass(frozen=True)
class Where:
    """A record's place in its source: the file and its line (JSONL) or row (a table)."""
    source: str
    line: int | None = None
    row: int | None = None

    def error(self, message: str, *, field: str | None = None) -> InputError:
        return InputError(message, source=self.source, line=self.line, row=self.row, field=field)


def source_kind(path: str | Path) -> str:
    """jsonl | parquet | csv | dataset (a save_to_disk folder), from the path; InputError otherwise."""
    path = Path(path)
    if path.is_dir():
        if any((path / name).exists() for name in ("dataset_info.json", "dataset_dict.json", "state.json")):
            return "dataset"
        raise InputError("a folder must be one written by datasets' save_to_disk (no dataset_info.json, "
                         "dataset_dict.json or state.json in it)", source=path)
    if not path.is_file():
        raise InputError("file not found", source=path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".tsv"):
        return "csv"
    raise InputError(f"unknown file type {suffix or '(none)'!r}; expected .jsonl, .parquet, .csv or a "
                     "save_to_disk folder", source=path)


def read_rows(path: str | Path, *, kinds: tuple[str, ...] = ("jsonl", "parquet", "csv", "dataset")
              ) -> Iterator[tuple[Where, dict[str, Any]]]:
    """(where, row) for every record of a source, in order; a kind outside `kinds` is refused."""
    kind = source_kind(path)
    if kind not in kinds:
        names = [KIND_NAMES[k] for k in kinds]
        expected = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
        raise InputError(f"this format is read from {expected}, not from {KIND_NAMES[kind]}", source=path)
    if kind == "jsonl":
        for line, obj in iter_jsonl(path):
            yield Where(str(path), line=line), obj
    elif kind == "parquet":
        yield from _parquet_rows(Path(path))
    elif kind == "csv":
        yield from _csv_rows(Path(path))
    else:
        yield from _dataset_rows(Path(path))


def _check_size(path: Path) -> None:
    size = path.stat().st_size
    if size > MAX_INPUT_BYTES:
        raise InputError(f"file is {size:,} bytes, above the {MAX_INPUT_BYTES:,}-byte limit", source=path)


def _parquet_rows(path: Path) -> Iterator[tuple[Where, dict]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    _check_size(path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"not a readable Parquet file ({str(exc).splitlines()[0][:200]})", source=path) from None
    for i, row in enumerate(table.to_pylist(), start=1):
        yield Where(str(path), row=i), row


def _csv_rows(path: Path) -> Iterator[tuple[Where, dict]]:
    import pandas as pd

    _check_size(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, sep="\t" if path.suffix.lower() == ".tsv" else ",",
                            encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (bad byte at offset {exc.start})", source=path) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"not a readable CSV file ({str(exc).splitlines()[0][:200]})", source=path) from None
    for i, row in enumerate(frame.to_dict(orient="records"), start=1):
        yield Where(str(path), row=i), {k: (v if v != "" else None) for k, v in row.items()}


def _dataset_rows(path: Path) -> Iterator[tuple[Where, dict]]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:  # datasets raises several types for a damaged folder; all are the user's to fix
        raise InputError(f"not a readable saved data set ({str(exc).splitlines()[0][:200]})", source=path) from None
    if isinstance(loaded, datasets.DatasetDict):
        for name, split in loaded.items():
            for i, row in enumerate(split, start=1):
                if row.get("split") is None and name in SPLIT_NAMES:
                    row = {**row, "split": SPLIT_NAMES[name]}
                yield Where(f"{path}[{name}]", row=i), row
    else:
        for i, row in enumerate(loaded, start=1):
            yield Where(str(path), row=i), row


def json_value(value: Any, where: Where, field: str) -> Any:
    """A nested value that a table may hold as JSON text (a Parquet or CSV cell): parsed, else as is."""
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise where.error(f"invalid JSON ({exc.msg} at column {exc.colno})", field=field) from None
    return value


def text_value(row: dict, key: str, where: Where, *, required: bool = False) -> str | None:
    """A string field: missing/None allowed unless required; a number becomes its text; else InputError."""
    value = row.get(key)
    if value is None or (isinstance(value, str) and not value.strip() and not required):
        if required:
            raise where.error("missing", field=key)
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise where.error(f"must be text, got {type(value).__name__}", field=key)
    text = value if isinstance(value, str) else (str(int(value)) if float(value).is_integer() else str(value))
    if required and not text.strip():
        raise where.error("is empty", field=key)
    return text
