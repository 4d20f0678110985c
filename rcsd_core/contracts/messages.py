"""Chat messages: the one form every prompt takes before a tokenizer sees it.

A conversation is a list of `{"role": "system"|"user"|"assistant", "content": str}` — the
conversational form of chat templates and of TRL's datasets. `encode_messages` turns one into
token ids with the assistant turn opened, ready to sample or score. The builders of each
context live where their readers are: student and teacher in `modeling.contexts`, the judge's
question in `scoring.judges`.

    ids = encode_messages(tokenizer, [{"role": "user", "content": "2 + 2?"}])
"""

from __future__ import annotations

Messages = list[dict[str, str]]


def encode_messages(tokenizer, messages: Messages) -> list[int]:
    """Token ids of a conversation with the assistant turn opened (ready to sample or score)."""
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):
        ids = ids["input_ids"]
    return list(ids)
