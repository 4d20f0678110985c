"""Tests for rcsd_core.modeling.losses: every divergence against a naive float64 reference, masking,
chunking, gradients, and TRL's own loss code where the definitions coincide.

Run: python -m pytest tests/test_losses.py -q   (a few seconds on 2 CPU cores)

TRL: importing `trl.experimental.*` pulls in transformers (~10 s on 2 cores), so the fast TRL
tests read the installed TRL source and execute just the loss functions (GKDTrainer's
`generalized_jsd_loss` and `trl/experimental/sdft/loss_utils.py`); one `slow` test imports
them for real. Both skip when TRL is not installed.
"""

import ast
import importlib.util
import math
import weakref
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from rcsd_core.modeling import losses as L

NAMES = ["forward_kl", "reverse_kl", "jsd", "topk_forward_kl", "sampled_token"]
B, T, V = 3, 7, 11


# -----------------------------------------------------------------------------
# Fixtures and the naive reference


def make_batch(seed=0, b=B, t=T, v=V, dtype=torch.float32, scale=2.0):
    """Random logits, a mask with prompt/padding zeros and one fully masked row, sampled ids."""
    g = torch.Generator().manual_seed(seed)
    student = (scale * torch.randn(b, t, v, generator=g)).to(dtype).requires_grad_()
    teacher = (scale * torch.randn(b, t, v, generator=g)).to(dtype)
    mask = torch.rand(b, t, generator=g) > 0.35
    mask[:, 0] = False  # "prompt"
    mask[0, -2:] = False  # "padding"
    mask[1] = False  # a row with no completion tokens at all
    mask[2, 1] = True  # at least one position
    tokens = torch.randint(0, v, (b, t), generator=g)
    return student, teacher, mask, tokens


def params_for(name, temperature=1.0):
    if name == "jsd":
        return {"beta": 0.3, "temperature": temperature}
    if name == "topk_forward_kl":
        return {"k": 4, "temperature": temperature, "clip": 0.5, "clip_mode": "token"}  # clips some positions
    return {"temperature": temperature}


def _softmax(xs, tau):
    zs = [x / tau for x in xs]
    top = max(zs)
    es = [math.exp(z - top) for z in zs]
    total = sum(es)
    return [e / total for e in es]


def _kl(p, q):
    return sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q) if pi > 0)


def ref_token(name, s, t, y=None, *, temperature=1.0, beta=0.5, k=20, clip=0.05, clip_mode="token"):
    """One position's loss term from plain Python floats."""
    if name == "topk_forward_kl":
        ids = sorted(range(len(t)), key=lambda v: -t[v])[:k]
        pt, ps = _softmax([t[v] for v in ids], temperature), _softmax([s[v] for v in ids], temperature)
        entries = [a * (math.log(a) - math.log(b)) if a > 0 else 0.0 for a, b in zip(pt, ps)]
        if clip_mode == "entry":
            return sum(min(e, clip) for e in entries)
        if clip_mode == "token":
            return min(sum(entries), clip)
        return sum(entries)
    ps, pt = _softmax(s, temperature), _softmax(t, temperature)
    if name == "forward_kl" or (name == "jsd" and beta == 0):
        return _kl(pt, ps)
    if name == "reverse_kl" or (name == "jsd" and beta == 1):
        return _kl(ps, pt)
    if name == "jsd":
        m = [beta * a + (1 - beta) * b for a, b in zip(pt, ps)]
        return beta * _kl(pt, m) + (1 - beta) * _kl(ps, m)
    if name == "sampled_token":
        advantage = math.log(pt[y]) - math.log(ps[y])
        return -advantage * math.log(ps[y])
    raise AssertionError(name)


def ref_loss(name, student, teacher, mask, tokens=None, **params):
    """Mean of ref_token over masked positions, looping position by position in float64."""
    s, t = student.detach().double().tolist(), teacher.detach().double().tolist()
    total, count = 0.0, 0
    for b in range(len(s)):
        for i in range(len(s[b])):
            if mask[b, i]:
                y = None if tokens is None else int(tokens[b, i])
                total += ref_token(name, s[b][i], t[b][i], y, **params)
                count += 1
    return total / count if count else 0.0


def call(name, student, teacher, mask, tokens, **kw):
    return L.compute_divergence(name, student, teacher, mask, tokens if name == "sampled_token" else None, **kw)


def grad_of(fn, x):
    x = x.detach().clone().requires_grad_()
    fn(x).backward()
    return x.grad


# -----------------------------------------------------------------------------
# Against the naive reference


@pytest.mark.parametrize("temperature", [0.7, 1.0, 1.5])
@pytest.mark.parametrize("name", ["forward_kl", "reverse_kl", "sampled_token"])
def test_matches_naive_reference(name, temperature):
    student, teacher, mask, tokens = make_batch(seed=1)
    got = call(name, student, teacher, mask, tokens, temperature=temperature)
    want = ref_loss(name, student, teacher, mask, tokens, temperature=temperature)
    assert got.dtype == torch.float32 and got.dim() == 0
    assert got.item() == pytest.approx(want, abs=1e-5, rel=1e-5)


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("temperature", [0.7, 1.3])
def test_jsd_matches_naive_reference(beta, temperature):
    student, teacher, mask, _ = make_batch(seed=2)
    got = L.jsd(student, teacher, mask, beta=beta, temperature=temperature)
    want = ref_loss("jsd", student, teacher, mask, beta=beta, temperature=temperature)
    assert got.item() == pytest.approx(want, abs=1e-5, rel=1e-5)


@pytest.mark.parametrize(
    "clip_mode,clip", [("none", 0.05), ("token", 0.05), ("token", 0.3), ("entry", 0.01), ("entry", 0.05)]
)
@pytest.mark.parametrize("k,temperature", [(1, 1.0), (4, 1.2), (V, 0.8)])
def test_topk_matches_naive_reference(k, temperature, clip_mode, clip):
    student, teacher, mask, _ = make_batch(seed=3)
    got = L.topk_forward_kl(student, teacher, mask, k=k, temperature=temperature, clip=clip, clip_mode=clip_mode)
    params = {"k": k, "temperature": temperature, "clip": clip, "clip_mode": clip_mode}
    want = ref_loss("topk_forward_kl", student, teacher, mask, **params)
    assert got.item() == pytest.approx(want, abs=1e-5, rel=1e-5)


def test_named_functions_equal_dispatcher_and_registry():
    student, teacher, mask, tokens = make_batch(seed=4)
    assert set(L.DIVERGENCES) == set(NAMES) == set(L.PARAMS)
    want = call("forward_kl", student, teacher, mask, tokens, temperature=1.3)
    assert L.forward_kl(student, teacher, mask, 1.3) == want
    assert L.reverse_kl(student, teacher, mask) == call("reverse_kl", student, teacher, mask, tokens)
    assert L.sampled_token_loss(student, teacher, mask, tokens) == call("sampled_token", student, teacher, mask, tokens)
    s, t, m, _ = make_batch(seed=4, v=32)  # the default k=20 needs V >= 20
    assert L.topk_forward_kl(s, t, m) == L.compute_divergence("topk_forward_kl", s, t, m)


# -----------------------------------------------------------------------------
# Masking


@pytest.mark.parametrize("name", NAMES)
def test_masked_positions_are_ignored(name):
    student, teacher, mask, tokens = make_batch(seed=5)
    loss_fn = lambda s, t: call(name, s, t, mask, tokens, **params_for(name))  # noqa: E731
    base = loss_fn(student, teacher)
    base_grad = grad_of(lambda s: loss_fn(s, teacher), student)

    junk_s, junk_t = student.detach().clone(), teacher.clone()
    junk_s[~mask] = torch.randn_like(junk_s[~mask]) * 50
    junk_t[~mask] = float("nan")  # not even NaN at a prompt/padding position leaks in
    assert loss_fn(junk_s, junk_t).item() == pytest.approx(base.item(), abs=1e-6)
    grad = grad_of(lambda s: loss_fn(s, junk_t), junk_s)
    torch.testing.assert_close(grad[mask], base_grad[mask])
    assert torch.all(grad[~mask] == 0)


@pytest.mark.parametrize("name", NAMES)
def test_empty_mask_gives_connected_zero(name):
    student, teacher, _, tokens = make_batch(seed=6)
    mask = torch.zeros(B, T, dtype=torch.bool)
    for chunk_size in (None, 2):
        loss = call(name, student, teacher, mask, tokens, chunk_size=chunk_size, **params_for(name))
        assert loss.item() == 0.0 and loss.requires_grad
        (g,) = torch.autograd.grad(loss, student)
        assert torch.all(g == 0)


def test_float_mask_equals_bool_mask():
    student, teacher, mask, _ = make_batch(seed=7)
    assert L.forward_kl(student, teacher, mask.float()) == L.forward_kl(student, teacher, mask)


# -----------------------------------------------------------------------------
# Chunking


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("chunk_size", [1, 3, T, B * T + 5])
def test_chunked_equals_unchunked(name, chunk_size):
    student, teacher, mask, tokens = make_batch(seed=8)
    params = params_for(name, temperature=1.1)
    full = lambda s: call(name, s, teacher, mask, tokens, **params)  # noqa: E731
    chunked = lambda s: call(name, s, teacher, mask, tokens, chunk_size=chunk_size, **params)  # noqa: E731
    assert chunked(student).item() == pytest.approx(full(student).item(), abs=1e-6)
    torch.testing.assert_close(grad_of(chunked, student), grad_of(full, student), atol=1e-7, rtol=1e-5)


def _lm_head_case(seed=9, h=5, with_bias=True):
    g = torch.Generator().manual_seed(seed)
    _, _, mask, tokens = make_batch(seed=seed)
    hs = torch.randn(B, T, h, generator=g).requires_grad_()
    ht = torch.randn(B, T, h, generator=g)
    weight = torch.randn(V, h, generator=g).requires_grad_()
    bias = torch.randn(V, generator=g).requires_grad_() if with_bias else None
    return hs, ht, weight, bias, mask, tokens


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("chunk_size", [1, 3, T, B * T + 5])
def test_lm_head_chunked_equals_full_logits(name, chunk_size):
    hs, ht, weight, bias, mask, tokens = _lm_head_case()
    params = params_for(name, temperature=0.9)
    tok = tokens if name == "sampled_token" else None

    ref = call(name, F.linear(hs, weight, bias), F.linear(ht, weight, bias).detach(), mask, tokens, **params)
    ref_grads = torch.autograd.grad(ref, (hs, weight, bias))
    got = L.lm_head_chunked_divergence(name, hs, ht, weight, mask, chunk_size, tokens=tok, bias=bias, **params)
    got_grads = torch.autograd.grad(got, (hs, weight, bias))
    assert got.item() == pytest.approx(ref.item(), abs=1e-6, rel=1e-6)
    for a, b in zip(got_grads, ref_grads):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


class _VocabWideProducts(TorchDispatchMode):
    """Counts the matrix products inside the block whose output is vocabulary-wide (last dim `vocab`)."""

    def __init__(self, vocab):
        super().__init__()
        self.vocab, self.count = vocab, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if "mm" in func.__name__ and isinstance(out, torch.Tensor) and out.shape[-1] == self.vocab:
            self.count += 1
        return out


@pytest.mark.parametrize("name, per_chunk", [("topk_forward_kl", 1), ("forward_kl", 2)])
def test_topk_forward_kl_from_hidden_states_forms_only_the_teachers_logits(name, per_chunk):
    # topk_forward_kl takes the student's logits at the teacher's k tokens only: one vocabulary-wide
    # product a chunk (the teacher's), where a full-vocabulary divergence needs the student's too.
    hs, ht, weight, bias, mask, _ = _lm_head_case()
    with _VocabWideProducts(V) as wide:
        loss = L.lm_head_chunked_divergence(name, hs, ht, weight, mask, 4, bias=bias, **params_for(name))
        loss.backward()
    assert wide.count == per_chunk * math.ceil(int(mask.sum()) / 4)
    assert hs.grad is not None and weight.grad is not None and bias.grad.abs().sum() > 0


def test_chunked_paths_under_no_grad():
    hs, ht, weight, bias, mask, _ = _lm_head_case()
    student, teacher = F.linear(hs, weight, bias), F.linear(ht, weight, bias)
    want = L.forward_kl(student, teacher, mask).item()
    with torch.no_grad():
        a = L.forward_kl(student, teacher, mask, chunk_size=4)
        b = L.lm_head_chunked_divergence("forward_kl", hs, ht, weight, mask, 4, bias=bias)
    assert not a.requires_grad and not b.requires_grad
    assert a.item() == pytest.approx(want, abs=1e-6) and b.item() == pytest.approx(want, abs=1e-6)


def test_lm_head_separate_teacher_head_and_no_bias():
    hs, ht, weight, _, mask, _ = _lm_head_case(with_bias=False)
    teacher_weight = (weight + 0.5 * torch.randn_like(weight)).detach().requires_grad_()
    ref = L.forward_kl(hs @ weight.T, ht @ teacher_weight.T, mask)
    got = L.lm_head_chunked_divergence("forward_kl", hs, ht, weight, mask, 4, teacher_weight=teacher_weight)
    assert got.item() == pytest.approx(ref.item(), abs=1e-6, rel=1e-6)
    got.backward()
    assert teacher_weight.grad is None and weight.grad is not None and hs.grad is not None


def test_lm_head_empty_mask_keeps_head_in_graph():
    hs, ht, weight, bias, _, _ = _lm_head_case()
    loss = L.lm_head_chunked_divergence("forward_kl", hs, ht, weight, torch.zeros(B, T), 4, bias=bias)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.all(weight.grad == 0) and torch.all(bias.grad == 0) and torch.all(hs.grad == 0)


def _held_for_backward(fn, inputs):
    """Bytes autograd still holds for the backward once fn() returns, beyond `inputs`' storages.

    Tensors saved by transient inner graphs (a chunk's own autograd pass) are dead by then.
    """
    skip = {x.untyped_storage().data_ptr() for x in inputs}
    saved = []

    def pack(x):
        saved.append(weakref.ref(x))
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        out = fn()
    alive = {}
    for ref in saved:
        x = ref()
        if x is not None and x.untyped_storage().data_ptr() not in skip:
            alive[x.untyped_storage().data_ptr()] = x.untyped_storage().nbytes()
    del out
    return sum(alive.values())


@pytest.mark.parametrize("name", ["forward_kl", "jsd"])
def test_chunking_keeps_no_full_logits_for_backward(name):
    # Loose memory check: count what autograd holds between the forward and the backward.
    b, t, h, v = 2, 64, 8, 512
    g = torch.Generator().manual_seed(10)
    hs, ht = torch.randn(b, t, h, generator=g).requires_grad_(), torch.randn(b, t, h, generator=g)
    weight = torch.randn(v, h, generator=g)  # frozen head, as under LoRA
    mask = torch.ones(b, t, dtype=torch.bool)
    s_logits, t_logits = (hs @ weight.T).detach().requires_grad_(), (ht @ weight.T).detach()
    one_logits = b * t * v * 4  # one float32 (B, T, V) tensor
    loss = lambda **kw: L.compute_divergence(name, s_logits, t_logits, mask, **kw)  # noqa: E731

    unchunked = _held_for_backward(loss, [s_logits, t_logits])
    chunked = _held_for_backward(lambda: loss(chunk_size=8), [s_logits, t_logits])
    from_hidden = _held_for_backward(
        lambda: L.lm_head_chunked_divergence(name, hs, ht, weight, mask, 8), [hs, ht, weight]
    )
    assert unchunked >= 2 * one_logits  # float32 log-probs of both sides, and more
    assert chunked <= one_logits  # just the gradient w.r.t. the logits
    assert from_hidden <= b * t * h * 4 * 2  # (N, H) gradient and slices, no (., V) tensor at all


# -----------------------------------------------------------------------------
# Relations between divergences


def test_jsd_endpoints_are_the_kls():
    student, teacher, mask, _ = make_batch(seed=11)
    for tau in (0.8, 1.0):
        assert L.jsd(student, teacher, mask, beta=0.0, temperature=tau) == L.forward_kl(student, teacher, mask, tau)
        assert L.jsd(student, teacher, mask, beta=1.0, temperature=tau) == L.reverse_kl(student, teacher, mask, tau)


def test_jsd_swap_symmetry_and_bounds():
    # Swapping student and teacher while mapping beta -> 1 - beta leaves the JSD unchanged.
    student, teacher, mask, _ = make_batch(seed=12)
    a = L.jsd(student, teacher, mask, beta=0.3)
    b = L.jsd(teacher, student.detach(), mask, beta=0.7)
    assert a.item() == pytest.approx(b.item(), abs=1e-6)
    assert 0 <= L.jsd(student, teacher, mask, beta=0.5).item() <= math.log(2)


def test_topk_clip_modes_order_and_full_vocab():
    student, teacher, mask, _ = make_batch(seed=13)
    per = {
        mode: L.divergence_per_token("topk_forward_kl", student, teacher, mask, k=5, clip=0.1, clip_mode=mode)
        for mode in L.CLIP_MODES
    }
    assert torch.all(per["none"] >= per["token"]) and torch.all(per["token"] <= 0.1)
    assert torch.all(per["entry"] <= 5 * 0.1 + 1e-6)
    for tau in (0.8, 1.2):
        full = L.forward_kl(student, teacher, mask, tau)
        topk = L.topk_forward_kl(student, teacher, mask, k=V, temperature=tau, clip_mode="none")
        assert topk.item() == pytest.approx(full.item(), abs=1e-6)


def test_entry_clip_caps_each_entry():
    # One teacher-favoured token the student nearly rules out: its entry alone exceeds the cap.
    student = torch.zeros(1, 1, 4, requires_grad=True)
    teacher = torch.tensor([[[5.0, 0.0, 0.0, 0.0]]])
    with torch.no_grad():
        student[0, 0, 0] = -5.0
    mask = torch.ones(1, 1, dtype=torch.bool)
    entry = L.topk_forward_kl(student, teacher, mask, k=4, temperature=1.0, clip=0.05, clip_mode="entry")
    params = {"k": 4, "temperature": 1.0, "clip": 0.05}
    assert entry.item() == pytest.approx(
        ref_loss("topk_forward_kl", student, teacher, mask, clip_mode="entry", **params), abs=1e-6
    )
    # The capped entry loses its pull: the gradient no longer raises the teacher's top token.
    (g,) = torch.autograd.grad(entry, student)
    assert g[0, 0, 0] > 0  # descent lowers it further -- the failure DESIGN section 4 measured
    unclipped = L.topk_forward_kl(student, teacher, mask, k=4, temperature=1.0, clip_mode="none")
    (g_none,) = torch.autograd.grad(unclipped, student)
    assert g_none[0, 0, 0] < 0


def test_sampled_token_gradient_is_the_analytic_policy_gradient():
    student, teacher, mask, tokens = make_batch(seed=14)
    tau = 1.3
    loss = L.sampled_token_loss(student, teacher, mask, tokens, temperature=tau)
    (g,) = torch.autograd.grad(loss, student)

    # d/ds of -A * log softmax(s / tau)[y] with A held fixed: -A * (onehot(y) - p_S) / tau.
    s, t = student.detach().double() / tau, teacher.double() / tau
    log_ps, log_pt = s.log_softmax(-1), t.log_softmax(-1)
    y = tokens.unsqueeze(-1)
    advantage = (log_pt.gather(-1, y) - log_ps.gather(-1, y)).squeeze(-1)  # (B, T)
    onehot = F.one_hot(tokens, V).double()
    want = -advantage.unsqueeze(-1) * (onehot - log_ps.exp()) / tau / mask.sum()
    want = want * mask.unsqueeze(-1)
    torch.testing.assert_close(g.double(), want, atol=1e-6, rtol=1e-5)


# -----------------------------------------------------------------------------
# Gradient reaches the student only; numerics


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("chunk_size", [None, 2])
def test_teacher_gets_no_gradient(name, chunk_size):
    student, teacher, mask, tokens = make_batch(seed=15)
    teacher.requires_grad_()
    call(name, student, teacher, mask, tokens, chunk_size=chunk_size, **params_for(name)).backward()
    assert teacher.grad is None
    assert student.grad is not None and student.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["forward_kl", "reverse_kl", "jsd", "topk_forward_kl"])
def test_banned_tokens_give_finite_values_and_gradients(name):
    student, teacher, mask, tokens = make_batch(seed=16)
    teacher = teacher.clone()
    teacher[..., :3] = float("-inf")  # the teacher rules out three tokens everywhere
    s_banned = student.detach().clone()
    # and the student one of them (all three for reverse KL, which is +inf where the student
    # keeps mass the teacher bans): 0 * log 0 on both sides
    s_banned[..., : 3 if name == "reverse_kl" else 1] = float("-inf")
    s_banned.requires_grad_()
    params = params_for(name) | ({"clip_mode": "none"} if name == "topk_forward_kl" else {})
    loss = call(name, s_banned, teacher, mask, tokens, **params)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s_banned.grad).all()
    want = ref_loss(name, s_banned, teacher, mask, **params)
    assert loss.item() == pytest.approx(want, abs=1e-5, rel=1e-5)


def test_forward_kl_closed_form_gradient_with_banned_tokens_equals_autograd():
    # the chunked paths take forward KL's gradient in closed form; -inf on both sides must stay 0 * log 0
    student, teacher, mask, tokens = make_batch(seed=17)
    teacher = teacher.clone()
    teacher[..., :3] = float("-inf")
    banned = student.detach().clone()
    banned[..., :1] = float("-inf")
    for temperature in (1.0, 1.3):
        full = lambda s: call("forward_kl", s, teacher, mask, tokens, temperature=temperature)  # noqa: E731
        chunked = lambda s: call("forward_kl", s, teacher, mask, tokens, chunk_size=3,  # noqa: E731
                                 temperature=temperature)
        assert chunked(banned).item() == pytest.approx(full(banned).item(), abs=1e-6)
        got, want = grad_of(chunked, banned), grad_of(full, banned)
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, want, atol=1e-7, rtol=1e-5)


def test_reverse_kl_is_inf_where_the_teacher_bans_student_mass():
    student, teacher, mask, _ = make_batch(seed=17)
    teacher = teacher.clone()
    teacher[..., 0] = float("-inf")
    assert torch.isinf(L.reverse_kl(student, teacher, mask))


@pytest.mark.parametrize("name", NAMES)
def test_half_precision_inputs_are_upcast(name):
    student, teacher, mask, tokens = make_batch(seed=18, dtype=torch.bfloat16)
    got = call(name, student, teacher, mask, tokens, **params_for(name))
    assert got.dtype == torch.float32
    want = ref_loss(name, student, teacher, mask, tokens, **params_for(name))  # of the bf16 values
    assert got.item() == pytest.approx(want, abs=1e-5, rel=1e-5)
    got.backward()
    assert student.grad.dtype == torch.bfloat16


def test_float64_gradcheck():
    student, teacher, mask, tokens = make_batch(seed=19, b=3, t=3, v=5, dtype=torch.float64)
    # sampled_token is left out on purpose: its gradient is not the gradient of its value.
    for name in ["forward_kl", "reverse_kl", "jsd", "topk_forward_kl"]:
        params = params_for(name, 0.9) | ({"clip": 10.0} if name == "topk_forward_kl" else {})
        fn = lambda s: call(name, s, teacher, mask, tokens, **params)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (student,), fast_mode=True)


# -----------------------------------------------------------------------------
# Per-position values


@pytest.mark.parametrize("name", ["forward_kl", "reverse_kl", "jsd", "topk_forward_kl"])
@pytest.mark.parametrize("chunk_size", [None, 3])
def test_divergence_per_token_averages_to_the_loss(name, chunk_size):
    student, teacher, mask, _ = make_batch(seed=20)
    per = L.divergence_per_token(name, student, teacher, mask, chunk_size=chunk_size, **params_for(name))
    assert per.shape == (B, T) and not per.requires_grad
    assert torch.all(per[~mask] == 0)
    loss = L.compute_divergence(name, student, teacher, mask, **params_for(name))
    assert (per.sum() / mask.sum()).item() == pytest.approx(loss.item(), abs=1e-6)


def test_divergence_per_token_sampled_token_is_the_log_ratio():
    student, teacher, mask, tokens = make_batch(seed=21)
    per = L.divergence_per_token("sampled_token", student, teacher, mask, tokens)
    y = tokens.unsqueeze(-1)
    want = (student.detach().log_softmax(-1).gather(-1, y) - teacher.log_softmax(-1).gather(-1, y)).squeeze(-1)
    torch.testing.assert_close(per, want * mask)
    everywhere = L.divergence_per_token("forward_kl", student, teacher)  # no mask: every position
    assert torch.all(everywhere > 0)


# -----------------------------------------------------------------------------
# Bad input


def test_bad_input_raises_clear_errors():
    student, teacher, mask, tokens = make_batch(seed=22)
    with pytest.raises(ValueError, match="unknown divergence 'kl'.*forward_kl.*sampled_token"):
        L.compute_divergence("kl", student, teacher, mask)
    with pytest.raises(ValueError, match="unknown divergence"):
        L.divergence_per_token("kl", student, teacher, mask)
    with pytest.raises(ValueError, match="takes no parameter 'beta'"):
        L.compute_divergence("forward_kl", student, teacher, mask, beta=0.5)
    with pytest.raises(ValueError, match="clip_mode"):
        L.topk_forward_kl(student, teacher, mask, k=3, clip_mode="per-entry")
    with pytest.raises(ValueError, match="exceeds the vocabulary"):
        L.topk_forward_kl(student, teacher, mask, k=V + 1)
    with pytest.raises(ValueError, match="beta"):
        L.jsd(student, teacher, mask, beta=1.5)
    with pytest.raises(ValueError, match="temperature"):
        L.forward_kl(student, teacher, mask, temperature=0)
    with pytest.raises(ValueError, match="tokens"):
        L.compute_divergence("sampled_token", student, teacher, mask)
    with pytest.raises(ValueError, match="mask"):
        L.forward_kl(student, teacher, mask[:, :-1])
    with pytest.raises(ValueError, match=r"\(B, T, V\)"):
        L.forward_kl(student, teacher[..., :-1], mask)
    with pytest.raises(ValueError, match="chunk_size"):
        L.forward_kl(student, teacher, mask, chunk_size=0)


# -----------------------------------------------------------------------------
# Against TRL


def _trl_root():
    spec = importlib.util.find_spec("trl")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("trl is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _naive_selective_log_softmax(logits, index, temperature=1.0, row_mask=None):
    # The plain equivalent TRL's own docstring gives for its fused `selective_log_softmax`.
    return torch.gather((logits / temperature).log_softmax(-1), -1, index.unsqueeze(-1)).squeeze(-1)


@pytest.fixture(scope="module")
def trl_fns():
    """TRL's loss functions, executed from the installed source without importing TRL."""
    root = _trl_root()
    namespace = {"torch": torch, "F": F, "selective_log_softmax": _naive_selective_log_softmax}
    wanted = {
        "compute_divergence",
        "add_tail_bucket",
        "compute_topk_self_distillation_loss",
        "compute_full_logit_self_distillation_loss",
        "compute_sampled_token_self_distillation_loss",
    }
    found = {}
    sdft = root / "experimental" / "sdft" / "loss_utils.py"
    if sdft.exists():
        for node in ast.parse(sdft.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name in wanted:
                exec(compile(ast.Module([node], []), str(sdft), "exec"), namespace)
                found[node.name] = namespace[node.name]
    for gkd in (root / "experimental" / "gkd" / "gkd_trainer.py", root / "trainer" / "gkd_trainer.py"):
        if not gkd.exists():
            continue
        for node in ast.parse(gkd.read_text()).body:
            if isinstance(node, ast.ClassDef) and node.name == "GKDTrainer":
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name == "generalized_jsd_loss":
                        item.decorator_list = []
                        exec(compile(ast.Module([item], []), str(gkd), "exec"), namespace)
                        found["generalized_jsd_loss"] = namespace["generalized_jsd_loss"]
        break
    return found


def _need(trl_fns, name):
    if name not in trl_fns:
        pytest.skip(f"this TRL version has no {name}")
    return trl_fns[name]


@pytest.mark.parametrize("beta", [0.0, 0.2, 0.5, 0.8, 1.0])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_jsd_matches_trl_gkd(trl_fns, beta, temperature):
    trl_jsd = _need(trl_fns, "generalized_jsd_loss")
    student, teacher, mask, _ = make_batch(seed=23)
    labels = torch.where(mask, 1, -100)
    # TRL "batchmean" with labels = sum over kept positions / their count = our reduction.
    want = trl_jsd(student, teacher, labels=labels, beta=beta, temperature=temperature, reduction="batchmean")
    got = L.jsd(student, teacher, mask, beta=beta, temperature=temperature)
    assert got.item() == pytest.approx(want.item(), abs=1e-6, rel=1e-5)
    torch.testing.assert_close(torch.autograd.grad(got, student)[0], torch.autograd.grad(want, student)[0])
    # Without labels TRL's batchmean divides by B (jsd.size(0)), not by the B*T positions.
    unmasked = trl_jsd(student, teacher, beta=beta, temperature=temperature, reduction="batchmean")
    ours_all = L.jsd(student, teacher, torch.ones(B, T), beta=beta, temperature=temperature)
    assert unmasked.item() == pytest.approx(ours_all.item() * T, rel=1e-5)


@pytest.mark.parametrize("name,alpha", [("forward_kl", 0.0), ("reverse_kl", 1.0), ("jsd", 0.3), ("jsd", 0.5)])
def test_full_vocab_matches_trl_sdft(trl_fns, name, alpha):
    trl_full = _need(trl_fns, "compute_full_logit_self_distillation_loss")
    student, teacher, mask, _ = make_batch(seed=24)
    want = trl_full(student.detach(), teacher, distillation_alpha=alpha)  # (B, T), no temperature
    params = {"beta": alpha} if name == "jsd" else {}
    got = L.divergence_per_token(name, student, teacher, mask, **params)
    torch.testing.assert_close(got, want * mask, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 1.2])
def test_topk_matches_trl_sdft_on_a_shared_support(trl_fns, temperature):
    trl_topk = _need(trl_fns, "compute_topk_self_distillation_loss")
    student, teacher, mask, _ = make_batch(seed=25, v=16)
    k = 5
    # TRL 1.16 takes the *student's* top-k as support (newer versions offer topk_support="teacher").
    # Give both sides the same top-k set so the supports coincide, then compare per position.
    boost = torch.zeros(16)
    boost[[1, 4, 6, 9, 13]] = 30.0
    s = (student.detach() + boost).requires_grad_()
    t = teacher + boost
    kwargs = dict(distillation_topk=k, distillation_alpha=0.0, distillation_add_tail=False)
    want = trl_topk(s / temperature, t / temperature, **kwargs)  # (B, T); TRL has no temperature or clip here
    got = L.divergence_per_token("topk_forward_kl", s, t, mask, k=k, temperature=temperature, clip_mode="none")
    torch.testing.assert_close(got, want * mask, atol=1e-6, rtol=1e-5)
    loss = L.topk_forward_kl(s, t, mask, k=k, temperature=temperature, clip_mode="none")
    trl_loss = (want * mask).sum() / mask.sum()
    torch.testing.assert_close(torch.autograd.grad(loss, s)[0], torch.autograd.grad(trl_loss, s)[0])


def test_sampled_token_matches_trl_sdft(trl_fns):
    trl_sampled = _need(trl_fns, "compute_sampled_token_self_distillation_loss")
    student, teacher, mask, tokens = make_batch(seed=26)
    # (B, T): (log S - log T).detach() * log S, i.e. our -A * log S
    per_token = trl_sampled(student, teacher, tokens, distillation_alpha=1.0)
    want = (per_token * mask).sum() / mask.sum()
    got = L.sampled_token_loss(student, teacher, mask, tokens)
    assert got.item() == pytest.approx(want.item(), abs=1e-6)
    torch.testing.assert_close(torch.autograd.grad(got, student)[0], torch.autograd.grad(want, student)[0])


@pytest.mark.slow
def test_matches_imported_trl():
    """The same comparisons through a real import (slow: TRL pulls in transformers)."""
    _trl_root()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from trl.experimental.gkd import GKDTrainer
        from trl.experimental.sdft import loss_utils
    student, teacher, mask, tokens = make_batch(seed=27)
    labels = torch.where(mask, 1, -100)
    for beta in (0.0, 0.4, 1.0):
        want = GKDTrainer.generalized_jsd_loss(student, teacher, labels=labels, beta=beta, temperature=0.9)
        assert L.jsd(student, teacher, mask, beta=beta, temperature=0.9).item() == pytest.approx(want.item(), abs=1e-6)
    full = loss_utils.compute_full_logit_self_distillation_loss(student.detach(), teacher, distillation_alpha=0.0)
    torch.testing.assert_close(L.divergence_per_token("forward_kl", student, teacher, mask), full * mask)
    sampled = loss_utils.compute_sampled_token_self_distillation_loss
    per_token = sampled(student, teacher, tokens, distillation_alpha=1.0)
    want = (per_token * mask).sum() / mask.sum()
    assert L.sampled_token_loss(student, teacher, mask, tokens).item() == pytest.approx(want.item(), abs=1e-6)
