"""Chains: the JSONL records of sampled answers that scoring, review and export read (DESIGN §2).

    {"id": str, "task_id": str, "text": str, "reference": str?, ...}

Producers may add fields (context, sample index, model, rubric version, token count, scores);
readers rely on `id` (unique in a file) and `text`, and on `task_id` to find a task's reference.

    chains = load_chains("chains.jsonl")      # InputError naming the file, line and field
"""

from __future__ import annotations

from pathlib import Path

from rcsd_core.errors import InputError
from rcsd_core.files import iter_jsonl


def load_chains(path: str | Path) -> list[dict]:
    """Chain records with a string `id` (unique) and `text`; a numeric `reference` becomes a string."""
    chains: list[dict] = []
    seen: dict[str, int] = {}
    for line, chain in iter_jsonl(path):
        for key in ("id", "text"):
            if not isinstance(chain.get(key), str):
                raise InputError(f"missing or non-string {key!r}", source=path, line=line, field=key)
        if chain["id"] in seen:
            raise InputError(f"duplicate chain id {chain['id']!r} (first on line {seen[chain['id']]})",
                             source=path, line=line, field="id")
        seen[chain["id"]] = line
        if chain.get("reference") is not None and not isinstance(chain["reference"], str):
            chain["reference"] = str(chain["reference"])
        chains.append(chain)
    return chains
