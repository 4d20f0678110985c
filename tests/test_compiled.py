"""The student's passes through compiled decoder layers (`modeling.compiled`, config `student_compile`).

On the tiny Llama with a LoRA adapter on every linear, float32, activations recomputed in the backward
(as the gpu-lora preset trains): the compiled pass gives the eager hidden states and adapter gradients
within rounding, the layers run their own forward again after the block, and a round with
`student_compile: true` trains through them. Run: pytest -q tests/test_compiled.py
"""

from __future__ import annotations

import pytest
import torch

from rcsd_core.modeling import compiled
from rcsd_core.modeling.batching import pack_chains
from rcsd_core.modeling.compiled import CompiledLayers
from rcsd_core.modeling.divergence import completion_hidden
from rcsd_core.modeling.models import checkpointing_enabled, enable_checkpointing
from rcsd_core.training import objectives

from test_sampler import with_adapter
from test_train import losses_and_texts, make_run


def student_pass(model, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Final hidden states at the completions and the adapter's gradients of a squared-mean loss."""
    model.zero_grad(set_to_none=True)
    hidden = completion_hidden(model, batch)
    hidden.square().mean().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
    return hidden.detach(), grads


@pytest.mark.slow
def test_compiled_layers_give_the_eager_pass_and_hand_the_layers_back(tiny, tokenizer, monkeypatch):
    graphs = []

    def inductor(graph, example_inputs):           # inductor, counting the graphs it is given
        graphs.append(graph)
        return torch._dynamo.lookup_backend("inductor")(graph, example_inputs)

    monkeypatch.setattr(compiled, "BACKEND", inductor)
    model = with_adapter(tiny[0], seed=3).train()
    enable_checkpointing(model)
    assert checkpointing_enabled(model)
    prompts = [tokenizer.encode("What is 2 + 3?"), tokenizer.encode("Name a prime.")]
    completions = [[5, 6, 7, 8], [9, 10, 11], [12, 13, 14, 15, 16], [17, 18]]
    batch = pack_chains([prompts[0], prompts[0], prompts[1], prompts[1]], completions, tokenizer.pad_token_id)
    eager = student_pass(model, batch)
    layers = CompiledLayers(model)
    with layers.active():
        assert all("forward" in layer.__dict__ for layer in layers.layers)
        compiled_run = student_pass(model, batch)
    assert all("forward" not in layer.__dict__ for layer in layers.layers)      # the class's own forward again
    assert graphs, "dynamo traced no layer"
    torch.testing.assert_close(compiled_run[0], eager[0], rtol=1e-4, atol=1e-5)
    assert compiled_run[1].keys() == eager[1].keys() and len(eager[1]) > 0
    for name, grad in eager[1].items():
        assert grad.abs().sum() > 0, name
        torch.testing.assert_close(compiled_run[1][name], grad, rtol=1e-3, atol=1e-6)
    first = layers._compiled
    with layers.active():                       # later steps reuse what was compiled
        student_pass(model, batch)
    assert layers._compiled is first


@pytest.mark.slow
def test_a_round_with_student_compile_trains_through_the_compiled_layers(tmp_path, monkeypatch):
    """The round's student passes run inside CompiledLayers.active, through graphs dynamo traced (run as
    traced here, to spare this CPU inductor's code generation), and give the eager round's chains and losses."""
    graphs = []

    def traced(graph, example_inputs):
        graphs.append(graph)
        return graph.forward

    monkeypatch.setattr(compiled, "BACKEND", traced)
    entered = []
    original = CompiledLayers.active

    def active(self):
        entered.append(len(self.layers))
        return original(self)

    monkeypatch.setattr(objectives.CompiledLayers, "active", active)
    results = {}
    for on in (False, True):
        entered.clear()
        graphs.clear()
        run_dir = make_run(tmp_path, run_id=f"compile-{on}", student_compile=on, gradient_checkpointing=True,
                           temperature=0, steps=2, eval_every=0)
        results[on] = (*losses_and_texts(run_dir), list(entered), len(graphs))
    assert results[False][2] == [] and results[False][3] == 0
    assert len(results[True][2]) >= 2 and min(results[True][2]) > 0 and results[True][3] > 0
    assert results[True][1] == results[False][1] and len(results[True][1]) > 0
    assert results[True][0] == pytest.approx(results[False][0], rel=1e-4, abs=1e-6)


def test_in_bf16_the_lean_training_forward_compiles_once_for_every_step(tiny, monkeypatch):
    # lean_training swaps each adapted linear's forward in at every entry (adapters.trained_lean): the
    # compiled layers, which inline those forwards, must not be traced again for the next step.
    from rcsd_core.modeling.models import compute_precision, lean_training
    from test_sampler import bf16_with_adapter

    graphs = []

    def traced(graph, example_inputs):
        graphs.append(graph)
        return graph.forward

    monkeypatch.setattr(compiled, "BACKEND", traced)
    model = bf16_with_adapter(tiny[0], seed=3).train()
    ids = torch.randint(5, 1000, (2, 9), generator=torch.Generator().manual_seed(1))
    layers, counts = CompiledLayers(model), []
    for _ in range(3):
        with layers.active(), lean_training(model):
            with compute_precision(model):
                assert any("forward" in m.__dict__ for m in model.modules() if hasattr(m, "lora_A"))  # lean
                loss = model(input_ids=ids).logits.float().square().mean()
            loss.backward()
        counts.append(len(graphs))
    assert counts[0] > 0 and counts == [counts[0]] * 3, counts
