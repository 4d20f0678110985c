"""Rubrics: the criteria of a strong answer, as validated data.

A rubric is a YAML file (DESIGN §2):

    name: grade-school-math
    description: Solve short arithmetic word problems.
    criteria:
      - id: final-answer-line
        title: Final answer line
        description: 'The last line is "Answer: <number>".'
        weight: 5
        check: {type: regex, pattern: '(?m)^Answer:\\s*-?[\\d,.]+\\s*\\Z'}
    examples:
      - {prompt: ..., answer: ...}

`load_rubric(path)` refuses bad files with an `InputError` naming the file, the YAML line, the
criterion id and the field. Nothing in a rubric is executed: patterns are compiled by the
`regex` engine (and run under a time limit in `checks`), everything else is plain data.
A rubric's version is a hash of its canonical content, so two files that say the same thing
have the same version.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import regex
import yaml
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, ValidationError,
                      field_validator, model_validator)

from rcsd_core.errors import InputError
from rcsd_core.files import atomic_write_text, read_text

MAX_CRITERIA = 50
MAX_RUBRIC_BYTES = 2**20  # a rubric is a page of text; anything near a megabyte is a mistake
DEFAULT_ANSWER_PATTERN = r"(?im)^\s*answer\s*:\s*(.+?)\s*$"
REGEX_FLAGS = {"IGNORECASE": regex.IGNORECASE, "MULTILINE": regex.MULTILINE, "DOTALL": regex.DOTALL}
RegexFlag = Literal["IGNORECASE", "MULTILINE", "DOTALL"]


def compile_pattern(pattern: str, flags: list[str] | tuple[str, ...] = ()) -> regex.Pattern:
    """Compile a user pattern (cached by the regex engine); raises regex.error when invalid."""
    value = 0
    for name in flags:
        value |= REGEX_FLAGS[name]
    return regex.compile(pattern, value)


def _plain_number(value: Any) -> Any:
    # YAML turns `yes` into True and `"5"` stays a string; neither is a number a user meant to give
    if isinstance(value, (bool, str)):
        raise ValueError(f"must be a number, not {value!r}")
    return value


Number = Annotated[float, BeforeValidator(_plain_number)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------- checks

class RegexCheck(_Strict):
    """Passes when the pattern matches somewhere in the chain."""
    type: Literal["regex"]
    pattern: str = Field(min_length=1)
    flags: list[RegexFlag] = Field(default_factory=list)

    @model_validator(mode="after")
    def _compiles(self):
        try:
            compile_pattern(self.pattern, self.flags)
        except regex.error as exc:
            raise ValueError(f"invalid regular expression {self.pattern!r}: {exc}") from None
        return self


class NotRegexCheck(RegexCheck):
    """Passes when the pattern matches nowhere in the chain."""
    type: Literal["not_regex"]


class ContainsCheck(_Strict):
    """Passes when any (or all) of the terms occur as substrings."""
    type: Literal["contains"]
    terms: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    mode: Literal["any", "all"] = "any"
    case_sensitive: StrictBool = False


class MaxWordsCheck(_Strict):
    """Passes when the whitespace-split word count is at most `limit`."""
    type: Literal["max_words"]
    limit: StrictInt = Field(ge=0)


class MinWordsCheck(_Strict):
    """Passes when the whitespace-split word count is at least `limit`."""
    type: Literal["min_words"]
    limit: StrictInt = Field(ge=0)


class AnswerMatchCheck(_Strict):
    """Passes when the last `pattern` match's group equals the task's reference."""
    type: Literal["answer_match"]
    pattern: str = DEFAULT_ANSWER_PATTERN
    tolerance: Number = Field(default=1e-6, ge=0)

    @model_validator(mode="after")
    def _one_group(self):
        try:
            compiled = compile_pattern(self.pattern)
        except regex.error as exc:
            raise ValueError(f"invalid regular expression {self.pattern!r}: {exc}") from None
        if compiled.groups != 1:
            raise ValueError(f"pattern must have exactly one capture group, found {compiled.groups}")
        return self


class JudgeCheck(_Strict):
    """Judged by a model (the same as leaving `check` out)."""
    type: Literal["judge"]


Check = Annotated[
    Union[RegexCheck, NotRegexCheck, ContainsCheck, MaxWordsCheck, MinWordsCheck, AnswerMatchCheck, JudgeCheck],
    Field(discriminator="type"),
]
CHECK_TYPES = ("regex", "not_regex", "contains", "max_words", "min_words", "answer_match", "judge")


# ---------------------------------------------------------------------------- rubric

class Criterion(_Strict):
    """One criterion; a negative weight makes it a pitfall (scores 1.0 when the flaw is present)."""
    id: str = Field(pattern=r"^[a-z0-9-]+$", max_length=64)
    title: str = ""
    description: str = Field(min_length=1)
    weight: Number
    check: Check | None = None

    @field_validator("weight")
    @classmethod
    def _nonzero(cls, w: float) -> float:
        if w == 0 or not math.isfinite(w):
            raise ValueError("weight must be a non-zero finite number")
        return w

    @property
    def is_pitfall(self) -> bool:
        return self.weight < 0

    @property
    def is_judged(self) -> bool:
        """True when a judge model, not a programmatic check, decides this criterion."""
        return self.check is None or self.check.type == "judge"

    @property
    def label(self) -> str:
        return self.title or self.id


class Example(_Strict):
    """A worked example shown to the teacher only."""
    prompt: str = Field(min_length=1)
    answer: str = Field(min_length=1)


class Rubric(_Strict):
    """A named set of weighted criteria with optional worked examples."""
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=80)
    description: str = ""
    criteria: list[Criterion] = Field(min_length=1, max_length=MAX_CRITERIA)
    examples: list[Example] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_ids(self):
        seen: set[str] = set()
        for c in self.criteria:
            if c.id in seen:
                raise ValueError(f"duplicate criterion id {c.id!r}")
            seen.add(c.id)
        return self

    @property
    def version(self) -> str:
        return rubric_version(self)

    def criterion(self, criterion_id: str) -> Criterion:
        for c in self.criteria:
            if c.id == criterion_id:
                return c
        raise KeyError(criterion_id)


def rubric_version(rubric: Rubric) -> str:
    """Hash of the canonical content: 12 hex digits, equal for equal rubrics whatever the YAML."""
    canonical = json.dumps(rubric.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


# ---------------------------------------------------------------------------- YAML in and out

def load_rubric(path: str | Path) -> Rubric:
    """Load and validate a rubric YAML file; bad input raises InputError (file, line, field)."""
    return parse_rubric(read_text(path, max_bytes=MAX_RUBRIC_BYTES), source=path)


def parse_rubric(text: str, *, source: str | Path = "<rubric>") -> Rubric:
    """Validate rubric YAML text; `source` names it in error messages."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(f"malformed YAML: {problem}", source=source,
                         line=mark.line + 1 if mark else None) from None
    lines = _node_lines(node)
    _refuse_duplicate_keys(node, source)
    return rubric_from_data(data, source=source, lines=lines)


def rubric_from_data(data: Any, *, source: str | Path = "<rubric>",
                     lines: dict[tuple, int] | None = None) -> Rubric:
    """Validate a rubric given as plain data (the studio's editor builds this)."""
    if not isinstance(data, dict):
        raise InputError("a rubric must be a YAML mapping with name, description and criteria", source=source)
    try:
        return Rubric.model_validate(data)
    except ValidationError as exc:
        raise _explain(exc, data, source, lines or {}) from None


def rubric_errors(data: Any) -> list[tuple[str | None, str, str]]:
    """Every problem of a rubric given as data, as (criterion id, field, message) rows for an editor."""
    if not isinstance(data, dict):
        return [(None, "", "a rubric must be a mapping")]
    try:
        Rubric.model_validate(data)
        return []
    except ValidationError as exc:
        return [_locate(err, data) for err in exc.errors()]


def dump_rubric(rubric: Rubric) -> str:
    """Rubric as YAML text, keys in contract order, defaults left out, multi-line text as blocks."""
    data = rubric.model_dump(mode="json", exclude_defaults=True)
    for c, crit in zip(data["criteria"], rubric.criteria):
        c["weight"] = int(crit.weight) if float(crit.weight).is_integer() else crit.weight
        if crit.check is not None:
            c["check"] = {"type": crit.check.type, **{k: v for k, v in c.get("check", {}).items() if k != "type"}}
    return yaml.dump(data, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=100)


def save_rubric(rubric: Rubric, path: str | Path) -> Path:
    """Write the rubric as YAML atomically."""
    return atomic_write_text(path, dump_rubric(rubric))


class _BlockDumper(yaml.SafeDumper):
    pass


def _str_presenter(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_presenter)


# ---------------------------------------------------------------------------- error messages

def _node_lines(node: yaml.Node | None, path: tuple = (), _seen: set[int] | None = None) -> dict[tuple, int]:
    """Map each path in the YAML document (keys and list indexes) to its 1-based line.

    An alias points back at a node already walked; it is not walked again, so a document of
    nested aliases ("billion laughs") costs its size, not its expansion.
    """
    lines: dict[tuple, int] = {}
    seen = set() if _seen is None else _seen
    if node is None or id(node) in seen:
        return lines
    seen.add(id(node))
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = path + (key.value,)
            lines.update(_node_lines(value, sub, seen))
            lines[sub] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.update(_node_lines(item, path + (i,), seen))
    return lines


def _refuse_duplicate_keys(node: yaml.Node | None, source, path: tuple = (), _seen: set[int] | None = None) -> None:
    """PyYAML keeps the last of two equal keys silently; a rubric with `weight` twice is a mistake."""
    seen = set() if _seen is None else _seen
    if node is None or id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: set = set()
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            if name is not None and name in keys:
                raise InputError("duplicate key", source=source, line=key.start_mark.line + 1,
                                 field=_field_label(node, path + (name,)))
            keys.add(name)
            _refuse_duplicate_keys(value, source, path + (name,), seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_duplicate_keys(item, source, path + (i,), seen)


def _field_label(mapping: yaml.MappingNode, path: tuple) -> str:
    """`criterion 'x'.field` inside a criterion (its id read from the node), else the dotted path."""
    if len(path) >= 3 and path[0] == "criteria" and isinstance(path[1], int):
        ids = [v.value for k, v in mapping.value if getattr(k, "value", None) == "id" and isinstance(v, yaml.ScalarNode)] \
            if len(path) == 3 else []
        label = f"criterion {ids[0]!r}" if ids else f"criteria[{path[1]}]"
        return ".".join([label] + [str(p) for p in path[2:]])
    return ".".join(str(p) for p in path)


def _clean_loc(err: dict) -> tuple:
    """The error's path without pydantic's union tag, pointing at the field the message is about."""
    raw = err["loc"]
    # pydantic puts the discriminator value after `check` (criteria.0.check.regex.pattern)
    loc = tuple(p for i, p in enumerate(raw) if not (i > 0 and raw[i - 1] == "check" and p in CHECK_TYPES))
    if loc[-1:] == ("check",):
        if err["type"] == "union_tag_invalid":
            loc += ("type",)
        elif "regular expression" in err["msg"] or "capture group" in err["msg"]:
            loc += ("pattern",)
    return loc


def _locate(err: dict, data: dict) -> tuple[str | None, str, str]:
    loc = list(_clean_loc(err))
    criterion_id = None
    if len(loc) >= 2 and loc[0] == "criteria" and isinstance(loc[1], int):
        crits = data.get("criteria") or []
        if loc[1] < len(crits) and isinstance(crits[loc[1]], dict):
            criterion_id = crits[loc[1]].get("id")
        field = ".".join(str(p) for p in loc[2:])
    else:
        field = ".".join(str(p) for p in loc)
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "union_tag_invalid":
        message = f"unknown check type {err['input'].get('type')!r}; expected one of {', '.join(CHECK_TYPES)}"
    elif err["type"] == "extra_forbidden":
        message = "unknown field"
    return criterion_id, field, message


def _explain(exc: ValidationError, data: dict, source, lines: dict[tuple, int]) -> InputError:
    errors = exc.errors()
    first = errors[0]
    criterion_id, field, message = _locate(first, data)
    loc = _clean_loc(first)
    line = None
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            line = lines[loc[:cut]]
            break
    if loc[:1] == ("criteria",) and len(loc) >= 2:
        label = f"criterion {criterion_id!r}" if criterion_id else f"criteria[{loc[1]}]"
        field = f"{label}{'.' + field if field else ''}"
    duplicate = regex.match(r"duplicate criterion id '(.*)'", message)
    if duplicate and isinstance(data.get("criteria"), list):
        ids = [c.get("id") if isinstance(c, dict) else None for c in data["criteria"]]
        index = [i for i, v in enumerate(ids) if v == duplicate.group(1)][1]
        line = lines.get(("criteria", index, "id"), line)
        field = f"criterion {duplicate.group(1)!r}.id"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return InputError(message, source=source, line=line, field=field or None)
