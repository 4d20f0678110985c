"""Round configs: validation errors name the key and value; presets validate; paths resolve."""

import math
import typing
from pathlib import Path

import pytest
import yaml

from rcsd_core.cli import main
from rcsd_core.contracts.config import (NUMERIC_BOUNDS, PRESETS, RoundConfig, TeacherLayout, config_from_data,
                                        load_config, parse_config_overrides, preset_config)
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


# ---------------------------------------------------------------------------- bounds

@pytest.mark.parametrize("key, value, words", [
    ("learning_rate", math.inf, "finite"),
    ("learning_rate", math.nan, "greater than 0"),
    ("max_new_tokens", 1e12, "between 1 and 131,072"),
    ("lora_rank", 1e6, "between 1 and 4,096"),
    ("steps", 10**30, "between 1 and 1,000,000"),
    ("temperature", 1e9, "between 0 and 10"),
    ("tau", math.inf, "finite"),
    ("max_grad_norm", math.inf, "finite"),
    ("weight_decay", 1e300, "between 0 and 10"),
    ("seed", -1, "between 0 and 4,294,967,295"),
    ("seed", 2**64, "between 0 and 4,294,967,295"),
    ("threads", 100_000, "between 1 and 1,024"),
    ("device", "gpu", "unknown device"),
    ("device", "cuda:0; rm -rf /", "unknown device"),
    ("device", "cuda:", "unknown device"),
    ("model", "tiny\x00random", "control characters"),
    ("tasks", "t.jsonl\n", "control characters"),
])
def test_every_number_is_finite_and_bounded_and_device_is_known(key, value, words):
    with pytest.raises(InputError) as err:
        config_from_data({**MINIMAL, key: value})
    assert err.value.field == key
    assert words in str(err.value) and repr(value) in str(err.value)


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps"])
def test_known_devices(device):
    assert config_from_data({**MINIMAL, "device": device}).device == device


def test_every_numeric_field_has_documented_bounds():
    numeric = set()
    for name, field in RoundConfig.model_fields.items():
        kinds = set(typing.get_args(field.annotation)) or {field.annotation}
        if kinds & {int, float}:
            numeric.add(name)
    assert numeric == set(NUMERIC_BOUNDS)
    for name, (low, high) in NUMERIC_BOUNDS.items():
        assert math.isfinite(low) and math.isfinite(high) and low < high
        assert RoundConfig.model_fields[name].description.endswith(f"to {high:,}" if isinstance(high, int)
                                                                   else f"to {high:g}")
        schema = RoundConfig.model_json_schema()["properties"][name]
        assert " to " in schema["description"]


def test_presets_are_inside_the_bounds():
    for name in PRESETS:
        config = preset_config(name)
        for key, (low, high) in NUMERIC_BOUNDS.items():
            value = getattr(config, key)
            assert value is None or low <= value <= high


@pytest.mark.parametrize("line, key", [("lora_rank: 1.0e+6", "lora_rank"), ("max_new_tokens: 1000000000000", "max_new_tokens"),
                                       ("learning_rate: .inf", "learning_rate"), ("device: 'cuda:0; rm -rf /'", "device")])
def test_rcsd_train_exits_2_naming_the_key_and_value(tmp_path, capsys, line, key):
    lines = "\n".join(f"{k}: {v}" for k, v in MINIMAL.items()) + f"\n{line}\n"
    path = write(tmp_path, lines)
    assert main(["train", "--config", str(path), "--runs-root", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"round.yaml:{len(MINIMAL) + 1}: {key}:" in err[0] and "(got " in err[0]
    assert not (tmp_path / "runs").exists()


def test_config_yaml_refuses_aliases(tmp_path):
    text = "\n".join(f"{k}: {v}" for k, v in MINIMAL.items()) + "\nlora_targets: &t [q_proj]\n"
    with pytest.raises(InputError, match="anchors and aliases"):
        load_config(write(tmp_path, text))


def test_config_round_trips_through_yaml():
    config = config_from_data({**MINIMAL, "rubric": {"name": "x", "description": "a\x85b\u2028c\r\n",
                                                     "criteria": [{"id": "a", "description": "d", "weight": 1}]}})
    assert config_from_data(yaml.safe_load(config.to_yaml())) == config


def test_config_overrides_typed_in_the_studio():
    assert parse_config_overrides("") == {} and parse_config_overrides("tau: 1.0\n") == {"tau": 1.0}
    for text, words in (("- a\n", "mapping"), ("a: &x 1\nb: *x\n", "anchors and aliases"), ("a: [", "malformed")):
        with pytest.raises(InputError, match=words):
            parse_config_overrides(text)
