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
have the same version, and `dump_rubric` writes text that loads back to the same version.

Untrusted rubrics are bounded before they cost anything: the YAML is capped at MAX_RUBRIC_BYTES
(the one limit for uploads, saves and loads) and parsed without aliases (`files.parse_yaml`);
a pattern is capped at MAX_PATTERN_CHARS and its counted repeats at MAX_PATTERN_EXPANSION
unrolled items before the engine compiles it (`check_pattern`), since `((a{100}){100}){100}`
would otherwise take gigabytes to compile on every keystroke of the editor.
"""

from __future__ import annotations

import functools
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
from rcsd_core.files import atomic_write_text, dump_yaml, parse_yaml_document, read_text

MAX_CRITERIA = 50
MAX_RUBRIC_BYTES = 2**20  # a rubric is a page of text; anything near a megabyte is a mistake. One limit for
                          # uploads, saved versions and loads, so whatever is accepted can be read back.
MAX_WEIGHT = 1e6          # |weight|: totals of 50 criteria stay far from overflow
MAX_PATTERN_CHARS = 1000
MAX_PATTERN_EXPANSION = 10_000   # items the engine unrolls ({m,n} copies its atom m times; ~300 bytes each)
MAX_PATTERN_REPEAT = 1_000_000   # product of nested repeat upper bounds ({m,} counts m)
MAX_PATTERN_DEPTH = 50           # nested groups (the engine's compiler recurses per level)
DEFAULT_ANSWER_PATTERN = r"(?im)^\s*answer\s*:\s*(.+?)\s*$"
REGEX_FLAGS = {"IGNORECASE": regex.IGNORECASE, "MULTILINE": regex.MULTILINE, "DOTALL": regex.DOTALL}
RegexFlag = Literal["IGNORECASE", "MULTILINE", "DOTALL"]


class PatternError(ValueError):
    """A user pattern that is too long or unrolls too much to compile safely."""


def compile_pattern(pattern: str, flags: list[str] | tuple[str, ...] = ()) -> regex.Pattern:
    """Compile a user pattern within bounds (see check_pattern); cached.

    Raises PatternError when the pattern is too large to compile safely, regex.error when invalid.
    """
    return _compile(pattern, tuple(flags))


@functools.lru_cache(maxsize=1024)
def _compile(pattern: str, flags: tuple[str, ...]) -> regex.Pattern:
    check_pattern(pattern)
    value = 0
    for name in flags:
        value |= REGEX_FLAGS[name]
    try:
        return regex.compile(pattern, value)
    except (RecursionError, OverflowError, MemoryError) as exc:
        raise PatternError(f"too complex to compile ({type(exc).__name__})") from None


_COUNTED = regex.compile(r"\{(\d*)(?:(,)(\d*))?\}")
_NAMED_ESCAPE = regex.compile(r"\\[pPN]\{[\w\s:=.&-]*\}")
# an inline flag group that sets or clears verbose mode: (?x), (?ix), (?x:...), (?i-x), (?V1x)
_VERBOSE_FLAG = regex.compile(r"\(\?[\w-]*x[\w-]*[:)]")


def check_pattern(pattern: str) -> None:
    """Refuse, before compiling, a pattern whose compilation is not cheap: PatternError.

    A conservative static reading of the pattern: longer than MAX_PATTERN_CHARS; groups nested
    deeper than MAX_PATTERN_DEPTH; counted repeats that make the engine unroll more than
    MAX_PATTERN_EXPANSION items (it copies an atom m times for {m}, {m,n} and {m,}, so nested
    repeats multiply: `((a{100}){100}){100}` is a million items, ~300 MB); or nested repeats
    whose upper bounds multiply past MAX_PATTERN_REPEAT. The reading may count too much, never
    too little: a character class ends at its first `]`, the earliest end the engine could give
    it (nested V1 sets end later), a `(?#...)` comment at its first `)` as in the engine, and an
    unclosed class is an error the engine raises before compiling anything. Verbose mode (the
    inline `x` flag) is refused: its `#` comments would hide text from this reading.
    """
    if len(pattern) > MAX_PATTERN_CHARS:
        raise PatternError(f"is {len(pattern):,} characters, above the {MAX_PATTERN_CHARS:,}-character limit")
    if _VERBOSE_FLAG.search(pattern):
        raise PatternError("uses verbose mode (the inline x flag), which rubric patterns do not support; "
                           "write the pattern without it")
    # one frame per open group: [size of its closed alternatives, their largest repeat product,
    #                             [(unrolled size, product of repeat upper bounds) per item so far]]
    frames: list[list] = [[0, 0, []]]
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        items = frames[-1][2]
        if ch == "\\":
            named = _NAMED_ESCAPE.match(pattern, i)
            i = named.end() if named else i + 2
            items.append((1, 1))
        elif ch == "[":
            i = _class_end(pattern, i)
            items.append((1, 1))
        elif pattern.startswith("(?#", i):
            end = pattern.find(")", i)
            i = n if end < 0 else end + 1      # the engine's comment ends at the first `)`
        elif ch == "(":
            frames.append([0, 0, []])
            if len(frames) - 1 > MAX_PATTERN_DEPTH:
                raise PatternError(f"nests groups more than {MAX_PATTERN_DEPTH} deep")
            i += 1
        elif ch == ")" and len(frames) > 1:
            size, upper = _close_alternative(frames.pop())
            frames[-1][2].append((max(size, 1), max(upper, 1)))
            i += 1
        elif ch == "|":
            frames[-1][0], frames[-1][1] = _close_alternative(frames[-1])
            frames[-1][2] = []
            i += 1
        elif ch == "{" and (counted := _COUNTED.match(pattern, i)) and (counted.group(1) or counted.group(3)) \
                and items:
            low = int(counted.group(1) or 0)
            high = int(counted.group(3)) if counted.group(3) else low   # {m} and {m,}: m; {m,n}: n
            size, upper = items[-1]
            items[-1] = (size * max(low, 1), upper * max(high, low, 1))
            i = counted.end()
        elif ch in "*+?":
            i += 1   # no copies; a following {m,n} still applies to the item before it (a conservative reading)
        else:
            items.append((1, 1))
            i += 1
        if items and (items[-1][0] > MAX_PATTERN_EXPANSION or items[-1][1] > MAX_PATTERN_REPEAT):
            break
    while len(frames) > 1:   # unbalanced: the engine will refuse it, but count it first
        size, upper = _close_alternative(frames.pop())
        frames[-1][2].append((size, upper))
    size, upper = _close_alternative(frames[0])
    if size > MAX_PATTERN_EXPANSION:
        raise PatternError(f"repeats too much: its counted repeats unroll to more than {MAX_PATTERN_EXPANSION:,} "
                           "items ({m} and {m,n} copy their atom m times, and nested repeats multiply)")
    if upper > MAX_PATTERN_REPEAT:
        raise PatternError(f"repeats too much: its nested {{m,n}} bounds multiply to more than {MAX_PATTERN_REPEAT:,}")


def _close_alternative(frame: list) -> tuple[int, int]:
    """(unrolled size, largest repeat product) of a group: its alternatives' sizes add up."""
    done_size, done_upper, items = frame
    return (done_size + sum(size for size, _ in items),
            max([done_upper, *(upper for _, upper in items)]))


def _class_end(pattern: str, start: int) -> int:
    """Index after the character class opening at `start`: its first unescaped `]` after the first
    character (the earliest end any regex version gives it), or the end of the pattern."""
    i = start + 1
    if i < len(pattern) and pattern[i] == "^":
        i += 1
    if i < len(pattern) and pattern[i] == "]":
        i += 1
    while i < len(pattern):
        if pattern[i] == "\\":
            i += 2
            continue
        if pattern[i] == "]":
            return i + 1
        i += 1
    return len(pattern)


def _pattern_problem(pattern: str, exc: Exception) -> ValueError:
    """The validator message: the pattern is shown unless it is the problem (too long)."""
    shown = f" {pattern!r}" if len(pattern) <= 200 else f" {pattern[:60]!r}…"
    return ValueError(f"invalid regular expression{shown}: {exc}")


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
        except (regex.error, PatternError) as exc:
            raise _pattern_problem(self.pattern, exc) from None
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
    tolerance: Number = Field(default=1e-6, ge=0, le=1, description="relative; at most 1 (100%)")

    @model_validator(mode="after")
    def _one_group(self):
        try:
            compiled = compile_pattern(self.pattern)
        except (regex.error, PatternError) as exc:
            raise _pattern_problem(self.pattern, exc) from None
        if compiled.groups != 1:
            raise ValueError(f"pattern must have exactly one capture group, found {compiled.groups}")
        return self


class EquationsTrueCheck(_Strict):
    """Passes when every "a op b = c" the chain writes with digits is arithmetically true; unscored
    when it writes none. A check of the working itself, which a regex for "shows an equation"
    cannot make (a chain passes that one with a false equation)."""
    type: Literal["equations_true"]


class JudgeCheck(_Strict):
    """Judged by a model (the same as leaving `check` out)."""
    type: Literal["judge"]


Check = Annotated[
    Union[RegexCheck, NotRegexCheck, ContainsCheck, MaxWordsCheck, MinWordsCheck, AnswerMatchCheck,
          EquationsTrueCheck, JudgeCheck],
    Field(discriminator="type"),
]
CHECK_TYPES = ("regex", "not_regex", "contains", "max_words", "min_words", "answer_match", "equations_true", "judge")


# ---------------------------------------------------------------------------- rubric

class Criterion(_Strict):
    """One criterion; a negative weight makes it a pitfall (scores 1.0 when the flaw is present).

    `held_out: true` keeps it away from training: the teacher never reads it, the total leaves it
    out (so rejection-SFT never selects on it), and a round logs it as its own metric and watches it
    (`eval/held_out/<id>`): trained criteria rising while it falls is an alert.
    """
    id: str = Field(pattern=r"^[a-z0-9-]+$", max_length=64)
    title: str = ""
    description: str = Field(min_length=1)
    weight: Number
    check: Check | None = None
    tags: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(default_factory=list, max_length=16)
    held_out: StrictBool = False

    @field_validator("weight")
    @classmethod
    def _nonzero(cls, w: float) -> float:
        if w == 0 or not math.isfinite(w):
            raise ValueError("weight must be a non-zero finite number")
        if abs(w) > MAX_WEIGHT:
            raise ValueError(f"weight must be between -{MAX_WEIGHT:g} and {MAX_WEIGHT:g}")
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
        if any(c.held_out for c in self.criteria) and all(c.held_out or c.is_pitfall for c in self.criteria):
            raise ValueError("every positive-weight criterion is held out: nothing is left to train on or total")
        return self

    @property
    def trained(self) -> list[Criterion]:
        """The criteria the teacher reads and the total counts (all but the held-out ones)."""
        return [c for c in self.criteria if not c.held_out]

    @property
    def held_out_criteria(self) -> list[Criterion]:
        return [c for c in self.criteria if c.held_out]

    @property
    def version(self) -> str:
        return rubric_version(self)

    def criterion(self, criterion_id: str) -> Criterion:
        for c in self.criteria:
            if c.id == criterion_id:
                return c
        raise KeyError(criterion_id)


# criterion fields added after versions were first saved: left out of the hash while at their
# default, so a rubric that does not use them keeps the version it always had
_LATER_FIELDS = {"tags": [], "held_out": False}


def rubric_version(rubric: Rubric) -> str:
    """Hash of the canonical content: 12 hex digits, equal for equal rubrics whatever the YAML."""
    data = rubric.model_dump(mode="json")
    for criterion in data["criteria"]:
        for key, default in _LATER_FIELDS.items():
            if criterion.get(key) == default:
                criterion.pop(key, None)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


# ---------------------------------------------------------------------------- YAML in and out

def load_rubric(path: str | Path) -> Rubric:
    """Load and validate a rubric YAML file; bad input raises InputError (file, line, field)."""
    return parse_rubric(read_text(path, max_bytes=MAX_RUBRIC_BYTES), source=path)


def parse_rubric(text: str, *, source: str | Path = "<rubric>") -> Rubric:
    """Validate rubric YAML text (at most MAX_RUBRIC_BYTES, no aliases); `source` names it in errors."""
    data, node = parse_yaml_document(text, source=source, max_bytes=MAX_RUBRIC_BYTES)
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
    return dump_yaml(data)


def save_rubric(rubric: Rubric, path: str | Path) -> Path:
    """Write the rubric as YAML atomically; refused when the YAML would be too large to load back."""
    return atomic_write_text(path, checked_rubric_yaml(rubric))


def checked_rubric_yaml(rubric: Rubric) -> str:
    """dump_rubric's text, refused (InputError) above MAX_RUBRIC_BYTES: a saved rubric always loads."""
    text = dump_rubric(rubric)
    size = len(text.encode("utf-8"))
    if size > MAX_RUBRIC_BYTES:
        raise InputError(f"rubric is {size:,} bytes as YAML, above the {MAX_RUBRIC_BYTES:,}-byte limit",
                         source=rubric.name)
    return text


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
