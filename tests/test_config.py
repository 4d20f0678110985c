"""Round configs: validation errors name the key and value; presets validate; paths resolve."""

from pathlib import Path

import pytest

from rcsd_core.contracts.config import PRESETS, RoundConfig, TeacherLayout, config_from_data, load_config, preset_config
from rcsd_core.errors import InputError

MINIMAL = {"model": "tiny-random", "rubric": "sample_rubrics/arithmetic.yaml",
           "tasks": "sample_rubrics/arithmetic.tasks.jsonl", "method": "rcsd", "steps": 3, "prompts_per_step": 2,
           "samples_per_prompt": 2, "max_new_tokens": 8, "seed": 0}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "round.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_minimal_config_gets_documented_defaults():
    cfg = config_from_data(MINIMAL)
    assert cfg.teacher == "frozen" and cfg.divergence == "forward_kl"
    assert cfg.learning_rate == 3e-4 and cfg.lora_rank == 16 and cfg.lora_alpha == 32
    assert cfg.lora_targets == "all-linear" and cfg.teacher_examples == 2 and cfg.teacher_example_turns
    assert cfg.teacher_reference is False
    assert cfg.teacher_layout() == TeacherLayout(method="rcsd", examples=2, example_turns=True, include_reference=False)
    assert cfg.divergence_params() == {}


def test_divergence_params_follow_the_divergence():
    cfg = config_from_data({**MINIMAL, "divergence": "topk_forward_kl", "tau": 1.2, "clip_mode": "entry"})
    assert cfg.divergence_params() == {"temperature": 1.2, "k": 20, "clip": 0.05, "clip_mode": "entry"}
    assert config_from_data({**MINIMAL, "divergence": "jsd", "beta": 0.25}).divergence_params() == {"beta": 0.25}


def test_load_config_resolves_paths_against_the_repo(tmp_path):
    lines = "\n".join(f"{k}: {v}" for k, v in MINIMAL.items())
    cfg = load_config(write(tmp_path, lines))
    assert Path(cfg.rubric).is_absolute() and Path(cfg.rubric).is_file()
    assert Path(cfg.tasks).is_file()


def test_unknown_key_is_refused_with_file_line_and_key(tmp_path):
    lines = "\n".join(f"{k}: {v}" for k, v in MINIMAL.items()) + "\nlearning_rat: 0.1\n"
    with pytest.raises(InputError) as err:
        load_config(write(tmp_path, lines))
    assert err.value.field == "learning_rat" and err.value.line == len(MINIMAL) + 1
    assert "unknown key 'learning_rat'" in str(err.value) and "round.yaml" in str(err.value)


@pytest.mark.parametrize("key, value, words", [
    ("method", "grpo", "rcsd"),
    ("steps", -1, "greater than 0"),
    ("teacher", "ghost", "frozen"),
    ("divergence", "kl", "forward_kl"),
    ("clip_mode", "entries", "entry"),
    ("beta", 1.5, "less than or equal to 1"),
    ("ema_decay", 1.0, "less than 1"),
    ("dtype", "int8", "unknown dtype"),
])
def test_bad_values_name_the_key_and_the_value(key, value, words):
    with pytest.raises(InputError) as err:
        config_from_data({**MINIMAL, key: value})
    assert err.value.field == key
    assert words in str(err.value) and repr(value) in str(err.value)


def test_missing_required_key():
    data = dict(MINIMAL)
    del data["steps"]
    with pytest.raises(InputError, match="required key 'steps' is missing"):
        config_from_data(data)


def test_malformed_yaml_names_the_line(tmp_path):
    with pytest.raises(InputError) as err:
        load_config(write(tmp_path, "model: tiny-random\nsteps: [1,\n"))
    assert err.value.line is not None and "malformed YAML" in str(err.value)


def test_not_a_mapping(tmp_path):
    with pytest.raises(InputError, match="mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_presets_validate_and_cpu_demo_follows_design():
    assert {"cpu-demo", "gpu-lora"} <= set(PRESETS)
    for name in PRESETS:
        assert isinstance(preset_config(name), RoundConfig)
    cfg = preset_config("cpu-demo")
    assert cfg.model == "smollm2-135m-instruct" and cfg.method == "rcsd"
    assert cfg.divergence == "forward_kl" and cfg.learning_rate == 3e-4 and cfg.teacher_reference is False
    assert (cfg.steps, cfg.prompts_per_step, cfg.samples_per_prompt, cfg.max_new_tokens) == (30, 4, 4, 64)
    assert Path(cfg.rubric).name == "arithmetic.yaml" and Path(cfg.rubric).is_file()


def test_preset_overrides_are_validated():
    assert preset_config("cpu-demo", steps=5).steps == 5
    with pytest.raises(InputError, match="unknown key"):
        preset_config("cpu-demo", stepz=5)
    with pytest.raises(InputError, match="unknown preset"):
        preset_config("nope")


def test_cross_key_problems_name_a_key():
    with pytest.raises(InputError) as err:
        config_from_data({**MINIMAL, "warmup_steps": 10})
    assert err.value.field == "warmup_steps"
    with pytest.raises(InputError) as err:
        config_from_data({**MINIMAL, "method": "opsd", "teacher_analysis": True})
    assert err.value.field == "teacher_analysis"
