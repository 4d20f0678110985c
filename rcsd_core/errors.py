"""One error type for bad user input, so the CLI and the studio can show one clear line.

`InputError` names the file, the line (for JSONL) or the row (for a table: Parquet, CSV, a saved
data set; counted from 1 like lines) and the field that is wrong. Anything raised
as `InputError` is the user's to fix; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad input from a user: a file, a line in it, a field, and what is wrong."""

    def __init__(self, message: str, *, source: str | Path | None = None,
                 line: int | None = None, field: str | None = None, row: int | None = None):
        self.message = message
        self.source = str(source) if source is not None else None
        self.line = line
        self.row = row
        self.field = field
        super().__init__(self.describe())

    def describe(self) -> str:
        where = self.source or ""
        if self.line is not None:
            where += f":{self.line}"
        parts = [p for p in (where, f"row {self.row}" if self.row is not None else None, self.field) if p]
        return ": ".join(parts + [self.message])
