"""Stable ids for what a source does not name: criteria (HealthBench, RaR) and unnamed tasks.

An id is derived from the text alone — a slug of its first words and six hex digits of its
SHA-256 — so importing the same file twice, or the same criterion in another file, gives the
same id, and two criteria that share their first words still differ. Exact repeats inside one
rubric get -2, -3, ... in order.

    criterion_ids(["Advises seeing a doctor.", "Gives a dose."])   # ['advises-seeing-a-doctor-1f2e3a', ...]
"""

from __future__ import annotations

import hashlib
import re

SLUG_WORDS = 6
SLUG_CHARS = 40


def slug(text: str, *, max_chars: int = SLUG_CHARS, words: int = SLUG_WORDS) -> str:
    """Lower-case words of `text` joined by '-', only [a-z0-9], at most `max_chars` characters."""
    parts = re.findall(r"[a-z0-9]+", text.lower())[:words]
    out = ""
    for part in parts:
        candidate = f"{out}-{part}" if out else part
        if len(candidate) > max_chars:
            break
        out = candidate
    return out or (parts[0][:max_chars] if parts else "")


def text_hash(text: str, digits: int = 6) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:digits]


def criterion_ids(texts: list[str], *, names: list[str] | None = None) -> list[str]:
    """One id per criterion text, unique within the list, equal for equal texts across files.

    `names` (a short title per criterion) gives the readable part when the source has them; the
    hash is always of the full text.
    """
    ids: list[str] = []
    seen: dict[str, int] = {}
    for i, text in enumerate(texts):
        base = f"{slug(names[i] if names else text) or 'criterion'}-{text_hash(text)}"
        count = seen.get(base, 0) + 1
        seen[base] = count
        ids.append(base if count == 1 else f"{base}-{count}")
    return ids


def task_id_for(prompt: str) -> str:
    """The id of a task whose source has none: 't-' and 12 hex digits of its prompt's hash."""
    return f"t-{text_hash(prompt, 12)}"


def short_title(text: str, limit: int = 80) -> str:
    """A criterion's title from its text: the first sentence, cut at a word within `limit` chars."""
    first = re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]
    if len(first) <= limit:
        return first
    cut = first[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(",;:") + "…"
