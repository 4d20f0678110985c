"""Batching: the one place token sequences are padded into tensors.

Two layouts, both from lists of token ids:
- `left_pad(prompts)` — prompts padded on the left so generation appends on the right;
- `pack_batch(prompts, completions)` — prompts left-padded to a common end, completions
  right-padded after it, so completion position i sits at the same column in every row.

Every forward over [prompt + completion] (student, teacher, guidance maps, held-out divergence)
uses `pack_batch`, so student and teacher results line up position by position whatever their
prompt lengths.

    batch = pack_batch([[1, 2, 3], [4]], [[7, 8], [9]], pad_id=0)
    batch.ids.shape, batch.tokens.shape       # (2, 3 + 2 - 1), (2, 2)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Batch:
    """Prompts left-padded to a common end, completions right-padded after it.

    ids/attention (B, P + C - 1): the last completion token is never an input. The hidden state
    at column P - 1 + i predicts completion token i, so hidden[:, P-1 : P-1+C] lines up with
    tokens (B, C) and mask (B, C) for student and teacher alike, whatever their prompt lengths.
    """
    ids: torch.Tensor
    attention: torch.Tensor
    start: int              # P - 1
    tokens: torch.Tensor    # (B, C) completion ids (pad where mask is 0)
    mask: torch.Tensor      # (B, C) bool, True on completion tokens

    def to(self, device) -> "Batch":
        return Batch(self.ids.to(device), self.attention.to(device), self.start, self.tokens.to(device),
                     self.mask.to(device))

    @property
    def positions(self) -> torch.Tensor:
        """Position ids that count real tokens only, as generate() counted them while sampling."""
        return (self.attention.cumsum(-1) - 1).clamp(min=0)


def left_pad(sequences: list[list[int]], pad_id: int, device=None, *,
             width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) ids and attention mask, padded on the left so generation appends on the right."""
    width = max(len(s) for s in sequences) if width is None else width
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, seq in enumerate(sequences):
        if seq:
            ids[i, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
            mask[i, width - len(seq):] = 1
    return (ids, mask) if device is None else (ids.to(device), mask.to(device))


def pack_batch(prompts: list[list[int]], completions: list[list[int]], pad_id: int) -> Batch:
    """The [prompt + completion] layout of a micro-batch (see Batch)."""
    P = max(len(p) for p in prompts)
    C = max(1, max(len(c) for c in completions))
    head, head_mask = left_pad(prompts, pad_id, width=P)
    tail = torch.full((len(prompts), C), pad_id, dtype=torch.long)
    tail_mask = torch.zeros((len(prompts), C), dtype=torch.long)
    for i, c in enumerate(completions):
        if c:
            tail[i, :len(c)] = torch.tensor(c, dtype=torch.long)
            tail_mask[i, :len(c)] = 1
    ids = torch.cat([head, tail], dim=1)
    attention = torch.cat([head_mask, tail_mask], dim=1)
    return Batch(ids[:, :-1].contiguous(), attention[:, :-1].contiguous(), P - 1, tail, tail_mask.bool())
