"""Names users give things that become file or folder names: one validator for all of them.

    check_name("grade-school-math", "rubric")     # returns the name, or raises InputError
    check_name("20261127-084300-rcsd-1a2b", "run")

Rubric names, task set names, chain set ids and run ids each become one path component in the
workspace or the runs folder. Every create, import, duplicate and lookup goes through
`check_name`, so a NUL (a traceback from the OS), a trailing newline (a folder named `ok\\n`: a
`$` in a regex also matches before a final newline, hence `fullmatch` here), a slash, a leading
dot or 300 characters never get that far. Names are ASCII letters, digits and `-` (rubrics,
matching the rubric contract's `name`), plus `.` and `_` for the others.
"""

from __future__ import annotations

import re
from typing import Literal

from rcsd_core.errors import InputError

NameKind = Literal["rubric", "task set", "chain set", "run"]

# kind -> (pattern, maximum length, what is allowed in words)
NAME_RULES: dict[str, tuple[re.Pattern, int, str]] = {
    "rubric": (re.compile(r"[a-z0-9][a-z0-9-]*"), 80, "lowercase letters, digits and '-'"),
    "task set": (re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*"), 80, "letters, digits, '.', '_' and '-'"),
    "chain set": (re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*"), 120, "letters, digits, '.', '_' and '-'"),
    "run": (re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*"), 120, "letters, digits, '.', '_' and '-'"),
}
FIELDS = {"rubric": "name", "task set": "tasks", "chain set": "chains", "run": "run_id"}
LABELS = {"rubric": "rubric name", "task set": "task set name", "chain set": "chain set id", "run": "run id"}


def check_name(name: object, kind: NameKind, *, field: str | None = None) -> str:
    """`name` when it is a valid `kind` name; otherwise InputError naming the kind and the rule."""
    pattern, limit, allowed = NAME_RULES[kind]
    field = field or FIELDS[kind]
    label = LABELS[kind]
    if not isinstance(name, str) or not name:
        raise InputError(f"a {label} is required", field=field)
    shown = repr(name) if len(name) <= 60 else repr(name[:40]) + f"… ({len(name)} characters)"
    if len(name) > limit:
        raise InputError(f"invalid {label} {shown}: at most {limit} characters", field=field)
    if not pattern.fullmatch(name):
        raise InputError(f"invalid {label} {shown}: use {allowed}, starting with a letter or digit", field=field)
    return name
