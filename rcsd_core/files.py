"""File helpers every contract shares: strict UTF-8 reads, atomic writes, JSONL and YAML in and out.

Saves go to a temporary file in the same folder and are renamed over the target, so a reader
never sees half a file and a crash leaves the old version intact. JSONL readers name the file and
line of a bad record; `read_jsonl(..., tolerate_partial_tail=True)` skips a half-written last line,
which is what a reader tailing a live run's metrics needs.

Every YAML document a user can hand us (rubrics, round configs, uploads, run configs read back,
a model's drafted rubric) goes through `parse_yaml` / `parse_yaml_document`: the size is capped
before parsing, and anchors/aliases are refused, so a document costs its own size, never its
expansion (a 200 KB "billion laughs" rubric is refused in milliseconds). Nesting depth and node
count are bounded too. `dump_yaml` writes YAML that reads back to the same values, strings with
NEL (U+0085), U+2028/U+2029, carriage returns or trailing spaces included.

    data = parse_yaml(text, source="round.yaml", max_bytes=2**20)   # InputError on anything else
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml

from rcsd_core.errors import InputError

MAX_INPUT_BYTES = 50 * 2**20  # uploads and input files above this are refused
MAX_YAML_BYTES = 8 * 2**20    # default cap of a YAML document (a frozen run config with its rubric inlined)
MAX_YAML_DEPTH = 32           # nested mappings/sequences; a rubric needs 5, a frozen config 6
MAX_YAML_NODES = 200_000      # scalars + collections; a 50-criterion rubric has a few thousand

# libyaml's parser when present (fast, and never builds Python frames per nesting level)
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def utc_now(timespec: str = "seconds") -> str:
    """The current time in UTC as ISO 8601, the form every record and status file stores."""
    return datetime.now(timezone.utc).isoformat(timespec=timespec)


def utc_stamp() -> str:
    """The current UTC time as a sortable id prefix, to the millisecond, e.g. 20261127-084300-123.

    To the millisecond because ids are ordered by it: two signal reports (or chain sets) saved in
    the same second used to sort by their random suffix, so the newest could be listed second."""
    now = datetime.now(timezone.utc)
    return now.strftime("%Y%m%d-%H%M%S-") + f"{now.microsecond // 1000:03d}"


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
        except (ValueError, RecursionError) as exc:
            # an integer of thousands of digits, or arrays nested thousands deep
            problem = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
            raise InputError(f"unusable JSON value: {problem}", source=path, line=number) from None
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


# ---------------------------------------------------------------------------- YAML


def parse_yaml(text: str, *, source: str | Path = "<yaml>", max_bytes: int = MAX_YAML_BYTES) -> Any:
    """Parse untrusted YAML text into plain data (see parse_yaml_document); InputError otherwise."""
    return parse_yaml_document(text, source=source, max_bytes=max_bytes)[0]


def read_yaml(path: str | Path, *, max_bytes: int = MAX_YAML_BYTES) -> Any:
    """Read and parse a YAML file with the same bounds (size checked before reading)."""
    return parse_yaml(read_text(path, max_bytes=max_bytes), source=path, max_bytes=max_bytes)


def parse_yaml_document(text: str, *, source: str | Path = "<yaml>",
                        max_bytes: int = MAX_YAML_BYTES) -> tuple[Any, yaml.Node | None]:
    """(data, node) of one YAML document, safe for untrusted text; the node gives line numbers.

    Refused with an InputError naming the source and line: more than `max_bytes` of UTF-8, any
    anchor or alias, nesting deeper than MAX_YAML_DEPTH, more than MAX_YAML_NODES nodes, several
    documents, non-safe tags (`!!python/...`), malformed YAML and values Python cannot hold
    (integers of thousands of digits). Only the safe loader's plain types come back.
    """
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise InputError("not valid Unicode text (a lone surrogate)", source=source) from None
    if size > max_bytes:
        raise InputError(f"YAML is {size:,} bytes, above the {max_bytes:,}-byte limit", source=source)
    loader = None
    try:
        _check_yaml_events(text, source)
        loader = _YAML_LOADER(text)
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except InputError:
        raise
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"malformed YAML: {problem}", source=source,
                         line=mark.line + 1 if mark else None) from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        # e.g. an integer beyond Python's 4300-digit conversion limit, an unhashable key
        raise InputError(f"unusable YAML value: {str(exc)[:200]}", source=source) from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, node


def _check_yaml_events(text: str, source: str | Path) -> None:
    """One streaming pass over the parser's events: no anchors/aliases, bounded depth and size."""
    depth = nodes = 0
    for event in yaml.parse(text, Loader=_YAML_LOADER):
        line = event.start_mark.line + 1 if event.start_mark else None
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise InputError("YAML anchors and aliases (&name, *name) are not allowed; write the value out",
                             source=source, line=line)
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise InputError(f"YAML is nested more than {MAX_YAML_DEPTH} levels deep", source=source, line=line)
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
        if isinstance(event, yaml.NodeEvent):
            nodes += 1
            if nodes > MAX_YAML_NODES:
                raise InputError(f"YAML has more than {MAX_YAML_NODES:,} values", source=source, line=line)


class YAMLDumper(yaml.SafeDumper):
    """A safe dumper whose strings read back exactly: multi-line text as blocks where that is
    lossless, double quotes (with escapes) where a block or plain scalar would be normalised.
    Never writes anchors or aliases (parse_yaml refuses them), even for a value used twice."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


# YAML readers turn these into "\n" (or fold them) inside plain, single-quoted and block scalars;
# only a double-quoted scalar's escapes (\r, \N, \L, \P) keep them.
_NORMALISED = frozenset("\r\x85\u2028\u2029")


def _represent_str(dumper: yaml.SafeDumper, value: str):
    style = None
    if any(ch in _NORMALISED for ch in value):
        style = '"'
    elif "\n" in value:
        style = "|"   # the emitter falls back to quotes itself where a block cannot hold the text
                      # (trailing spaces, leading blank lines, control characters)
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


YAMLDumper.add_representer(str, _represent_str)


def dump_yaml(data: Any, *, sort_keys: bool = False, width: int = 100) -> str:
    """YAML text that `parse_yaml` reads back to equal data (keys in the given order by default)."""
    return yaml.dump(data, Dumper=YAMLDumper, sort_keys=sort_keys, allow_unicode=True, width=width)
