"""Model loading: names, devices, dtypes, the tiny random model, LoRA, and one embedded-default smoke test."""

from __future__ import annotations

import pytest
import torch

from rcsd_core.errors import InputError
from rcsd_core.modeling.models import (DEFAULT_MODEL, attach_lora, build_tiny_random, check_model, compute_precision,
                                      embedded_gguf_path, enable_checkpointing, lean_training, load_model,
                                      load_tokenizer, randomize_adapter, resolve_device, resolve_dtype)


def test_dtype_and_device_resolution():
    cpu = torch.device("cpu")
    assert resolve_dtype("auto", cpu) == torch.float32
    assert resolve_dtype("bf16") == resolve_dtype("bfloat16") == torch.bfloat16
    assert resolve_dtype("fp32") == torch.float32
    with pytest.raises(InputError, match="unknown dtype 'float8'"):
        resolve_dtype("float8")
    assert resolve_device("cpu") == cpu
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InputError, match="unknown device"):
        resolve_device("toaster")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_gpu_is_refused():
    with pytest.raises(InputError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_unknown_model_is_refused_without_download(tmp_path):
    for name in ("no-such-org/no-such-model", str(tmp_path / "missing")):
        with pytest.raises(InputError, match="unknown model") as info:
            check_model(name)
        assert info.value.field == "model"
        with pytest.raises(InputError, match="unknown model"):
            load_model(name)
    check_model("tiny-random")
    check_model(DEFAULT_MODEL)


def test_tokenizer_pads_left(tokenizer):
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token_id is not None and tokenizer.eos_token_id is not None
    assert load_tokenizer("tiny-random").get_vocab() == load_tokenizer(DEFAULT_MODEL).get_vocab()


def test_tiny_random(tiny):
    model, tokenizer = tiny
    assert not model.training and model.dtype == torch.float32
    assert model.config.vocab_size == len(tokenizer) and model.config.num_hidden_layers == 2
    assert sum(p.numel() for p in model.parameters()) < 5_000_000
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    same = build_tiny_random(tokenizer, seed=0)
    other = build_tiny_random(tokenizer, seed=1)
    w = model.model.layers[0].mlp.up_proj.weight
    assert torch.equal(same.model.layers[0].mlp.up_proj.weight, w)
    assert not torch.equal(other.model.layers[0].mlp.up_proj.weight, w)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[1, 2, 3]])).logits
    assert logits.shape == (1, 3, len(tokenizer)) and torch.isfinite(logits).all()


def test_lora_attach_and_disable():
    model, _ = load_model("tiny-random", device="cpu")
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        base = model(input_ids=ids).logits.clone()
    peft_model = attach_lora(model, rank=4, alpha=8)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    with torch.no_grad():
        assert torch.allclose(peft_model(input_ids=ids).logits, base)          # B starts at zero
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.add_(0.5)
        changed = peft_model(input_ids=ids).logits
        with peft_model.disable_adapter():
            disabled = peft_model(input_ids=ids).logits
    assert not torch.allclose(changed, base)
    assert torch.allclose(disabled, base)


@pytest.mark.slow
def test_embedded_default_smoke(one_thread):
    """Load SmolLM2-135M-Instruct (converting the GGUF into the cache on first use) and sample a few tokens."""
    from rcsd_core.contracts.messages import encode_messages
    from rcsd_core.modeling.contexts import student_messages
    from rcsd_core.modeling.generation import sample_chains

    assert embedded_gguf_path().name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    model, tokenizer = load_model(DEFAULT_MODEL, device="cpu")
    assert model.config.hidden_size == 576 and model.config.num_hidden_layers == 30
    assert model.config.vocab_size == len(tokenizer)
    ids = encode_messages(tokenizer, student_messages("What is the capital of France?"))
    samples, stats = sample_chains(model, tokenizer, [ids], n=1, max_new_tokens=6, temperature=0)
    text = samples[0].text
    assert stats.tokens == samples[0].n_tokens >= 1
    assert text.strip() and "Paris" in text                      # a real model, not random weights


def test_set_cpu_threads():
    from rcsd_core.modeling.models import DEFAULT_CPU_THREADS, set_cpu_threads

    before = torch.get_num_threads()
    try:
        assert set_cpu_threads(1) == 1 and torch.get_num_threads() == 1
        torch.set_num_threads(before)
        chosen = set_cpu_threads(None, torch.device("cpu"))
        assert 1 <= chosen <= max(before, DEFAULT_CPU_THREADS) and torch.get_num_threads() == chosen
        torch.set_num_threads(before)
        assert set_cpu_threads(None, torch.device("cuda")) is None and torch.get_num_threads() == before
    finally:
        torch.set_num_threads(before)


def test_compute_precision_runs_a_float32_adapter_in_bf16_and_keeps_its_weights_float32():
    model, _ = load_model("tiny-random", device="cpu", dtype="bfloat16")
    lora = attach_lora(model, rank=4, alpha=8)
    adapter = [p for p in lora.parameters() if p.requires_grad]
    assert adapter and all(p.dtype == torch.float32 for p in adapter)         # peft keeps the adapter float32
    randomize_adapter(lora, std=0.05)
    ids = torch.randint(5, 1000, (2, 7), generator=torch.Generator().manual_seed(1))
    seen = []
    hook = lora.base_model.model.model.layers[0].self_attn.q_proj.lora_A["default"].register_forward_hook(
        lambda module, args, out: seen.append((args[0].dtype, out.dtype)))
    plain = lora(input_ids=ids).logits.float()
    with compute_precision(lora):
        mixed = lora(input_ids=ids).logits.float()
        with torch.no_grad():  # an in-place update inside the block is seen by the next forward (no cached copy)
            lora.base_model.model.model.layers[0].self_attn.q_proj.lora_B["default"].weight.mul_(3)
            updated = lora(input_ids=ids).logits.float()
    hook.remove()
    assert seen[0] == (torch.float32, torch.float32)                           # peft's own: cast to float32
    assert seen[1] == (torch.bfloat16, torch.bfloat16)                         # inside: bf16 in, bf16 out
    assert (mixed - plain).abs().max() < 0.05 * plain.abs().max()
    assert not torch.equal(updated, mixed)
    with compute_precision(lora):
        mixed_loss = lora(input_ids=ids).logits.float().square().mean()
    mixed_loss.backward()                                                      # the backward after the block
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in adapter)
    assert not torch.is_autocast_enabled("cpu")


def test_compute_precision_leaves_a_float32_model_alone():
    model, _ = load_model("tiny-random", device="cpu", dtype="float32")
    with compute_precision(attach_lora(model, rank=4, alpha=8)):
        assert not torch.is_autocast_enabled("cpu")


def test_the_lean_student_pass_gives_the_same_gradients_with_activation_checkpointing():
    # The recompute runs the forward again inside the backward: lean_training must cover both.
    model, _ = load_model("tiny-random", device="cpu", dtype="bfloat16")
    lora = attach_lora(model, rank=4, alpha=8).train()
    randomize_adapter(lora, std=0.05)
    ids = torch.randint(5, 1000, (2, 9), generator=torch.Generator().manual_seed(1))

    def gradients() -> dict[str, torch.Tensor]:
        lora.zero_grad(set_to_none=True)
        with lean_training(lora):
            with compute_precision(lora):
                assert any("forward" in m.__dict__ for m in lora.modules() if hasattr(m, "lora_A"))
                loss = lora(input_ids=ids).logits.float().square().mean()
            loss.backward()
        return {name: p.grad.clone() for name, p in lora.named_parameters() if p.requires_grad}

    plain = gradients()
    enable_checkpointing(lora)
    recomputed = gradients()
    assert plain.keys() == recomputed.keys()
    for name in plain:
        torch.testing.assert_close(recomputed[name], plain[name], rtol=0.05, atol=1e-4)
    assert not any("forward" in m.__dict__ for m in lora.modules())            # peft's forward is back
