"""Distillation rounds end to end on a tiny random model: every method, teacher kinds, divergences,
stop and exact resume, a crash, a detached launch stopped from outside, and the CLI; then the
round's parts (rcsd_core/training/: teacher, objectives, checkpoints, metrics, schedule).

    PYTHONPATH=$PWD python -m pytest -q tests/test_train.py
"""

import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from rcsd_core.contracts import runs
from rcsd_core.contracts.config import config_from_data, resolve_paths
from rcsd_core.errors import InputError
from rcsd_core.modeling.batching import pack_batch
from rcsd_core.modeling.divergence import completion_hidden, teacher_hidden
from rcsd_core.modeling.models import checkpointing_enabled, enable_checkpointing
from rcsd_core.training import checkpoints
from rcsd_core.training.round import Round, train_round
from rcsd_core.training.schedule import lr_factor, step_tasks

BASE = {"model": "tiny-random", "rubric": "sample_rubrics/arithmetic.yaml",
        "tasks": "sample_rubrics/arithmetic.tasks.jsonl", "method": "rcsd", "steps": 3, "prompts_per_step": 2,
        "samples_per_prompt": 2, "max_new_tokens": 8, "seed": 0, "eval_every": 2, "eval_tasks": 2,
        "eval_samples": 1, "checkpoint_every": 0, "threads": 1, "device": "cpu"}
CRITERIA = ["final-answer-line", "correct-answer", "shows-equation", "concise", "restates-rubric"]


def tiny_config(**overrides):
    return resolve_paths(config_from_data({**BASE, **overrides}))


def make_run(tmp_path, run_id="run", **overrides) -> Path:
    return runs.create_run(tiny_config(**overrides), tmp_path / "runs", run_id=run_id)


def losses_and_texts(run_dir: Path) -> tuple[list[float], list[str]]:
    """Train the run to its end; its per-step losses and its chains' texts."""
    assert train_round(run_dir)["status"] == "done"
    losses = list(runs.read_metrics(run_dir)["train/loss"].dropna())
    return losses, [r["text"] for r in runs.read_samples(run_dir)]


def adapter_weights(run_dir: Path) -> dict:
    return load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))


# ---------------------------------------------------------------------------- whole rounds


@pytest.mark.parametrize("method", ["rcsd", "opsd", "rejection_sft"])
def test_three_step_round_of_each_method(tmp_path, method):
    run_dir = make_run(tmp_path, method=method)
    started = time.perf_counter()
    result = train_round(run_dir)
    assert time.perf_counter() - started < 60
    assert result["status"] == "done" and result["step"] == 3
    assert (run_dir / "config.yaml").is_file()
    assert runs.read_status(run_dir)["status"] == "done"
    metrics = runs.read_metrics(run_dir)
    assert list(metrics["step"]) == [0, 1, 2, 3]
    train_rows = metrics[metrics.step > 0]
    for cid in CRITERIA:
        assert train_rows[f"criterion/{cid}"].notna().all()
        assert metrics.loc[metrics.step.isin([0, 2, 3]), f"eval/criterion/{cid}"].notna().all()
    for key in ["train/loss", "train/total", "train/tokens_per_s", "train/completion_tokens", "memory/peak_gib",
                "time/sampling_s", "time/teacher_s", "time/student_s", "time/optimizer_s", "lr", "eval/total",
                "eval/divergence"]:
        assert key in metrics.columns, key
    assert train_rows["train/loss"].map(lambda v: v == v and v >= 0).all()
    if method != "rejection_sft":
        assert train_rows["train/divergence"].notna().all()
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert (run_dir / "adapter" / "adapter_config.json").is_file()
    assert json.loads((run_dir / "adapter" / "checkpoint.json").read_text())["step"] == 3
    samples = runs.read_samples(run_dir)
    train_chains = [s for s in samples if s["kind"] == "train"]
    assert len(train_chains) == 3 * 2 * 2 and all("scores" in s and "total" in s for s in train_chains)
    if method == "rejection_sft":
        assert sum(bool(s.get("chosen")) for s in train_chains) == 3 * 2
    assert "round done" in (run_dir / "log.txt").read_text()


@pytest.mark.parametrize("overrides", [
    {"teacher": "live", "divergence": "topk_forward_kl", "clip_mode": "entry"},
    {"teacher": "ema", "ema_decay": 0.5, "divergence": "jsd", "beta": 0.5},
    {"teacher": "frozen", "divergence": "sampled_token", "teacher_analysis": True, "teacher_reference": True},
], ids=["live-topk", "ema-jsd", "frozen-sampled-analysis"])
def test_teacher_kinds_and_divergences_run(tmp_path, overrides):
    run_dir = make_run(tmp_path, steps=2, eval_every=0, **overrides)
    assert train_round(run_dir)["status"] == "done"
    metrics = runs.read_metrics(run_dir)
    assert metrics.loc[metrics.step > 0, "train/divergence"].notna().all()
    weights = adapter_weights(run_dir)
    assert any(w.abs().sum() > 0 for k, w in weights.items() if "lora_B" in k)  # the adapter moved


@pytest.mark.parametrize("method", ["rcsd", "rejection_sft"])
def test_gradient_checkpointing_trains_the_same_adapter(tmp_path, method):
    common = dict(steps=2, eval_every=0, method=method, micro_batch_size=2)
    plain = make_run(tmp_path, "plain", **common)
    recomputed = make_run(tmp_path, "recomputed", gradient_checkpointing=True, **common)
    for run_dir, expected in ((plain, False), (recomputed, True)):
        round_ = Round(run_dir)
        round_.setup()
        assert checkpointing_enabled(round_.model) is expected
        round_.cleanup()
    assert train_round(plain)["status"] == "done" and train_round(recomputed)["status"] == "done"
    a, b = runs.read_metrics(plain), runs.read_metrics(recomputed)
    assert a["train/loss"].iloc[1:].tolist() == pytest.approx(b["train/loss"].iloc[1:].tolist(), rel=1e-5)
    wa, wb = adapter_weights(plain), adapter_weights(recomputed)
    assert wa.keys() == wb.keys()
    assert any(wa[k].abs().sum() > 0 for k in wa if "lora_B" in k)  # the adapter moved
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-6)


def test_stop_then_resume_equals_the_straight_round(tmp_path, monkeypatch):
    common = dict(steps=4, eval_every=0, teacher="ema", lr_schedule="cosine", warmup_steps=1)
    straight = make_run(tmp_path, "straight", **common)
    split = make_run(tmp_path, "split", **common)
    train_round(straight)

    original = Round.train_step

    def stop_during_step_two(self, step):
        out = original(self, step)
        if step == 2:
            (self.run_dir / runs.STOP_FILE).write_text("stop\n")
        return out

    monkeypatch.setattr(Round, "train_step", stop_during_step_two)
    assert train_round(split)["status"] == "stopped"
    status = runs.read_status(split)
    assert status["status"] == "stopped" and status["step"] == 2
    assert json.loads((split / "adapter" / "checkpoint.json").read_text())["step"] == 2
    assert not (split / runs.STOP_FILE).exists()  # the request was answered
    monkeypatch.setattr(Round, "train_step", original)
    assert train_round(split, resume=True)["status"] == "done"

    a, b = runs.read_metrics(straight), runs.read_metrics(split)
    assert list(b["step"]) == [0, 1, 2, 3, 4]  # no repeated or lost step
    assert b["train/loss"].iloc[1:].tolist() == a["train/loss"].iloc[1:].tolist()
    wa, wb = adapter_weights(straight), adapter_weights(split)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_crash_sets_failed_with_the_error_and_traceback(tmp_path, monkeypatch):
    run_dir = make_run(tmp_path, steps=2, eval_every=0)

    def explode(self, step):
        raise RuntimeError("boom at step %d" % step)

    monkeypatch.setattr(Round, "train_step", explode)
    with pytest.raises(RuntimeError, match="boom"):
        train_round(run_dir)
    status = runs.read_status(run_dir)
    assert status["status"] == "failed" and "RuntimeError: boom at step 1" in status["error"]
    log = (run_dir / "log.txt").read_text()
    assert "Traceback" in log and "boom at step 1" in log


class _OpensAFile:
    """Unpickled with pickle's full powers this calls open(marker, "w"): proof that a file was executed."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_resume_refuses_a_training_state_holding_a_pickled_object(tmp_path):
    run_dir = make_run(tmp_path, steps=1, eval_every=0)
    train_round(run_dir)
    state_file = run_dir / "adapter" / checkpoints.STATE_FILE
    state = torch.load(state_file, weights_only=True)  # what rcsd writes loads weights-only
    marker = tmp_path / "executed"
    torch.save({**state, "optimizer": _OpensAFile(marker)}, state_file)
    with pytest.raises(InputError, match="refusing to load") as caught:
        train_round(run_dir, resume=True)
    assert not marker.exists()  # refused, not executed
    assert str(state_file) in str(caught.value)
    status = runs.read_status(run_dir)
    assert status["status"] == "failed" and "refusing to load" in status["error"]


@pytest.mark.parametrize("staging_complete", [True, False], ids=["newer-staging", "half-written-staging"])
def test_a_crash_between_the_checkpoint_renames_loses_no_checkpoint(tmp_path, monkeypatch, staging_complete):
    common = dict(steps=3, eval_every=0, checkpoint_every=1, teacher="ema", ema_decay=0.5)
    straight = make_run(tmp_path, "straight", **common)
    crashed = make_run(tmp_path, "crashed", **common)
    train_round(straight)

    real_replace = os.replace

    def crash_before_the_second_rename(src, dst):
        # step 2's save: adapter/ (step 1) is already .adapter.old, .adapter.tmp (step 2) not yet adapter/
        if Path(src).name == checkpoints.STAGING_DIR and (Path(dst).parent / checkpoints.OLD_DIR).exists():
            raise OSError("simulated crash between the two renames")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_before_the_second_rename)
    with pytest.raises(OSError, match="simulated crash"):
        train_round(crashed)
    monkeypatch.setattr(os, "replace", real_replace)
    assert not (crashed / "adapter").exists()
    staging, old = crashed / checkpoints.STAGING_DIR, crashed / checkpoints.OLD_DIR
    assert checkpoints.checkpoint_step(staging) == 2 and checkpoints.checkpoint_step(old) == 1
    if not staging_complete:  # a crash while writing the staging folder: checkpoint.json (written last) missing
        (staging / checkpoints.CHECKPOINT_FILE).unlink()

    assert train_round(crashed, resume=True)["status"] == "done"
    recovered = 2 if staging_complete else 1
    log = (crashed / "log.txt").read_text()
    assert f"recovered the checkpoint of step {recovered}" in log and f"resuming after step {recovered} of 3" in log
    a, b = runs.read_metrics(straight), runs.read_metrics(crashed)
    assert list(b["step"]) == [0, 1, 2, 3]  # no repeated or lost step
    assert b["train/loss"].iloc[1:].tolist() == a["train/loss"].iloc[1:].tolist()
    wa, wb = adapter_weights(straight), adapter_weights(crashed)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not staging.exists() and not old.exists()


def test_detached_round_outlives_its_launcher_and_stops_on_request(tmp_path):
    run_dir = make_run(tmp_path, steps=200, eval_every=0, checkpoint_every=0, eval_tasks=1)
    pid = runs.launch_round(run_dir)
    try:
        _launch_then_stop(run_dir, pid)
    finally:
        if runs.pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def _launch_then_stop(run_dir, pid):
    assert runs.read_status(run_dir)["pid"] == pid
    deadline = time.time() + 120
    while time.time() < deadline:
        status = runs.read_status(run_dir)
        if status["status"] == "failed":
            pytest.fail(runs.tail_log(run_dir))
        if status["status"] == "running" and status["step"] >= 1:
            break
        time.sleep(0.5)
    assert runs.request_stop(run_dir)
    while time.time() < deadline and runs.read_status(run_dir)["status"] == "running":
        time.sleep(0.5)
    status = runs.read_status(run_dir)
    assert status["status"] == "stopped", runs.tail_log(run_dir)
    assert 1 <= status["step"] < 200
    assert json.loads((run_dir / "adapter" / "checkpoint.json").read_text())["step"] == status["step"]
    steps = list(runs.read_metrics(run_dir)["step"])
    assert steps == list(range(0, status["step"] + 1))
    assert "SIGTERM" in runs.tail_log(run_dir, 200)


def test_cli_train_status_and_a_bad_model(tmp_path, capsys):
    from rcsd_core.cli import main

    cfg = tmp_path / "round.yaml"
    cfg.write_text(yaml.safe_dump({**BASE, "steps": 1, "eval_every": 0, "model": "no/such-model"}))
    assert main(["train", "--config", str(cfg), "--run-dir", str(tmp_path / "runs" / "bad")]) == 2
    status = runs.read_status(tmp_path / "runs" / "bad")
    assert status["status"] == "failed" and "no/such-model" in status["error"]
    assert main(["status", "--run-dir", str(tmp_path / "runs" / "bad")]) == 1
    assert '"failed"' in capsys.readouterr().out

    cfg.write_text(yaml.safe_dump({**BASE, "steps": 1, "eval_every": 0}))
    assert main(["train", "--config", str(cfg), "--run-dir", str(tmp_path / "runs" / "ok")]) == 0
    assert main(["status", "--run-dir", str(tmp_path / "runs" / "ok")]) == 0
    assert '"done"' in capsys.readouterr().out
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2


# ---------------------------------------------------------------------------- pieces


def test_batch_layout_aligns_completions_whatever_the_padding():
    from rcsd_core.modeling.models import load_model

    model, tokenizer = load_model("tiny-random", device="cpu")
    prompts = [[1, 2, 3, 4, 5], [6, 7]]
    completions = [[8, 9], [10, 11, 12, 13]]
    batch = pack_batch(prompts, completions, tokenizer.pad_token_id)
    assert batch.mask.tolist() == [[True, True, False, False], [True, True, True, True]]
    assert batch.tokens[1].tolist() == [10, 11, 12, 13]
    with torch.no_grad():
        together = completion_hidden(model, batch)
        for i in range(2):
            alone = completion_hidden(model, pack_batch([prompts[i]], [completions[i]], tokenizer.pad_token_id))
            n = len(completions[i])
            assert torch.allclose(together[i, :n], alone[0, :n], atol=1e-4)
        # position P-1+i predicts completion token i: compare with the model's own logits
        full = torch.tensor([prompts[1] + completions[1]])
        logits = model(input_ids=full).logits[0, len(prompts[1]) - 1:-1]
        head = model.get_output_embeddings()
        assert torch.allclose(head(together[1]), logits, atol=1e-4)


def test_shared_prompts_run_once_and_give_the_same_hidden_states_and_gradients():
    from rcsd_core.modeling.batching import pack_chains, pack_shared
    from rcsd_core.modeling.models import attach_lora, load_model, randomize_adapter

    model, tokenizer = load_model("tiny-random", device="cpu", dtype="float32")
    lora = attach_lora(model, rank=4, alpha=8)
    randomize_adapter(lora, std=0.05, seed=3)  # a nonzero adapter, so its gradients are not trivially zero
    pad = tokenizer.pad_token_id
    a, b = [1, 2, 3, 4, 5], [6, 7]
    prompts = [a, b, a, a, b]                                     # chains of two prompts, interleaved
    completions = [[8, 9, 10], [11], [12, 13], [14, 15, 16, 17], [18, 19]]
    shared = pack_shared(prompts, completions, pad)
    plain = pack_batch(prompts, completions, pad)
    assert shared.ids.shape == (2, len(a) + 2 + 1 + 3)            # [a | 8 9 | 12 | 14 15 16], one row per prompt
    assert torch.equal(shared.mask, plain.mask) and torch.equal(shared.tokens, plain.tokens)
    assert isinstance(pack_chains(prompts, completions, pad), type(shared))
    assert isinstance(pack_chains([a, b], completions[:2], pad), type(plain))   # nothing shared: the plain layout

    def hidden_and_grads(batch):
        lora.zero_grad()
        h = completion_hidden(lora, batch)
        (h[plain.mask].square().sum()).backward()
        return h.detach(), [p.grad.clone() for p in lora.parameters() if p.requires_grad]

    lora.train()
    h_shared, g_shared = hidden_and_grads(shared)
    h_plain, g_plain = hidden_and_grads(plain)
    torch.testing.assert_close(h_shared[plain.mask], h_plain[plain.mask], rtol=1e-4, atol=1e-5)
    for mine, theirs in zip(g_shared, g_plain):  # float32 sums in another order: close to the largest entry
        assert (mine - theirs).abs().max() <= 1e-3 * theirs.abs().max(), (mine - theirs).abs().max()
    assert any(g.abs().sum() > 0 for g in g_shared)


def test_teacher_hidden_with_a_shared_prefix_equals_the_full_forward(tiny, arith_rubric, arith_tasks):
    import copy

    from peft import LoraConfig, get_peft_model

    from rcsd_core.modeling.contexts import teacher_prompt_ids
    from rcsd_core.modeling.generation import PrefixCache

    model, tokenizer = tiny
    tasks = arith_tasks[:3]
    prompts = [teacher_prompt_ids(tokenizer, t, arith_rubric) for t in tasks]
    prompts.append(prompts[0])  # two chains of one task
    assert len({len(p) for p in prompts}) > 1  # the rests differ in length: padding between prefix and rest
    completions = [[100, 200, 300], [400], [500, 600, 700, 800, 900], [10, 20]]
    pad = tokenizer.pad_token_id
    peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, target_modules="all-linear"))
    recomputing = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, target_modules="all-linear"))
    enable_checkpointing(recomputing)
    recomputing.train()  # as in a round: checkpointed layers in training mode would drop a cache
    for m in (model, peft_model, recomputing):
        rows = []
        hook = m.get_input_embeddings().register_forward_hook(lambda module, args, out: rows.append(len(args[0])))
        with torch.no_grad():
            full = completion_hidden(m, pack_batch(prompts, completions, pad))
            shared = teacher_hidden(m, prompts, completions, pad)
        hook.remove()
        assert rows[-1] == 3                  # one row per distinct prompt: the two chains of one task share it
        with torch.no_grad():
            kept = PrefixCache(m)                                   # a frozen teacher's: kept between calls
            again = [teacher_hidden(m, prompts, completions, pad, prefixes=kept) for _ in range(2)]
        mask = pack_batch(prompts, completions, pad).mask
        assert shared.shape == full.shape
        torch.testing.assert_close(shared[mask], full[mask], rtol=1e-4, atol=1e-4)
        assert len(kept.caches) == 1                                # run once, used twice
        for hidden in again:
            torch.testing.assert_close(hidden[mask], full[mask], rtol=1e-4, atol=1e-4)
        with torch.no_grad():                                       # no prompt repeated: one row per chain
            distinct = teacher_hidden(m, prompts[:3], completions[:3], pad)
        torch.testing.assert_close(distinct[mask[:3]], full[:3][mask[:3]], rtol=1e-4, atol=1e-4)
    assert recomputing.training  # left as it was
    with torch.no_grad():  # nothing shared worth a second forward: the plain path
        one = teacher_hidden(model, prompts[:1], completions[:1], pad)
    assert one.shape[:2] == (1, 3)


def test_a_cache_that_keeps_only_its_prefix_gives_the_growing_caches_logits(tiny):
    from rcsd_core.modeling.generation import cache_keyword, kept_prefix_only, prefix_cache

    model, _ = tiny
    prefix, keyword = list(range(5, 25)), cache_keyword(model)
    rest = torch.tensor([[30, 31, 32, 33], [40, 41, 42, 43]])
    positions = torch.arange(20, 24).expand(2, -1)
    with torch.no_grad():
        want = model(input_ids=rest, position_ids=positions, use_cache=True,
                     **{keyword: prefix_cache(model, prefix, 2)}).logits
        cache = kept_prefix_only(prefix_cache(model, prefix, 2), 2)
        got = model(input_ids=rest, position_ids=positions, use_cache=True, **{keyword: cache}).logits
        one_row = kept_prefix_only(prefix_cache(model, prefix), 2)     # read by both rows, not repeated
        shared = model(input_ids=rest, position_ids=positions, use_cache=True, **{keyword: one_row}).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    torch.testing.assert_close(shared, want, rtol=0, atol=1e-6)
    assert cache.get_seq_length() == one_row.get_seq_length() == len(prefix)   # the forward's own were not kept
    assert one_row.layers[0].keys.shape[0] == 1
    other = prefix_cache(model, prefix)                     # a layer of a kind it does not patch (sliding windows)
    other.layers[0].__class__ = type("SlidingLayer", (type(other.layers[0]),), {})
    kept_prefix_only(other, 2)
    assert other.layers[1].keys.shape[0] == 2 and "update" not in vars(other.layers[1])   # repeated, grows as usual
    with torch.no_grad():
        grown = model(input_ids=rest, position_ids=positions, use_cache=True, **{keyword: other}).logits
    torch.testing.assert_close(grown, want, rtol=0, atol=1e-6)


def test_learning_rate_schedules():
    cfg = tiny_config(steps=10, warmup_steps=2, lr_schedule="cosine", min_lr_ratio=0.1)
    factors = [lr_factor(s, cfg) for s in range(1, 11)]
    assert factors[:3] == [0.5, 1.0, 1.0] and abs(factors[-1] - 0.1) < 1e-9
    assert all(a >= b for a, b in zip(factors[1:], factors[2:]))
    assert {lr_factor(s, tiny_config(steps=5, lr_schedule="constant")) for s in range(1, 6)} == {1.0}


def test_step_prompts_cycle_through_every_train_task_each_epoch():
    from rcsd_core.contracts.tasks import load_tasks

    cfg = tiny_config(prompts_per_step=4, seed=3)
    train = load_tasks(cfg.tasks, split="train")
    steps_per_epoch = len(train) // 4
    seen = [t.id for s in range(1, steps_per_epoch + 1) for t in step_tasks(train, cfg, s)]
    assert sorted(seen) == sorted(t.id for t in train)
    assert step_tasks(train, cfg, 1) == step_tasks(train, cfg, 1)
    assert [t.id for t in step_tasks(train, tiny_config(prompts_per_step=4, seed=4), 1)] != seen[:4]


def test_teacher_kinds_put_their_weights_in_place_and_back(tiny, arith_rubric, arith_tasks):
    import copy

    from rcsd_core.modeling.models import attach_lora
    from rcsd_core.training.teacher import Teacher

    model, tokenizer = tiny
    torch.manual_seed(0)
    peft_model = attach_lora(copy.deepcopy(model), rank=2, alpha=4)
    config = tiny_config(teacher="ema", ema_decay=0.75)
    teacher = Teacher(peft_model, tokenizer, arith_rubric, config)
    name, param = next((n, p) for n, p in teacher.named_params if "lora_B" in n)
    start = param.detach().clone()  # lora_B starts at zero
    with torch.no_grad():
        param.add_(1.0)
    teacher.update()  # ema = 0.75 * start + 0.25 * (start + 1)
    torch.testing.assert_close(teacher.ema[name], start + 0.25)
    with teacher.weights():
        assert not torch.is_grad_enabled()
        torch.testing.assert_close(param, start + 0.25)
    torch.testing.assert_close(param, start + 1.0)  # the current weights are back
    state = teacher.state_dict()
    assert set(state) == {"ema", "analysis"}

    frozen = Teacher(peft_model, tokenizer, arith_rubric, tiny_config(teacher="frozen"))
    ids = torch.tensor([frozen.prompt(arith_tasks[0])])
    with torch.no_grad():
        base = model(input_ids=ids).logits
        with frozen.weights():
            torch.testing.assert_close(peft_model(input_ids=ids).logits, base)  # adapter disabled
        assert not torch.allclose(peft_model(input_ids=ids).logits, base)  # and enabled again


def test_rejection_sft_picks_the_best_chain_of_each_prompt():
    from types import SimpleNamespace

    from rcsd_core.training.objectives import best_chains, micro_batches

    samples = [SimpleNamespace(prompt_index=p) for p in (0, 0, 0, 1, 1)]
    records = [{"total": 0.2}, {"total": 0.5}, {"total": 0.5}, {"total": None}, {"total": -0.1}]
    assert best_chains(samples, records) == [1, 4]  # ties: the first sampled; unscored counts as -inf
    assert best_chains(samples[3:4], records[3:4]) == [0]
    assert micro_batches(5, 2) == [(slice(0, 2), False), (slice(2, 4), False), (slice(4, 6), True)]


def test_metrics_writer_lines_and_truncation(tmp_path):
    from rcsd_core.training.metrics import MetricsWriter, format_metrics

    run_dir = runs.create_run(tiny_config(), tmp_path / "runs", run_id="m")
    writer = MetricsWriter(run_dir)
    for step in (0, 1, 2):
        writer.write({"step": step, "train/loss": 0.5 / (step + 1)}, [{"id": f"{step}:a", "step": step}])
    assert runs.read_status(run_dir)["step"] == 2
    writer.truncate(1)
    assert list(runs.read_metrics(run_dir)["step"]) == [0, 1]
    assert [r["id"] for r in runs.read_samples(run_dir)] == ["0:a", "1:a"]
    MetricsWriter(run_dir, enabled=False).write({"step": 9}, [{"id": "x", "step": 9}])  # not rank 0: nothing
    assert list(runs.read_metrics(run_dir)["step"]) == [0, 1]
    assert format_metrics({"step": 3, "train/loss": 0.123456, "eval/total": 0.5, "time/step_s": None}) == \
        "step 3 loss=0.1235 eval/total=0.5"


def test_a_round_longer_than_the_models_context_fails_before_sampling(tmp_path, monkeypatch):
    """tiny-random has 4096 positions: 4,000 new tokens after a ~400-token teacher prompt do not fit."""
    import rcsd_core.training.rollouts as rollouts

    monkeypatch.setattr(rollouts.Rollouts, "sample", lambda *a, **k: pytest.fail("sampled before the check"))
    run_dir = make_run(tmp_path, max_new_tokens=4000)
    with pytest.raises(InputError, match=r"exceeds the model's context of 4096 tokens; lower max_new_tokens"):
        train_round(run_dir)
    status = runs.read_status(run_dir)
    assert status["status"] == "failed" and "max_new_tokens" in status["error"]


def test_a_round_with_the_static_sampler_gives_the_reference_losses_when_greedy(tmp_path):
    """temperature 0: the static-cache sampler draws the chains generate() draws, so every loss matches."""
    results = {}
    for sampler in ("generate", "static"):
        run_dir = make_run(tmp_path, run_id=sampler, sampler=sampler, temperature=0, steps=2, eval_every=0)
        results[sampler] = losses_and_texts(run_dir)
    (loss_g, texts_g), (loss_s, texts_s) = results["generate"], results["static"]
    assert texts_s == texts_g and len(texts_g) > 0
    assert loss_s == pytest.approx(loss_g, rel=1e-5, abs=1e-7)


def test_sampler_compile_reaches_the_sampler_and_the_compiled_step_draws_the_same_chains(tmp_path, monkeypatch):
    """`sampler_compile` makes the round's Sampler trace its decode step; with dynamo's eager backend
    standing in for inductor (minutes on this CPU), the round's chains and losses are the static ones."""
    from rcsd_core.modeling import sampler as sampler_module
    from rcsd_core.training import rollouts

    asked = []

    class Recording(sampler_module.Sampler):
        def __init__(self, model, tokenizer, *, compile=False, **kw):
            asked.append(compile)
            super().__init__(model, tokenizer, compile="eager" if compile is True else compile, **kw)

    monkeypatch.setattr(rollouts, "Sampler", Recording)
    traced = []
    original = sampler_module.Decoder.__init__

    def remember(self, *args, **kw):
        original(self, *args, **kw)
        traced.append(self.step_fn != self.step)          # bound methods compare by function and self

    monkeypatch.setattr(sampler_module.Decoder, "__init__", remember)
    results = {}
    for compile in (False, True):
        run_dir = make_run(tmp_path, run_id=f"compile-{compile}", sampler="static", sampler_compile=compile,
                           temperature=0, steps=2, eval_every=0)
        results[compile] = losses_and_texts(run_dir)
    assert asked == [False, True] and traced[0] is False and traced[-1] is True
    assert results[True][1] == results[False][1] and len(results[True][1]) > 0
    assert results[True][0] == pytest.approx(results[False][0], rel=1e-5, abs=1e-7)


def test_sampler_release_frees_the_caches_after_each_sampling_and_changes_no_chain(tmp_path, monkeypatch):
    """`sampler_release`: no decoder (static cache, CUDA graphs) is held once a step's chains are drawn,
    so the teacher and student passes have that memory; the chains and losses are those of a kept cache."""
    from rcsd_core.training import rollouts

    held = []
    original = rollouts.Rollouts.sample

    def sample(self, *args, **kw):
        samples = original(self, *args, **kw)
        held.append(len(self.sampler.decoders))
        return samples

    monkeypatch.setattr(rollouts.Rollouts, "sample", sample)
    results = {}
    for release in (False, True):
        held.clear()
        run_dir = make_run(tmp_path, run_id=f"release-{release}", sampler="static", sampler_release=release,
                           temperature=0.8, steps=2, eval_every=0)
        results[release] = (*losses_and_texts(run_dir), list(held))
    kept, released = results[False][2], results[True][2]
    assert len(kept) == len(released) >= 2 and min(kept) >= 1 and released == [0] * len(released)
    assert results[True][1] == results[False][1] and len(results[True][1]) > 0
    assert results[True][0] == pytest.approx(results[False][0], rel=1e-5, abs=1e-7)


def test_sampler_step_fused_reaches_the_sampler_and_draws_the_modules_chains(tmp_path, monkeypatch):
    """`sampler_step: fused` decodes through the written-out step (plain fused products here, in float32);
    the round's chains are those of `modules` and its losses agree within rounding."""
    from rcsd_core.modeling import sampler as sampler_module

    ran = []
    original = sampler_module.Decoder.decode

    def decode(self, **kw):
        ran.append(self.llama is not None)
        return original(self, **kw)

    monkeypatch.setattr(sampler_module.Decoder, "decode", decode)
    results = {}
    for step in ("modules", "fused"):
        ran.clear()
        run_dir = make_run(tmp_path, run_id=f"step-{step}", sampler="static", sampler_step=step, temperature=0,
                           steps=2, eval_every=0)
        results[step] = (*losses_and_texts(run_dir), set(ran))
    assert results["modules"][2] == {False} and results["fused"][2] == {True}
    assert results["fused"][1] == results["modules"][1] and len(results["fused"][1]) > 0
    assert results["fused"][0] == pytest.approx(results["modules"][0], rel=1e-4, abs=1e-6)


def test_phase_peaks_give_each_phase_its_own_high_water_mark_and_keep_the_rounds(monkeypatch):
    # torch's peak counter stood in for by a fake: reset sets it to what is allocated now.
    from rcsd_core.training.metrics import PhasePeaks, train_metrics

    gib = 2**30
    counter = {"allocated": 1 * gib, "peak": 5 * gib}         # 5 GiB reached before the step (loading, say)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats",
                        lambda device=None: counter.update(peak=counter["allocated"]))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: counter["peak"])

    def use(more: int) -> None:                                # allocate `more` GiB and free them again
        counter["peak"] = max(counter["peak"], counter["allocated"] + more * gib)

    peaks = PhasePeaks(torch.device("cuda", 0))
    with peaks.phase("sampling"):
        use(3)
    for more in (2, 1):                                        # two micro-batches: the higher is kept
        with peaks.phase("student"):
            use(more)
    taken = peaks.take()
    assert taken == {"sampling": 4.0, "student": 3.0} and peaks.take() == {}
    assert peaks.round_gib() == 5.0                            # the earlier peak survives the resets
    metrics = train_metrics(1, [{"tokens": 1, "loss_sum": 0.0, "div_sum": 0.0, **{f"{p}_s": 0.0 for p in
                            ("sampling", "teacher", "student", "optimizer")}}], [], [], method="rcsd",
                            grad_norm=None, lr=1e-4, seconds=1.0, peak_gib=peaks.round_gib(), phase_peaks=taken)
    assert metrics["memory/sampling_peak_gib"] == 4.0 and metrics["memory/student_peak_gib"] == 3.0
    cpu = PhasePeaks(torch.device("cpu"))                      # nothing measured on a CPU
    with cpu.phase("sampling"):
        pass
    assert cpu.take() == {} and cpu.round_gib() > 0


def test_phase_timers_wait_for_a_cuda_device_and_not_for_a_cpu(monkeypatch):
    # CUDA kernels run after their launch returns: the teacher's timer must wait for them, or its
    # GPU time is counted as the student's (seen on an H200 before this wait).
    from rcsd_core.training.objectives import settled

    waited = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: waited.append(device))
    before = time.perf_counter()
    assert settled(torch.device("cpu")) >= before and waited == []
    settled(torch.device("cuda", 0))
    assert waited == [torch.device("cuda", 0)]
