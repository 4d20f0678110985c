"""Chat prompts in, rcsd task prompts out (and back): one rule for every importer and exporter.

A task's prompt is text; sources (HealthBench, TRL's conversational data sets) give a list of
`{"role", "content"}` messages. A conversation of one user message becomes that message; a longer
one (a system message, earlier turns) becomes a transcript — "System: …", "User: …",
"Assistant: …" paragraphs — and the task keeps the original list as `messages`, so the
conversational exporters give the same conversation back.

    prompt, messages = prompt_from_messages(row["prompt"], where, "prompt")
"""

from __future__ import annotations

from typing import Any

from rcsd_core.formats.tables import Where

ROLES = ("system", "developer", "user", "assistant")


def check_messages(value: Any, where: Where, field: str) -> list[dict[str, str]]:
    """A non-empty list of {role, content} with known roles and text content; InputError names the message."""
    if not isinstance(value, list) or not value:
        raise where.error("must be a non-empty list of {role, content} messages", field=field)
    out = []
    for i, message in enumerate(value):
        if not isinstance(message, dict):
            raise where.error("must be a {role, content} object", field=f"{field}[{i}]")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise where.error(f"unknown role {role!r}; expected one of {', '.join(ROLES)}", field=f"{field}[{i}].role")
        if not isinstance(content, str):
            raise where.error("must be text", field=f"{field}[{i}].content")
        out.append({"role": role, "content": content})
    return out


def prompt_from_messages(value: Any, where: Where, field: str) -> tuple[str, list[dict[str, str]] | None]:
    """(prompt text, the conversation to keep or None): a lone user message is its own prompt."""
    messages = check_messages(value, where, field)
    if messages[-1]["role"] == "assistant":
        raise where.error("the prompt's last message is the assistant's; nothing is left to answer", field=field)
    if len(messages) == 1 and messages[0]["role"] == "user":
        if not messages[0]["content"].strip():
            raise where.error("is empty", field=f"{field}[0].content")
        return messages[0]["content"], None
    return transcript(messages), messages


def transcript(messages: list[dict[str, str]]) -> str:
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def task_messages(task) -> list[dict[str, str]]:
    """The conversation a task's prompt came from, or its prompt as one user message."""
    kept = getattr(task, "messages", None) or (task.model_extra or {}).get("messages")
    if kept:
        return [dict(m) for m in kept]
    return [{"role": "user", "content": task.prompt}]
