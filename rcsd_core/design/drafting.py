"""Rubric drafting (the paper's stage 1): a model drafts criteria, a person edits them.

The loaded model is shown a task description, a few prompts and their reference answers
(`contexts.draft_messages`) and asked for a YAML list of criteria. Its reply is parsed
robustly — code fences stripped; YAML, then JSON, then "- Title: description" lines — and
each criterion is slugified, given a default weight, deduplicated against near-duplicates
(normalised text similarity, difflib) and validated with `rubric.rubric_from_data`. Output that
yields no valid rubric gives `rubric=None` with the raw reply and a message saying why: the
studio shows it for a person to fix instead of hiding it.

    result = draft_rubric(model, tokenizer, description="Solve arithmetic word problems.",
                          prompts=[t.prompt for t in tasks[:3]], references=[t.reference for t in tasks[:3]],
                          name="arithmetic-draft")
    result.rubric, result.errors, result.dropped, result.raw

The embedded SmolLM2-135M drafts poorly (it echoes the instructions, repeats itself, and
rarely produces usable YAML); draft with a larger model when you can, and always edit the draft.
`parse_draft` is the pure part and needs no model.
"""

from __future__ import annotations

import difflib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from rcsd_core.contracts.messages import encode_messages
from rcsd_core.modeling.contexts import contrastive_messages, draft_messages
from rcsd_core.errors import InputError
from rcsd_core.files import parse_yaml
from rcsd_core.contracts.rubric import MAX_CRITERIA, Criterion, Rubric, rubric_from_data

EMBEDDED_WARNING = ("Note: the embedded SmolLM2-135M model drafts poorly (it often echoes the instructions or "
                    "returns unusable text). Load a larger model to draft, and edit every draft before use.")
DEFAULT_WEIGHT = 1.0
DEFAULT_PITFALL_WEIGHT = -1.0
SIMILARITY_THRESHOLD = 0.85  # normalised title+description ratio above which two criteria are one

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
_LINE_ITEM = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+(?:\*\*)?(?P<title>[^:\n]{2,80}?)(?:\*\*)?"
                        r"\s*[:–—]\s*(?P<desc>\S.*)$")
_FIELDS = {"id", "title", "name", "criterion", "description", "desc", "details", "weight", "pitfall", "check"}
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+(.*)$")
_FIELD_LINE = re.compile(r"^(?:\*\*)?([A-Za-z_ ]{1,20}?)(?:\*\*)?\s*:\s*(.*)$")
_PITFALL_WORDS = re.compile(r"^\s*(?:pitfall|avoid|penalty|flaw|don't|do not)\b", re.IGNORECASE)


@dataclass
class DraftResult:
    """A drafted rubric (None when nothing usable came out), the raw reply, errors, dropped criteria."""
    rubric: Rubric | None
    raw: str
    errors: list[str] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)


# ---------------------------------------------------------------------------- parsing (pure)


def strip_fences(text: str) -> str:
    """The content of the first fenced code block (a yaml/json one preferred), else the text."""
    blocks = _FENCE.findall(text)
    if not blocks:
        return text.strip()
    for lang, body in blocks:
        if lang.lower() in ("yaml", "yml", "json"):
            return body.strip()
    return blocks[0][1].strip()


def extract_items(text: str) -> tuple[list[Any], str | None]:
    """Criterion-like items from a reply and which parser found them (yaml, json, lines) or None."""
    body = strip_fences(text)
    for name, loader in (("yaml", _load_yaml), ("json", _load_json)):
        items = _as_items(loader(body))
        if items:
            return items, name
    json_span = _first_json_span(body)
    if json_span:
        items = _as_items(_load_json(json_span))
        if items:
            return items, "json"
    items = _loose_items(body)
    return (items, "lines") if items else ([], None)


def _loose_items(body: str) -> list[dict]:
    """Criteria from YAML-like text that YAML refuses (small models write `description: a "b: c" d`
    unquoted) and from plain bullets: "- key: value" fields, or "- Title: description" lines."""
    items: list[dict] = []
    current: dict | None = None
    for line in body.splitlines():
        bullet = _BULLET.match(line)
        content = bullet.group(1) if bullet else line.strip()
        if bullet:
            current = {}
            items.append(current)
        if current is None or not content:
            continue
        field_match = _FIELD_LINE.match(content)
        if field_match and field_match.group(1).strip().lower() in _FIELDS:
            current[field_match.group(1).strip().lower()] = _unquote(field_match.group(2))
        elif bullet and (m := _LINE_ITEM.match(line)):
            current.update(title=m.group("title").strip(), description=m.group("desc").strip())
        elif bullet and len(re.findall(r"[A-Za-z]{2,}", content)) >= 3:  # a plain sentence bullet
            current["description"] = content
        elif "description" in current:  # a continuation line
            current["description"] = f"{current['description']} {content}"
    return [i for i in items if i.get("title") or i.get("description")]


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def slugify(text: str, *, max_length: int = 48) -> str:
    """A criterion id from free text: ascii, lowercase, [a-z0-9-]."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:max_length].strip("-") or "criterion"


def normalised(text: str) -> str:
    """Lowercase words only: the text two criteria are compared on."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def similarity(a: str, b: str) -> float:
    """difflib ratio of the normalised texts, in [0, 1]."""
    return difflib.SequenceMatcher(None, normalised(a), normalised(b)).ratio()


def normalise_item(item: Any) -> tuple[dict | None, str | None]:
    """One parsed item as criterion data (id, title, description, weight[, check]), or a reason to drop it."""
    if isinstance(item, str):
        m = re.match(r"^\s*(?P<title>[^:\n]{2,80}?)\s*:\s*(?P<desc>\S.*)$", item)
        item = {"title": m.group("title"), "description": m.group("desc")} if m else {"description": item}
    if not isinstance(item, dict):
        return None, f"not a criterion (a {type(item).__name__})"
    if len(item) == 1 and str(next(iter(item))).lower() not in _FIELDS:
        # "- Final answer: The answer ends with ..." parses as {"Final answer": "The answer ..."}
        (key, value), = item.items()
        item = {"title": str(key), **value} if isinstance(value, dict) else {"title": str(key), "description": value}
    lowered = {str(k).lower(): v for k, v in item.items()}
    title = _text(lowered.get("title") or lowered.get("name") or lowered.get("criterion") or "")
    description = _text(lowered.get("description") or lowered.get("desc") or lowered.get("details") or "")
    if not description and not title:
        return None, "no title or description"
    description = description or title
    title = title or _short_title(description)
    weight = _weight(lowered.get("weight"))
    pitfall = lowered.get("pitfall") is True or bool(_PITFALL_WORDS.match(title))
    if weight is None:
        weight = DEFAULT_PITFALL_WEIGHT if pitfall else DEFAULT_WEIGHT
    elif pitfall and weight > 0:
        weight = -weight
    data = {"id": slugify(_text(lowered.get("id") or "") or title), "title": title[:120], "description": description,
            "weight": weight}
    if isinstance(lowered.get("check"), dict):
        data["check"] = lowered["check"]
    return data, None


def parse_draft(text: str, name: str, description: str = "") -> DraftResult:
    """Parse a model's drafted criteria into a validated Rubric; never raises on model output."""
    raw = text if isinstance(text, str) else str(text)
    errors: list[str] = []
    dropped: list[dict[str, Any]] = []
    items, parser = extract_items(raw)
    if parser is None:
        return DraftResult(None, raw, ["no criteria found: the reply is neither a YAML/JSON list of criteria nor "
                                       "'- Title: description' lines"], [])
    kept: list[dict] = []
    for item in items:
        data, reason = normalise_item(item)
        if data is None:
            dropped.append({"item": item, "reason": reason})
            continue
        data, problem = _validate_criterion(data)
        if data is None:
            dropped.append({"item": item, "reason": problem})
            continue
        if problem:
            errors.append(problem)
        twin = next((k for k in kept if similarity(_compare_text(k), _compare_text(data)) >= SIMILARITY_THRESHOLD),
                    None)
        if twin is not None:
            dropped.append({"item": item, "title": data["title"],
                            "reason": f"near-duplicate of {twin['id']!r}"})
            continue
        data["id"] = _unique_id(data["id"], {k["id"] for k in kept})
        kept.append(data)
    if len(kept) > MAX_CRITERIA:
        for extra in kept[MAX_CRITERIA:]:
            dropped.append({"item": extra, "title": extra["title"],
                            "reason": f"over the {MAX_CRITERIA}-criterion limit"})
        kept = kept[:MAX_CRITERIA]
    if not kept:
        errors.append(f"the reply parsed as {parser} but held no usable criterion")
        return DraftResult(None, raw, errors, dropped)
    try:
        rubric = rubric_from_data({"name": slugify(name, max_length=80), "description": description.strip(),
                                   "criteria": kept}, source="draft")
    except InputError as exc:
        return DraftResult(None, raw, errors + [f"the draft is not a valid rubric: {exc}"], dropped)
    return DraftResult(rubric, raw, errors, dropped)


def _validate_criterion(data: dict) -> tuple[dict | None, str | None]:
    """Validate one criterion; a bad `check` is dropped (the criterion becomes judged) with a note."""
    try:
        Criterion.model_validate(data)
        return data, None
    except ValidationError as exc:
        if "check" in data:
            without = {k: v for k, v in data.items() if k != "check"}
            try:
                Criterion.model_validate(without)
                return without, f"criterion {data['id']!r}: invalid check dropped, it will be judged by a model"
            except ValidationError:
                pass
        return None, f"invalid criterion: {exc.errors()[0]['msg']}"


def _compare_text(data: dict) -> str:
    return f"{data['title']} {data['description']}"


def _unique_id(base: str, taken: set[str]) -> str:
    if base not in taken:
        return base
    n = 2
    while f"{base[:60]}-{n}" in taken:
        n += 1
    return f"{base[:60]}-{n}"


def _weight(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, (int, float)) and value == value and value not in (float("inf"), float("-inf")) and value:
        return float(value)
    return None


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ("" if value is None else str(value).strip())


def _short_title(description: str) -> str:
    words = description.split()
    return " ".join(words[:6]) + ("…" if len(words) > 6 else "")


def _load_yaml(text: str) -> Any:
    # a model's reply is untrusted text like any upload: no aliases, bounded size
    try:
        return parse_yaml(text, source="model draft")
    except InputError:
        return None


def _load_json(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return None


def _first_json_span(text: str) -> str | None:
    """The text from the first '[' to the last ']' (a JSON list inside prose)."""
    start, end = text.find("["), text.rfind("]")
    return text[start:end + 1] if 0 <= start < end else None


def _as_items(data: Any) -> list[Any]:
    """A list of criterion-like items from parsed data (a list, or a mapping holding `criteria`)."""
    if isinstance(data, dict):
        data = data.get("criteria")
    if not isinstance(data, list):
        return []
    usable = [x for x in data if isinstance(x, dict) or (isinstance(x, str) and ":" in x)]
    return data if usable else []


# ---------------------------------------------------------------------------- drafting with a model


def draft_rubric(model, tokenizer, *, description: str, prompts: list[str], references: list[str | None],
                 name: str, max_new_tokens: int = 400, seed: int = 0, temperature: float = 0.0) -> DraftResult:
    """Draft a rubric with a loaded model; greedy by default. The embedded 135M model drafts poorly."""
    from rcsd_core.modeling.generation import sample_chains

    if not description.strip():
        raise InputError("a task description is needed to draft a rubric", field="description")
    references = list(references) + [None] * (len(prompts) - len(references))
    ids = encode_messages(tokenizer, draft_messages(description, list(prompts), references))
    samples, _ = sample_chains(model, tokenizer, [ids], n=1, max_new_tokens=max_new_tokens, temperature=temperature,
                               seed=seed)
    result = parse_draft(samples[0].text, name, description)
    if not samples[0].finished:
        result.errors.append(f"the reply was cut at {max_new_tokens} tokens; the last criterion may be incomplete")
    return result


# ---------------------------------------------------------------------------- contrastive drafting


def new_criteria(result: DraftResult, existing: Rubric) -> list[dict]:
    """The drafted criteria that are not near-duplicates of the rubric's own (ids made unique
    against it), as editable rows {keep, id, title, description, weight}; the rest go to
    `result.dropped` with the reason."""
    rows: list[dict] = []
    if result.rubric is None:
        return rows
    taken = {c.id for c in existing.criteria}
    own = [(c.id, _compare_text({"title": c.title, "description": c.description})) for c in existing.criteria]
    for c in result.rubric.criteria:
        data = {"title": c.title, "description": c.description}
        twin = next((cid for cid, text in own if similarity(text, _compare_text(data)) >= SIMILARITY_THRESHOLD), None)
        if twin is not None:
            result.dropped.append({"item": data, "title": c.title, "reason": f"near-duplicate of the rubric's {twin!r}"})
            continue
        cid = _unique_id(c.id, taken)
        taken.add(cid)
        rows.append({"keep": True, "id": cid, "title": c.title, "description": c.description, "weight": c.weight})
    return rows


def draft_contrastive(model, tokenizer, *, rubric: Rubric, accepted: list[tuple[str, str]],
                      rejected: list[tuple[str, str]], max_new_tokens: int = 300, seed: int = 0,
                      temperature: float = 0.0) -> tuple[DraftResult, list[dict]]:
    """Ask the model for criteria separating accepted from rejected chains ((prompt, text) pairs);
    returns the parsed draft and its new criteria as rows a person keeps, edits or drops."""
    from rcsd_core.modeling.generation import sample_chains

    if not accepted or not rejected:
        raise InputError("contrastive drafting needs at least one accepted and one rejected chain", field="chains")
    messages = contrastive_messages(rubric.description, accepted, rejected, [c.label for c in rubric.criteria])
    samples, _ = sample_chains(model, tokenizer, [encode_messages(tokenizer, messages)], n=1,
                               max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    result = parse_draft(samples[0].text, rubric.name, rubric.description)
    if not samples[0].finished:
        result.errors.append(f"the reply was cut at {max_new_tokens} tokens; the last criterion may be incomplete")
    return result, new_criteria(result, rubric)
