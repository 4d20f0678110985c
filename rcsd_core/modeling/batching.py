"""Batching: the one place token sequences are padded into tensors.

Three layouts, all from lists of token ids:
- `left_pad(prompts)` — prompts padded on the left so generation appends on the right;
- `pack_batch(prompts, completions)` — prompts left-padded to a common end, completions
  right-padded after it, so completion position i sits at the same column in every row;
- `pack_shared(prompts, completions)` — one row per distinct prompt: [prompt | completion 1 |
  completion 2 | …], each completion seeing the prompt and itself only (a block mask), so a
  prompt that k chains share runs once instead of k times. A round samples several chains per
  prompt: on the `cpu-demo` step (4 chains of each ~55-token prompt, 64 new tokens) this is a third
  fewer tokens through the student's forward and backward.

Every forward over [prompt + completion] (student, teacher, guidance maps, held-out divergence)
uses one of the last two, and both give hidden states and masks in the (B, C) completion layout of
`Batch`, so student and teacher results line up position by position whatever their prompts.

    batch = pack_batch([[1, 2, 3], [4]], [[7, 8], [9]], pad_id=0)
    batch.ids.shape, batch.tokens.shape       # (2, 3 + 2 - 1), (2, 2)
    shared = pack_shared([[1, 2], [1, 2]], [[7, 8], [9]], pad_id=0)
    shared.ids.shape, shared.index.shape      # (1, 2 + 1 + 0), (2, 2): one row, two chains
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


@dataclass
class SharedBatch:
    """Chains packed one row per distinct prompt: [prompt | completion 1 minus its last token | …].

    ids/positions (R, T), attention (R, 1, T, T) bool: a prompt token sees the prompt up to itself,
    a completion token the prompt and its own completion up to itself (positions continue from the
    prompt, as if it were alone in its row); padding sees only itself. `index` (N, C) points into
    the flattened (R·T) hidden states at the position that predicts each completion token (token 0:
    the prompt's last position, which all its chains share); tokens and mask are `Batch`'s.
    """
    ids: torch.Tensor
    attention: torch.Tensor
    positions: torch.Tensor
    index: torch.Tensor     # (N, C)
    tokens: torch.Tensor    # (N, C)
    mask: torch.Tensor      # (N, C)

    def to(self, device) -> "SharedBatch":
        return SharedBatch(*(t.to(device) for t in (self.ids, self.attention, self.positions, self.index,
                                                     self.tokens, self.mask)))


def pack_shared(prompts: list[list[int]], completions: list[list[int]], pad_id: int) -> SharedBatch:
    """The one-row-per-prompt layout of chains (see SharedBatch); rows in order of first appearance."""
    rows: dict[tuple[int, ...], list[int]] = {}
    for i, p in enumerate(prompts):
        rows.setdefault(tuple(p), []).append(i)
    lengths = [len(p) + sum(max(len(completions[i]) - 1, 0) for i in chains) for p, chains in rows.items()]
    R, T, N = len(rows), max(lengths), len(prompts)
    C = max(1, max(len(c) for c in completions))
    ids = torch.full((R, T), pad_id, dtype=torch.long)
    positions = torch.zeros((R, T), dtype=torch.long)
    see = torch.eye(T, dtype=torch.bool).repeat(R, 1, 1)                       # padding sees itself
    index = torch.zeros((N, C), dtype=torch.long)
    tokens = torch.full((N, C), pad_id, dtype=torch.long)
    mask = torch.zeros((N, C), dtype=torch.bool)
    for r, (prompt, chains) in enumerate(rows.items()):
        P = len(prompt)
        ids[r, :P] = torch.tensor(prompt, dtype=torch.long)
        positions[r, :P] = torch.arange(P)
        see[r, :P, :P] = torch.ones(P, P, dtype=torch.bool).tril()
        start = P
        for i in chains:
            c = completions[i]
            fed = c[:-1]                                                       # the last token is never an input
            end = start + len(fed)
            if fed:
                ids[r, start:end] = torch.tensor(fed, dtype=torch.long)
                positions[r, start:end] = torch.arange(P, P + len(fed))
                see[r, start:end, :P] = True
                see[r, start:end, start:end] = torch.ones(len(fed), len(fed), dtype=torch.bool).tril()
            if c:
                index[i, 0] = r * T + P - 1
                index[i, 1:len(c)] = r * T + torch.arange(start, end)
                tokens[i, :len(c)] = torch.tensor(c, dtype=torch.long)
                mask[i, :len(c)] = True
            start = end
    return SharedBatch(ids, see.unsqueeze(1), positions, index, tokens, mask)


def pack_chains(prompts: list[list[int]], completions: list[list[int]], pad_id: int) -> Batch | SharedBatch:
    """`pack_shared` when some chains share a prompt (fewer tokens to run), else `pack_batch`."""
    if len({tuple(p) for p in prompts}) < len(prompts):
        return pack_shared(prompts, completions, pad_id)
    return pack_batch(prompts, completions, pad_id)
