"""Token-level divergences between a student and its rubric-conditioned teacher.

Pure tensor code, no I/O. Every loss here takes logits that are already aligned (position t's
logits predict the token at t), a completion mask (prompt and padding are 0), treats the teacher
as a constant (it is detached; gradient reaches the student only) and reduces to a scalar:
the sum over masked positions divided by the number of masked positions in the batch
("per-token mean", the reduction of TRL's `batchmean` when labels are given). An empty mask
gives a zero that is still connected to the student's graph.

Divergences (name -> function, see DIVERGENCES):
- forward_kl       KL(p_T || p_S) over the full vocabulary (mode covering; DESIGN section 4
                   found it the sensible default for the embedded model).
- reverse_kl       KL(p_S || p_T) over the full vocabulary (mode seeking).
- jsd              generalized JSD of GKD / TRL with mixing weight beta.
- topk_forward_kl  the RCSD paper's released setting: forward KL renormalised over the
                   teacher's top-k tokens, with a clip (entry / token / none).
- sampled_token    reverse KL as a policy gradient on the sampled tokens.

Numerics: logits are upcast to float32 (float64 stays float64) inside the loss, probabilities
come from log_softmax, and 0 * log 0 = 0 where the teacher (or the student) puts no mass,
so -inf logits (banned tokens, padded vocabularies) give finite values and gradients.

Memory: a (B, T, V) logits tensor in float32 is large (4 x 8 x 4096 x 150k = 19 GiB), and a
divergence needs a few of them. `compute_divergence(..., chunk_size=n)` and
`lm_head_chunked_divergence` work through n positions at a time and take each chunk's gradient
right away (a custom autograd Function, see "Reduction" below), so float32 intermediates grow
with n * V, not with B * T * V. `lm_head_chunked_divergence` goes further and never holds the
full logits at all: it computes them from the final hidden states chunk by chunk (for
topk_forward_kl, the student's only at the teacher's k tokens: `_topk_forward_kl_from_hidden`).

Usage:
    loss = compute_divergence("forward_kl", student_logits, teacher_logits, mask, temperature=1.0)
    loss = lm_head_chunked_divergence("forward_kl", h_student, h_teacher, lm_head.weight, mask, 1024)
    heat = divergence_per_token("forward_kl", student_logits, teacher_logits, mask)  # (B, T)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

CLIP_MODES = ("entry", "token", "none")

# -----------------------------------------------------------------------------
# Numerical helpers


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """At least float32 (bf16/fp16 -> fp32; fp64 stays fp64 so tests can check in fp64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _tempered(x: torch.Tensor, temperature: float) -> torch.Tensor:
    """_upcast(x) / temperature, without the pass over (N, V) that dividing by 1 would cost."""
    return _upcast(x) if temperature == 1 else _upcast(x) / temperature


def _kl_terms(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Elementwise p * (log p - log q) with 0 * log 0 = 0; (..., V) -> (..., V).

    Where p = 0 the term is 0 with a zero (not NaN) gradient, even when log q = -inf too.
    Where p > 0 and q = 0 the term is +inf, as the divergence is.
    """
    p = log_p.exp()
    diff = torch.where(p > 0, log_p - log_q, torch.zeros_like(log_p))
    return p * diff


def _log_mixture(log_s: torch.Tensor, log_t: torch.Tensor, beta: float) -> torch.Tensor:
    """log((1 - beta) * p_S + beta * p_T), stable; (N, V) -> (N, V). 0 < beta < 1.

    Entries where both sides are -inf are filled before logsumexp (whose backward would
    give NaN there) and set back to -inf after; their KL terms are 0 anyway.
    """
    both_zero = torch.isneginf(log_s) & torch.isneginf(log_t)
    log_s = log_s.masked_fill(both_zero, 0.0)
    log_t = log_t.masked_fill(both_zero, 0.0)
    stacked = torch.stack([log_s + math.log1p(-beta), log_t + math.log(beta)])  # (2, N, V)
    return torch.logsumexp(stacked, dim=0).masked_fill(both_zero, float("-inf"))


# -----------------------------------------------------------------------------
# Per-position kernels: student (N, V), teacher (N, V), tokens (N,) | None -> (N,) loss terms.
# They see only the completion rows; the teacher arrives detached.


def _forward_kl_terms(s, t, tokens, *, temperature=1.0):
    log_s = F.log_softmax(_tempered(s, temperature), dim=-1)  # (N, V)
    log_t = F.log_softmax(_tempered(t, temperature), dim=-1)
    return _kl_terms(log_t, log_s).sum(-1)  # (N,)


def _reverse_kl_terms(s, t, tokens, *, temperature=1.0):
    log_s = F.log_softmax(_tempered(s, temperature), dim=-1)
    log_t = F.log_softmax(_tempered(t, temperature), dim=-1)
    return _kl_terms(log_s, log_t).sum(-1)


def _jsd_terms(s, t, tokens, *, beta=0.5, temperature=1.0):
    log_s = F.log_softmax(_tempered(s, temperature), dim=-1)
    log_t = F.log_softmax(_tempered(t, temperature), dim=-1)
    # Endpoints special-cased as in TRL: the formula below tends to 0 at both ends.
    if beta == 0:
        return _kl_terms(log_t, log_s).sum(-1)
    if beta == 1:
        return _kl_terms(log_s, log_t).sum(-1)
    log_m = _log_mixture(log_s, log_t, beta)
    return (beta * _kl_terms(log_t, log_m) + (1 - beta) * _kl_terms(log_s, log_m)).sum(-1)


def _topk_forward_kl_terms(s, t, tokens, *, k=20, temperature=1.2, clip=0.05, clip_mode="token"):
    top_t, top_ids = _teacher_top_k(t, k, temperature)             # (N, k): the teacher's k most likely
    top_s = _tempered(torch.gather(s, -1, top_ids), temperature)     # (N, k): the student's logits there
    return _top_k_terms(top_t, top_s, clip, clip_mode)


def _topk_forward_kl_from_hidden(h, weight, bias, t, *, k=20, temperature=1.2, clip=0.05, clip_mode="token"):
    """_topk_forward_kl_terms with the student's logits formed at the teacher's top-k tokens only:
    h (N, H) against the k rows of the lm_head each position needs, (N, k) where the kernel takes
    (N, V). The same values within rounding (each logit is the same dot product, summed in another
    order), without the student's (N, V) logits, their float32 copy and their dense gradient, nor
    the product over the vocabulary (`bench/loss_memory.py` measures what a chunk row takes)."""
    top_t, top_ids = _teacher_top_k(t, k, temperature)                 # (N, k)
    top_s = (weight[top_ids] @ h.unsqueeze(-1)).squeeze(-1)            # (N, k, H) @ (N, H, 1)
    if bias is not None:
        top_s = top_s + bias[top_ids]
    return _top_k_terms(top_t, _tempered(top_s, temperature), clip, clip_mode)


def _teacher_top_k(t, k, temperature):
    """The teacher's k most likely tokens and their tempered logits, (N, V) -> (N, k) each. Dividing by
    the temperature keeps the order, so only the k values chosen are divided (the same bits as
    choosing among divided logits, one float32 (N, V) pass fewer)."""
    top, ids = torch.topk(_upcast(t), k, dim=-1)
    return (top if temperature == 1 else top / temperature), ids


def _top_k_terms(top_t, top_s, clip, clip_mode):
    """Forward KL renormalised over the k tokens, clipped; tempered (N, k) logits of both sides -> (N,)."""
    log_t = F.log_softmax(top_t, dim=-1)  # renormalised over the k tokens
    log_s = F.log_softmax(top_s, dim=-1)
    entries = _kl_terms(log_t, log_s)  # (N, k)
    if clip_mode == "entry":
        return entries.clamp(max=clip).sum(-1)
    if clip_mode == "token":
        return entries.sum(-1).clamp(max=clip)
    return entries.sum(-1)


def _sampled_log_probs(logits, tokens, temperature):
    """log softmax(logits / temperature) at the sampled tokens; (N, V), (N,) -> (N,)."""
    logits = _tempered(logits, temperature)
    picked = torch.gather(logits, -1, tokens.long().unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def _sampled_log_ratio(s, t, tokens, *, temperature=1.0):
    """log pi_S(y) - log pi_T(y): a one-sample estimate of KL(p_S || p_T) when y ~ p_S; (N,)."""
    return _sampled_log_probs(s, tokens, temperature) - _sampled_log_probs(t, tokens, temperature)


def _sampled_token_terms(s, t, tokens, *, temperature=1.0):
    log_s = _sampled_log_probs(s, tokens, temperature)  # (N,)
    log_t = _sampled_log_probs(t, tokens, temperature)
    advantage = (log_t - log_s).detach()
    # Gradient -A * grad log pi_S(y): the score-function form of grad KL(p_S || p_T).
    return -advantage * log_s


def _forward_kl_sum_and_grad(s, t, *, temperature=1.0, grad=True):
    """Sum of _forward_kl_terms over the rows, and its gradient w.r.t. s (float32) in closed form:
    (softmax(s / T) - p_T) / T per row. Same values as autograd through the kernel, in about half
    the passes over the (N, V) chunk (no saved intermediates, no backward graph)."""
    log_t = F.log_softmax(_tempered(t, temperature), dim=-1)  # (N, V)
    log_s = F.log_softmax(_tempered(s, temperature), dim=-1)
    p_t = log_t.exp()
    diff = log_t.sub_(log_s).masked_fill_(p_t == 0, 0.0)  # 0 * log 0 = 0 where the teacher puts no mass
    value = torch.vdot(p_t.reshape(-1), diff.reshape(-1))
    if not grad:
        return value, None
    gradient = log_s.exp_().sub_(p_t)
    return value, gradient if temperature == 1 else gradient.div_(temperature)


_KERNELS: dict[str, Callable[..., torch.Tensor]] = {
    "forward_kl": _forward_kl_terms,
    "reverse_kl": _reverse_kl_terms,
    "jsd": _jsd_terms,
    "topk_forward_kl": _topk_forward_kl_terms,
    "sampled_token": _sampled_token_terms,
}

# Kernels whose summed value and gradient the chunked paths take in closed form, not through autograd.
_CLOSED_FORMS: dict[Callable[..., torch.Tensor], Callable[..., tuple]] = {
    _forward_kl_terms: _forward_kl_sum_and_grad,
}

# Kernels that `lm_head_chunked_divergence` runs from the hidden states, (h, weight, bias, teacher
# logits, **params) -> (N,) terms, without the student's (N, V) logits.
_FROM_HIDDEN: dict[Callable[..., torch.Tensor], Callable[..., torch.Tensor]] = {
    _topk_forward_kl_terms: _topk_forward_kl_from_hidden,
}

# Parameters each divergence accepts, with defaults (round configs map k, tau, clip, beta here).
PARAMS: dict[str, dict[str, object]] = {
    "forward_kl": {"temperature": 1.0},
    "reverse_kl": {"temperature": 1.0},
    "jsd": {"beta": 0.5, "temperature": 1.0},
    "topk_forward_kl": {"k": 20, "temperature": 1.2, "clip": 0.05, "clip_mode": "token"},
    "sampled_token": {"temperature": 1.0},
}


# -----------------------------------------------------------------------------
# Validation


def _resolve(name: str, params: dict) -> tuple[Callable[..., torch.Tensor], dict]:
    """Kernel and full parameter set for `name`; ValueError for anything unknown or out of range."""
    if name not in _KERNELS:
        raise ValueError(f"unknown divergence {name!r}; valid names: {', '.join(_KERNELS)}")
    unknown = sorted(set(params) - set(PARAMS[name]))
    if unknown:
        raise ValueError(
            f"divergence {name!r} takes no parameter {', '.join(map(repr, unknown))}; "
            f"it takes: {', '.join(PARAMS[name])}"
        )
    full = {**PARAMS[name], **params}
    if not full["temperature"] > 0:
        raise ValueError(f"{name}: temperature must be > 0, got {full['temperature']!r}")
    if name == "jsd" and not 0 <= full["beta"] <= 1:
        raise ValueError(f"jsd: beta must be in [0, 1], got {full['beta']!r}")
    if name == "topk_forward_kl":
        if full["clip_mode"] not in CLIP_MODES:
            raise ValueError(
                f"topk_forward_kl: clip_mode must be one of {', '.join(CLIP_MODES)}, "
                f"got {full['clip_mode']!r}"
            )
        if full["clip_mode"] != "none" and not full["clip"] > 0:
            raise ValueError(f"topk_forward_kl: clip must be > 0, got {full['clip']!r}")
        if isinstance(full["k"], bool) or not isinstance(full["k"], int) or full["k"] < 1:
            raise ValueError(f"topk_forward_kl: k must be a positive integer, got {full['k']!r}")
    return _KERNELS[name], full


def _check_inputs(name, student_logits, teacher_logits, mask, tokens):
    if student_logits.dim() != 3 or student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"{name}: student and teacher logits must both be (B, T, V), got "
            f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}"
        )
    _check_mask(name, student_logits.shape[:2], mask, tokens)


def _check_mask(name, bt, mask, tokens):
    if tuple(mask.shape) != tuple(bt):
        raise ValueError(f"{name}: mask must be (B, T) = {tuple(bt)}, got {tuple(mask.shape)}")
    if name == "sampled_token":
        if tokens is None:
            raise ValueError("sampled_token needs the sampled token ids (tokens, shape (B, T))")
        if tuple(tokens.shape) != tuple(bt):
            raise ValueError(f"sampled_token: tokens must be (B, T) = {tuple(bt)}, got {tuple(tokens.shape)}")


def _check_vocab(name, params, vocab_size):
    if name == "topk_forward_kl" and params["k"] > vocab_size:
        raise ValueError(f"topk_forward_kl: k={params['k']} exceeds the vocabulary size {vocab_size}")


def _check_chunk(chunk_size):
    if chunk_size is not None and (isinstance(chunk_size, bool) or int(chunk_size) != chunk_size or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")


# -----------------------------------------------------------------------------
# Reduction over completion positions, whole or in chunks
#
# Chunked paths use a custom autograd Function that takes each chunk's gradient during the
# forward pass (the approach of Liger's fused linear cross-entropy): a chunk's logits and
# float32 intermediates are freed before the next chunk starts, nothing is recomputed in the
# backward, and what is kept for the backward is only the gradient w.r.t. the Function's
# inputs. We chose this over torch.utils.checkpoint, which recomputes every chunk (a third
# lm_head matmul) and whose non-reentrant form pulls in torch._dynamo on first use (~2.5 s).
# Trade-off: no double backward through the chunked paths.


def _value_and_grads(fn, inputs, needs):
    """fn(*inputs) (a scalar) detached, and its gradients w.r.t. the inputs flagged in `needs`."""
    with torch.enable_grad():
        leaves = [x.detach().requires_grad_() if need else x for x, need in zip(inputs, needs)]
        value = fn(*leaves)
        wrt = [x for x, need in zip(leaves, needs) if need]
        grads = torch.autograd.grad(value, wrt, allow_unused=True) if wrt else ()
    grads = [torch.zeros_like(x) if g is None else g for x, g in zip(wrt, grads)]
    return value.detach(), grads


class _ChunkedLogitsLoss(torch.autograd.Function):
    """Mean of kernel terms over kept rows of (BT, V) logits, `chunk_size` rows at a time."""

    @staticmethod
    def forward(ctx, s, t, keep, tokens, kernel, params, chunk_size, count, grad_enabled):
        # s, t (BT, V); keep (BT,) bool; tokens (BT,) or None
        # (needs_input_grad stays True under torch.no_grad, hence grad_enabled from the caller)
        want_grad = grad_enabled and ctx.needs_input_grad[0]
        grad_s = torch.zeros_like(s) if want_grad else None  # (BT, V), the logits' dtype
        total = torch.zeros((), dtype=torch.float64, device=s.device)
        for start in range(0, s.shape[0], chunk_size):
            rows = keep[start : start + chunk_size].nonzero().squeeze(-1)
            if rows.numel() == 0:
                continue
            idx = start + rows
            t_c, tok_c = t[idx], None if tokens is None else tokens[idx]
            closed = _CLOSED_FORMS.get(kernel)
            if closed is not None:
                value, gradient = closed(s[idx], t_c, grad=want_grad, **params)
                total += value / count
                if want_grad:
                    grad_s[idx] = gradient.div_(count).to(grad_s.dtype)
                continue

            def chunk_mean(s_c):
                return kernel(s_c, t_c, tok_c, **params).sum() / count

            value, grads = _value_and_grads(chunk_mean, [s[idx]], [want_grad])
            total += value
            if want_grad:
                grad_s[idx] = grads[0].to(grad_s.dtype)
        ctx.save_for_backward(grad_s)
        return total.to(torch.promote_types(s.dtype, torch.float32))

    @staticmethod
    def backward(ctx, grad_out):
        (grad_s,) = ctx.saved_tensors
        return grad_s * grad_out, None, None, None, None, None, None, None, None


class _ChunkedHeadLoss(torch.autograd.Function):
    """Mean of kernel terms over N completion rows of hidden states through an lm_head."""

    @staticmethod
    def forward(ctx, hs, weight, bias, ht, t_weight, t_bias, tokens, kernel, params, chunk_size, grad_enabled):
        # hs, ht (N, H); weight (V, H); bias (V,) or None; tokens (N,) or None
        count = hs.shape[0]
        needs = [grad_enabled and ctx.needs_input_grad[i] and x is not None for i, x in enumerate((hs, weight, bias))]
        grad_h = torch.zeros_like(hs) if needs[0] else None  # (N, H)
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if needs[1] else None  # (V, H)
        grad_b = torch.zeros_like(bias, dtype=torch.float32) if needs[2] else None  # (V,)
        total = torch.zeros((), dtype=torch.float64, device=hs.device)
        for start in range(0, count, chunk_size):
            end = start + chunk_size
            t_c = F.linear(ht[start:end], t_weight, t_bias)  # (n, V), no grad in forward
            tok_c = None if tokens is None else tokens[start:end]
            closed = _CLOSED_FORMS.get(kernel)
            if closed is not None:
                h = hs[start:end]
                value, gradient = closed(F.linear(h, weight, bias), t_c, grad=any(needs), **params)
                total += value / count
                if any(needs):  # the lm_head's backward by hand: d/dh = g·W, d/dW = gᵀ·h, d/db = Σ g
                    gradient = gradient.div_(count).to(hs.dtype)
                    if needs[0]:
                        grad_h[start:end] = gradient @ weight
                    if needs[1]:
                        grad_w += gradient.t() @ h
                    if needs[2]:
                        grad_b += gradient.sum(0)
                continue

            from_hidden = _FROM_HIDDEN.get(kernel)

            def chunk_mean(h, w, b):
                if from_hidden is not None:
                    return from_hidden(h, w, b, t_c, **params).sum() / count
                return kernel(F.linear(h, w, b), t_c, tok_c, **params).sum() / count

            value, grads = _value_and_grads(chunk_mean, [hs[start:end], weight, bias], needs)
            total += value
            grads = iter(grads)
            if needs[0]:
                grad_h[start:end] = next(grads)
            if needs[1]:
                grad_w += next(grads)
            if needs[2]:
                grad_b += next(grads)
        ctx.save_for_backward(
            grad_h,
            None if grad_w is None else grad_w.to(weight.dtype),
            None if grad_b is None else grad_b.to(bias.dtype),
        )
        return total.to(torch.promote_types(hs.dtype, torch.float32))

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w, grad_b = (None if g is None else g * grad_out for g in ctx.saved_tensors)
        return grad_h, grad_w, grad_b, None, None, None, None, None, None, None, None


def compute_divergence(
    name: str,
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor,
    tokens: torch.Tensor | None = None,
    *,
    chunk_size: int | None = None,
    **params,
) -> torch.Tensor:
    """Divergence `name` averaged over the masked (completion) positions; a float scalar.

    student_logits (B, T, V) with grad; teacher_logits (B, T, V), detached here; mask (B, T)
    bool or 0/1; tokens (B, T) sampled ids, needed by `sampled_token` only. `params` are the
    divergence's own (see PARAMS). With `chunk_size`, the flattened B*T positions are taken
    `chunk_size` at a time, so float32 intermediates exist for one chunk only; the gradient
    w.r.t. the logits is formed chunk by chunk in the forward and kept, in the logits' dtype,
    for the backward. The value equals the unchunked one up to float summation order.
    """
    kernel, params = _resolve(name, params)
    _check_inputs(name, student_logits, teacher_logits, mask, tokens)
    _check_vocab(name, params, student_logits.shape[-1])
    _check_chunk(chunk_size)

    B, T, V = student_logits.shape
    s = student_logits.reshape(B * T, V)  # (BT, V), a view when contiguous
    t = teacher_logits.detach().reshape(B * T, V)
    keep = mask.reshape(B * T).bool()  # (BT,)
    tok = None if tokens is None else tokens.reshape(B * T)
    count = int(keep.sum())
    if count == 0:
        return student_logits.sum().float() * 0.0
    if chunk_size is not None:
        return _ChunkedLogitsLoss.apply(s, t, keep, tok, kernel, params, chunk_size, count, torch.is_grad_enabled())
    rows = keep.nonzero().squeeze(-1)  # (N,)
    terms = kernel(s[rows], t[rows], None if tok is None else tok[rows], **params)  # (N,)
    return terms.sum() / count


def lm_head_chunked_divergence(
    name: str,
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    weight: torch.Tensor,
    mask: torch.Tensor,
    chunk_size: int = 1024,
    *,
    tokens: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    teacher_weight: torch.Tensor | None = None,
    teacher_bias: torch.Tensor | None = None,
    **params,
) -> torch.Tensor:
    """Divergence `name` from final hidden states, never holding full (B, T, V) logits.

    student_hidden, teacher_hidden (B, T, H); weight (V, H) the student's lm_head (and bias
    (V,)); the teacher uses teacher_weight/teacher_bias, defaulting to the student's, detached.
    Prompt and padding rows are dropped from the hidden states first (cheap: H << V), then
    `chunk_size` completion positions at a time get their logits, in the weight's dtype as
    the model computes them, and their loss terms in float32. Each chunk's gradient is taken
    in the forward, so at most one chunk's (chunk_size, V) logits exist at any time and the
    backward only scales the kept gradients: (N, H) for the hidden states, plus (V, H) for
    weight and (V,) for bias when they require grad (a LoRA setup usually freezes the head).
    Same value and gradients as compute_divergence on the full logits.
    """
    kernel, params = _resolve(name, params)
    if student_hidden.dim() != 3 or student_hidden.shape != teacher_hidden.shape:
        raise ValueError(
            f"{name}: student and teacher hidden states must both be (B, T, H), got "
            f"{tuple(student_hidden.shape)} and {tuple(teacher_hidden.shape)}"
        )
    if weight.dim() != 2 or weight.shape[1] != student_hidden.shape[-1]:
        raise ValueError(f"{name}: weight must be (V, H={student_hidden.shape[-1]}), got {tuple(weight.shape)}")
    _check_mask(name, student_hidden.shape[:2], mask, tokens)
    _check_vocab(name, params, weight.shape[0])
    if chunk_size is None:
        raise ValueError("lm_head_chunked_divergence needs a chunk_size")
    _check_chunk(chunk_size)

    B, T, H = student_hidden.shape
    rows = mask.reshape(B * T).bool().nonzero().squeeze(-1)  # (N,) completion rows
    if rows.numel() == 0:
        zero = student_hidden.sum().float() * 0.0
        for p in (weight, bias):  # keep every trainable input in the graph (DDP)
            if p is not None and p.requires_grad:
                zero = zero + p.sum().float() * 0.0
        return zero
    hs = student_hidden.reshape(B * T, H)[rows]  # (N, H)
    ht = teacher_hidden.detach().reshape(B * T, H)[rows]  # (N, H)
    tok = None if tokens is None else tokens.reshape(B * T)[rows]  # (N,)
    t_weight = (weight if teacher_weight is None else teacher_weight).detach()
    t_bias = bias if teacher_weight is None and teacher_bias is None else teacher_bias
    t_bias = None if t_bias is None else t_bias.detach()
    return _ChunkedHeadLoss.apply(
        hs, weight, bias, ht, t_weight, t_bias, tok, kernel, params, chunk_size, torch.is_grad_enabled()
    )


# -----------------------------------------------------------------------------
# Named losses (thin wrappers; all reduce as compute_divergence does)


def forward_kl(student_logits, teacher_logits, mask, temperature=1.0, *, chunk_size=None) -> torch.Tensor:
    """KL(p_T || p_S) = sum_v p_T(v) [log p_T(v) - log p_S(v)] per position, full vocabulary,
    both at `temperature` (no tau^2 factor); mean over masked positions."""
    return compute_divergence(
        "forward_kl", student_logits, teacher_logits, mask, chunk_size=chunk_size, temperature=temperature
    )


def reverse_kl(student_logits, teacher_logits, mask, temperature=1.0, *, chunk_size=None) -> torch.Tensor:
    """KL(p_S || p_T) per position, full vocabulary, both at `temperature`; mean over masked positions."""
    return compute_divergence(
        "reverse_kl", student_logits, teacher_logits, mask, chunk_size=chunk_size, temperature=temperature
    )


def jsd(student_logits, teacher_logits, mask, beta=0.5, temperature=1.0, *, chunk_size=None) -> torch.Tensor:
    """Generalized JSD, TRL's `generalized_jsd_loss` convention (GKD, arXiv 2306.13649 eq. 1).

    M = beta * p_T + (1 - beta) * p_S and JSD_beta = beta * KL(p_T || M) + (1 - beta) * KL(p_S || M).
    beta = 0 is special-cased to forward KL(p_T || p_S) and beta = 1 to reverse KL(p_S || p_T),
    exactly as TRL does. Note the formula itself tends to 0 at both ends, so the loss is
    discontinuous at beta = 0 and 1: small beta is *not* close to forward KL.
    """
    return compute_divergence(
        "jsd", student_logits, teacher_logits, mask, chunk_size=chunk_size, beta=beta, temperature=temperature
    )


def topk_forward_kl(
    student_logits,
    teacher_logits,
    mask,
    k=20,
    temperature=1.2,
    clip=0.05,
    clip_mode="token",
    *,
    chunk_size=None,
) -> torch.Tensor:
    """Forward KL over the teacher's top-k tokens: the RCSD paper's released setting.

    K_t = the teacher's k most likely tokens at t; both sides' logits divided by `temperature`
    and renormalised over K_t; e_v = p~_T(v) [log p~_T(v) - log p~_S(v)] for v in K_t.
    clip_mode:
      "token" (default): min(sum_v e_v, clip) -- caps each position's divergence, which is
                what the official code's comment describes; capped positions get no gradient.
      "entry": sum_v min(e_v, clip) -- what the official code does (`clamp(max=c)` on the
                elementwise KL). WARNING: measured in this project (DESIGN section 4) it pushed
                the student *away* from the teacher: a clipped entry loses its pull while the
                renormalisation still pushes that token down. Offered for reproduction only.
      "none":  sum_v e_v.
    With k = V and clip_mode "none" this is forward_kl at the same temperature.
    """
    return compute_divergence(
        "topk_forward_kl",
        student_logits,
        teacher_logits,
        mask,
        chunk_size=chunk_size,
        k=k,
        temperature=temperature,
        clip=clip,
        clip_mode=clip_mode,
    )


def sampled_token_loss(
    student_logits, teacher_logits, mask, tokens, temperature=1.0, *, chunk_size=None
) -> torch.Tensor:
    """Reverse KL as a policy gradient on the sampled tokens y_t (tokens, (B, T)).

    A_t = (log pi_T - log pi_S)(y_t), detached; L = -mean_t A_t * log pi_S(y_t).
    Its gradient is an unbiased single-sample estimate of grad KL(p_S || p_T) when y ~ p_S;
    its value is not a divergence (use divergence_per_token for that). Same per-token
    terms as TRL SDFT's `sampled_token` mode.
    """
    return compute_divergence(
        "sampled_token",
        student_logits,
        teacher_logits,
        mask,
        tokens,
        chunk_size=chunk_size,
        temperature=temperature,
    )


DIVERGENCES: dict[str, Callable[..., torch.Tensor]] = {
    "forward_kl": forward_kl,
    "reverse_kl": reverse_kl,
    "jsd": jsd,
    "topk_forward_kl": topk_forward_kl,
    "sampled_token": sampled_token_loss,
}


# -----------------------------------------------------------------------------
# Per-position values, for the token-level guidance map and for logging


@torch.no_grad()
def divergence_per_token(
    name: str,
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    tokens: torch.Tensor | None = None,
    *,
    chunk_size: int | None = None,
    **params,
) -> torch.Tensor:
    """Per-position divergence (B, T) float32, 0 where mask is 0; no grad.

    For every name but `sampled_token` these are the per-position terms whose masked mean is
    compute_divergence. For `sampled_token` it is log pi_S(y_t) - log pi_T(y_t), the
    single-sample estimate of KL(p_S || p_T) (the loss value itself is not a divergence).
    Positive = the teacher finds the student's choice less likely than the student does.
    """
    kernel, params = _resolve(name, params)
    if mask is None:
        mask = torch.ones(student_logits.shape[:2], dtype=torch.bool, device=student_logits.device)
    _check_inputs(name, student_logits, teacher_logits, mask, tokens)
    _check_vocab(name, params, student_logits.shape[-1])
    _check_chunk(chunk_size)
    if name == "sampled_token":
        kernel = _sampled_log_ratio  # the divergence estimate, not the loss terms

    B, T, V = student_logits.shape
    s = student_logits.reshape(B * T, V)
    t = teacher_logits.reshape(B * T, V)
    keep = mask.reshape(B * T).bool()
    tok = None if tokens is None else tokens.reshape(B * T)
    out = torch.zeros(B * T, dtype=torch.float32, device=student_logits.device)
    step = chunk_size or B * T
    for start in range(0, B * T, step):
        idx = start + keep[start : start + step].nonzero().squeeze(-1)  # kept rows of this chunk
        if idx.numel() == 0:
            continue
        out[idx] = kernel(s[idx], t[idx], None if tok is None else tok[idx], **params).float()
    return out.reshape(B, T)
