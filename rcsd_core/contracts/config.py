"""Round configs: what one distillation round trains, on what, for how long, and how.

A round config is YAML (DESIGN §2). The minimal form names the model, the rubric, the tasks,
the method and the budget; everything else has a documented default (the table below):

    model: smollm2-135m-instruct
    rubric: sample_rubrics/arithmetic.yaml      # a path, or the rubric itself as a mapping
    tasks: sample_rubrics/arithmetic.tasks.jsonl
    method: rcsd                                # rcsd | opsd | rejection_sft
    steps: 30
    prompts_per_step: 4
    samples_per_prompt: 4
    max_new_tokens: 64
    seed: 0

    cfg = load_config("round.yaml")              # InputError naming the file, line and key
    cfg = preset_config("cpu-demo", steps=10)    # a preset (rcsd_core/presets/*.yaml) + overrides

Every numeric field is finite and bounded (NUMERIC_BOUNDS, shown in each field's description), and
`device` is auto | cpu | cuda | cuda:N | mps; a value outside names the key and the value. Config
YAML is parsed without aliases and capped at MAX_CONFIG_BYTES (`files.parse_yaml`).

Relative paths are resolved against the config file's folder, then the working directory,
then the repository root (where `sample_rubrics/` lives). Defaults follow what was measured on
the embedded model (DESIGN §4 and `contexts`): full-vocabulary forward KL, a frozen teacher
that reads the rubric as a system message and two worked examples as earlier turns, and *not*
the reference answer, LoRA r16 all-linear at lr 3e-4.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from rcsd_core.contracts.rubric import rubric_from_data
from rcsd_core.errors import InputError
from rcsd_core.files import MAX_YAML_BYTES, dump_yaml, parse_yaml, parse_yaml_document, read_text

PRESET_DIR = Path(__file__).parent / "presets"
REPO_ROOT = Path(__file__).resolve().parents[2]

Method = Literal["rcsd", "opsd", "rejection_sft"]
TeacherKind = Literal["frozen", "live", "ema"]
Divergence = Literal["forward_kl", "reverse_kl", "jsd", "topk_forward_kl", "sampled_token"]
METHODS: tuple[str, ...] = Method.__args__
TEACHER_KINDS: tuple[str, ...] = TeacherKind.__args__
DIVERGENCES: tuple[str, ...] = Divergence.__args__

# Model names every layer agrees on (modeling.models resolves them; the studio offers them).
DEFAULT_MODEL = "smollm2-135m-instruct"  # the embedded default (DESIGN §4)
TINY_RANDOM = "tiny-random"              # random weights, the embedded tokenizer: for tests and trying things fast

DEFAULT_EXAMPLES = 2  # worked examples shown to the teacher as earlier turns (see modeling.contexts)
MAX_CONFIG_BYTES = MAX_YAML_BYTES  # a frozen config inlines its rubric (itself at most 1 MiB of YAML)
MAX_PATH_CHARS = 4096
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d{1,3})?")

# Inclusive bounds of every numeric field (also finite): far above any sensible round, far below
# what would overflow a counter, exhaust memory at setup or hang a sampler. Each field's
# description ends with its range (appended below the class). A new numeric field needs a row:
# tests/test_config.py checks that every int/float field has one.
NUMERIC_BOUNDS: dict[str, tuple[float, float]] = {
    "steps": (1, 1_000_000),
    "prompts_per_step": (1, 4096),
    "samples_per_prompt": (1, 1024),
    "max_new_tokens": (1, 131_072),        # the longest context of current open models
    "seed": (0, 2**32 - 1),                # what numpy's and torch's generators all accept
    "ema_decay": (0.0, 1.0),
    "teacher_examples": (0, 100),
    "tau": (1e-3, 100.0),
    "k": (1, 1024),
    "clip": (1e-6, 1e3),
    "beta": (0.0, 1.0),
    "temperature": (0.0, 10.0),
    "top_p": (0.0, 1.0),
    "sampling_batch_size": (1, 4096),
    "learning_rate": (1e-9, 1.0),
    "warmup_steps": (0, 1_000_000),
    "min_lr_ratio": (0.0, 1.0),
    "weight_decay": (0.0, 10.0),
    "max_grad_norm": (1e-6, 1e6),
    "micro_batch_size": (1, 4096),
    "chunk_size": (1, 131_072),
    "lora_rank": (1, 4096),
    "lora_alpha": (1, 65_536),
    "lora_dropout": (0.0, 1.0),
    "eval_every": (0, 1_000_000),
    "eval_tasks": (1, 1_000_000),
    "eval_samples": (1, 1024),
    "eval_seed": (0, 2**32 - 1),
    "checkpoint_every": (0, 1_000_000),
    "threads": (1, 1024),
}


def _show(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


@dataclass(frozen=True)
class TeacherLayout:
    """What the teacher reads besides the task prompt: one value per round, used by every reader.

    method `rcsd` shows the rubric (and the reference when `include_reference`); `opsd` the
    reference alone. The first `examples` worked examples come as earlier user/assistant turns
    (`example_turns`) or inside the system text. A run's own layout is
    `load_run_config(run).teacher_layout()`; the default is what a new round uses.
    """
    method: Literal["rcsd", "opsd"] = "rcsd"
    examples: int = DEFAULT_EXAMPLES
    example_turns: bool = True
    include_reference: bool = False


class RoundConfig(BaseModel):
    """One distillation round. Unknown keys are refused; every default is documented here."""

    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True)

    # ------------------------------------------------------------------ what (required)
    model: str = Field(min_length=1, description="'smollm2-135m-instruct' (embedded), 'tiny-random', "
                                                 "a local folder or a cached Hugging Face id")
    rubric: str | dict[str, Any] = Field(description="rubric YAML path, or the rubric itself (frozen run configs)")
    tasks: str = Field(min_length=1, description="tasks JSONL path; split 'train' is trained on, 'eval' evaluated")
    method: Method = Field(description="rcsd: teacher reads the rubric; opsd: the reference only; "
                                       "rejection_sft: cross-entropy on the best-scoring chain per prompt")

    # ------------------------------------------------------------------ budget (required)
    steps: int = Field(gt=0, description="optimizer steps")
    prompts_per_step: int = Field(gt=0, description="train prompts per step (split across processes)")
    samples_per_prompt: int = Field(gt=0, description="on-policy chains sampled per prompt")
    max_new_tokens: int = Field(gt=0, description="completion length cap per chain")
    seed: int = Field(description="seeds LoRA init, prompt order and every sampling call")

    # ------------------------------------------------------------------ teacher
    teacher: TeacherKind = Field("frozen", description="frozen: adapter disabled (initial policy, the paper's "
                                                        "setting); live: current weights, no grad; ema: "
                                                        "exponential average of the adapter")
    ema_decay: float = Field(0.99, gt=0, lt=1, description="EMA teacher: weight of the old average per step")
    teacher_examples: int = Field(DEFAULT_EXAMPLES, ge=0,
                                  description="worked examples from the rubric shown to the teacher")
    teacher_example_turns: bool = Field(True, description="show the worked examples as earlier user/assistant "
                                                          "turns (few-shot) rather than inside the system text")
    teacher_reference: bool = Field(False, description="rcsd: also show the task's reference answer (hurt on "
                                                       "the embedded model, DESIGN §4)")
    teacher_analysis: bool = Field(False, description="the teacher first writes a short analysis of what the "
                                                      "rubric asks of each prompt, added to its context")

    # ------------------------------------------------------------------ divergence
    divergence: Divergence = Field("forward_kl", description="token-level loss between student and teacher")
    tau: float | None = Field(None, gt=0, description="temperature of the divergence; None = its default "
                                                       "(1.2 for topk_forward_kl, 1.0 otherwise)")
    k: int = Field(20, gt=0, description="topk_forward_kl: teacher's top-k support")
    clip: float = Field(0.05, gt=0, description="topk_forward_kl: clip value c")
    clip_mode: Literal["entry", "token", "none"] = Field(
        "token", description="topk_forward_kl: 'entry' is the official code's clamp per vocabulary entry (it "
                             "pushed the student away from the teacher here, DESIGN §1/§4); 'token' caps each "
                             "position's sum; 'none'")
    beta: float = Field(0.5, ge=0, le=1, description="jsd: 0 = forward KL, 1 = reverse KL")

    # ------------------------------------------------------------------ sampling
    temperature: float = Field(1.0, ge=0, description="sampling temperature of the student (0 = greedy)")
    top_p: float = Field(1.0, gt=0, le=1)
    sampling_batch_size: int = Field(16, gt=0, description="chains per generate() call")
    sampler: Literal["auto", "generate", "static"] = Field(
        "auto", description="how the student's chains are sampled: 'static' decodes with a static cache and the "
                            "whole step on the device, captured as a CUDA graph on a GPU (modeling.sampler); "
                            "'generate' is transformers' generate (the reference path); 'auto' = static where "
                            "the model allows it (no sliding-window or linear-attention layers), else generate "
                            "(bench/sampler_throughput.py)")
    sampler_compile: bool = Field(
        False, description="static sampler: torch.compile the decode step (inductor) before it is captured or run, "
                           "to fuse its thousands of small operations; the first call of each shape compiles "
                           "(59 s for the embedded model on the 2-core CPU, where it then ran no faster); on a GPU "
                           "not measured yet: its first try (H100, torch 2.11) stopped at a graph break since "
                           "mended (bench/round_throughput.py --variant sampler_compile=true)")
    sampler_step: Literal["auto", "modules", "fused"] = Field(
        "auto", description="static sampler: how a Llama's or Qwen3's decode step runs: 'fused' writes it out over "
                            "fused products (q/k/v and gate/up as one product each, the adapter's too: 12 products "
                            "an adapted layer instead of 21; modeling.llama_step), on a GPU over the frozen weights "
                            "re-laid in place so no copy is kept, with the adapter's A beside them, each norm one "
                            "kernel and a shorter rotary embedding (about 40% of the lean step's kernels counted on "
                            "a CPU; not yet timed on a GPU: bench/lean_adapters.py, bench/round_throughput.py "
                            "--variant sampler_step=fused); "
                            "'modules' runs the model's own modules; 'auto' = fused where it was measured to pay "
                            "(bf16 on a CPU, packed products: 3.36 -> 2.41 s a 16-chain sampling call), else modules")
    sampler_release: bool = Field(
        False, description="static sampler: free its key/value caches and CUDA graphs after each step's sampling, "
                           "so the teacher and student passes have that memory (64 chains x 383 columns: 0.56 GB "
                           "on SmolLM2, 2.8 GB on the Qwen3-0.6B/1.7B shapes); each step then allocates a cache "
                           "and captures its graph again: on an H100 with the Qwen3-0.6B shape, 0.13 GiB off the "
                           "peak for 0.45 s more sampling a step, so the presets leave it off "
                           "(bench/results/round_throughput.jsonl)")

    # ------------------------------------------------------------------ optimisation
    learning_rate: float = Field(3e-4, gt=0)
    lr_schedule: Literal["cosine", "constant", "linear"] = Field("cosine", description="after warmup")
    warmup_steps: int = Field(0, ge=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine/linear floor as a share of learning_rate")
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float | None = Field(1.0, gt=0, description="gradient clipping; None = off")
    micro_batch_size: int = Field(8, gt=0, description="chains per forward/backward pass")
    chunk_size: int = Field(512, gt=0, description="completion positions per chunk of the divergence, so "
                                                   "float32 logits exist for one chunk only")
    gradient_checkpointing: bool = Field(False, description="recompute each layer's activations during the "
                                                            "backward, so activation memory grows with one layer "
                                                            "instead of all of them (TRL's default); costs one "
                                                            "more student forward")
    student_compile: bool = Field(False, description="torch.compile the decoder layers for the student's forward and "
                                                     "backward (inductor; the teacher and the sampler keep the "
                                                     "modules): fewer, fused operations a pass (~10,000 eager on "
                                                     "the GPU shapes); the first two steps compile (15-23 s each "
                                                     "on the 2-core CPU, where a pass then ran 1.16-1.6x faster); "
                                                     "not yet timed on a GPU (bench/compiled_layers.py, "
                                                     "bench/round_throughput.py --variant student_compile=true)")

    # ------------------------------------------------------------------ LoRA
    lora_rank: int = Field(16, gt=0)
    lora_alpha: int = Field(32, gt=0)
    lora_targets: str | list[str] = Field("all-linear", description="peft target_modules")
    lora_dropout: float = Field(0.0, ge=0, lt=1)

    # ------------------------------------------------------------------ evaluation and checkpoints
    eval_every: int = Field(10, ge=0, description="evaluate every N steps, plus before step 1 and at the end; "
                                                  "0 = only before and at the end")
    eval_tasks: int | None = Field(40, gt=0, description="eval prompts used (first N of the eval split); "
                                                         "None = all")
    eval_samples: int = Field(1, gt=0, description="chains per eval prompt")
    eval_seed: int = Field(1234, description="fixed sampling seed of every evaluation")
    checkpoint_every: int = Field(10, ge=0, description="save adapter + state every N steps (0 = end only)")

    # ------------------------------------------------------------------ human review
    reviewed_chains: str | None = Field(None, min_length=1, description="the review store's JSONL export "
                                        "(Review → Export): a chain whose latest human decision is reject is "
                                        "never a rejection-SFT target (training.reviewed)")
    reviewed_use: Literal["exclude", "sft"] = Field("exclude", description="exclude: only leave rejected chains "
                                                    "out; sft: the accepted chains of each step's prompts are "
                                                    "extra rejection-SFT targets")

    # ------------------------------------------------------------------ hardware
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    dtype: str = Field("auto", description="auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16 | float16")
    threads: int | None = Field(None, gt=0, description="CPU threads for torch (None = torch's default)")

    @model_validator(mode="after")
    def _consistent(self):
        if self.reviewed_use == "sft" and (self.reviewed_chains is None or self.method != "rejection_sft"):
            raise ValueError("reviewed_use 'sft' needs reviewed_chains and method 'rejection_sft'")
        if self.method == "opsd" and self.teacher_analysis:
            raise ValueError("teacher_analysis needs a rubric teacher; it does not apply to method 'opsd'")
        if self.warmup_steps > self.steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) is longer than the round (steps={self.steps})")
        return self

    @field_validator(*NUMERIC_BOUNDS, mode="after")
    @classmethod
    def _bounded(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return value
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must be a finite number")
        low, high = NUMERIC_BOUNDS[info.field_name]
        if not low <= value <= high:
            raise ValueError(f"must be between {_show(low)} and {_show(high)}")
        return value

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not DEVICE_PATTERN.fullmatch(value):
            raise ValueError("unknown device; expected auto, cpu, cuda, cuda:N or mps")
        return value

    @field_validator("model", "tasks", "rubric", "reviewed_chains")
    @classmethod
    def _plain_path(cls, value: Any) -> Any:
        # a NUL or a newline in a path makes every os call raise; refuse it here, with the key
        if isinstance(value, str):
            if len(value) > MAX_PATH_CHARS:
                raise ValueError(f"is longer than {MAX_PATH_CHARS} characters")
            if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
                raise ValueError("must not contain control characters (NUL, newline, ...)")
        return value

    @field_validator("rubric")
    @classmethod
    def _valid_inline_rubric(cls, value: Any) -> Any:
        # an inlined rubric (frozen configs, or written into a config) is checked when the config is,
        # not first when a round starts: what is accepted here dumps and reloads to the same config
        if isinstance(value, dict):
            try:
                rubric_from_data(value, source="rubric")
            except InputError as exc:
                raise ValueError(f"invalid rubric: {exc.field + ': ' if exc.field else ''}{exc.message}") from None
        return value

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, value: str) -> str:
        if value not in ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16"):
            raise ValueError("unknown dtype; expected auto, float32, bfloat16 or float16")
        return value

    # ------------------------------------------------------------------ derived
    def divergence_params(self) -> dict[str, Any]:
        """Keyword parameters for rcsd_core.modeling.losses.compute_divergence."""
        params: dict[str, Any] = {}
        if self.tau is not None:
            params["temperature"] = self.tau
        if self.divergence == "topk_forward_kl":
            params.update(k=self.k, clip=self.clip, clip_mode=self.clip_mode)
        elif self.divergence == "jsd":
            params["beta"] = self.beta
        return params

    def teacher_layout(self) -> TeacherLayout:
        """What this round's teacher reads (rejection_sft is measured against the rcsd teacher)."""
        return TeacherLayout(method="opsd" if self.method == "opsd" else "rcsd", examples=self.teacher_examples,
                             example_turns=self.teacher_example_turns, include_reference=self.teacher_reference)

    def to_yaml(self) -> str:
        """YAML that load_config / load_run_config read back to an equal config (rubric text included)."""
        return dump_yaml(self.model_dump(mode="json"))


for _name, (_low, _high) in NUMERIC_BOUNDS.items():   # each field's description states its range
    _info = RoundConfig.model_fields[_name]
    _info.description = (f"{_info.description}; " if _info.description else "") + f"{_show(_low)} to {_show(_high)}"
RoundConfig.model_rebuild(force=True)


# ---------------------------------------------------------------------------- loading


def load_config(path: str | Path) -> RoundConfig:
    """Load and validate a round config YAML; InputError names the file, line and key."""
    text = read_text(path, max_bytes=MAX_CONFIG_BYTES)
    data, node = parse_yaml_document(text, source=path, max_bytes=MAX_CONFIG_BYTES)
    if not isinstance(data, dict):
        raise InputError("a round config must be a YAML mapping (model, rubric, tasks, method, steps, ...)",
                         source=path)
    lines = {}
    if isinstance(node, yaml.MappingNode):
        lines = {key.value: key.start_mark.line + 1 for key, _ in node.value}
    config = config_from_data(data, source=path, lines=lines)
    return resolve_paths(config, base=Path(path).resolve().parent)


def parse_config_overrides(text: str, *, source: str = "other config keys") -> dict[str, Any]:
    """Config keys typed as YAML (the Train page's free-form box): a mapping, {} when blank.

    Parsed like every user YAML (no aliases, size-capped); the keys are validated with the rest
    by config_from_data / preset_config.
    """
    if not text.strip():
        return {}
    data = parse_yaml(text, source=source, max_bytes=MAX_CONFIG_BYTES)
    if not isinstance(data, dict):
        raise InputError("must be a YAML mapping of config keys (key: value lines)", source=source)
    return data


def config_from_data(data: dict[str, Any], *, source: str | Path = "<config>",
                     lines: dict[str, int] | None = None) -> RoundConfig:
    """Validate a config given as a mapping; InputError names the first bad key and its value."""
    if not isinstance(data, dict):
        raise InputError("a round config must be a mapping (model, rubric, tasks, method, steps, ...)", source=source)
    try:
        return RoundConfig.model_validate(data)
    except ValidationError as exc:
        raise _explain(exc, data, source, lines or {}) from None


def resolve_paths(config: RoundConfig, *, base: str | Path | None = None) -> RoundConfig:
    """Make the rubric and tasks paths absolute: the first existing of base/, cwd, repo root."""
    updates: dict[str, Any] = {}
    if isinstance(config.rubric, str):
        updates["rubric"] = _resolve(config.rubric, base)
    updates["tasks"] = _resolve(config.tasks, base)
    if config.reviewed_chains:
        updates["reviewed_chains"] = _resolve(config.reviewed_chains, base)
    return config.model_copy(update=updates)


def _resolve(path: str, base: str | Path | None) -> str:
    p = Path(path).expanduser()
    if p.is_absolute():
        return str(p)
    for root in [Path(base)] if base else []:
        if (root / p).exists():
            return str((root / p).resolve())
    for root in (Path.cwd(), REPO_ROOT):
        if (root / p).exists():
            return str((root / p).resolve())
    return str(p)  # left as given; create_run reports "file not found" with this name


def _explain(exc: ValidationError, data: dict, source, lines: dict[str, int]) -> InputError:
    errors = exc.errors()
    err = errors[0]
    message = err["msg"].removeprefix("Value error, ")
    if err["loc"]:
        key = str(err["loc"][0])
    else:  # a check across keys: its message starts with the key it blames
        first = message.split(" ", 1)[0]
        key = first if first in RoundConfig.model_fields else None
    field = ".".join(str(p) for p in err["loc"]) or key
    if err["type"] == "extra_forbidden":
        known = ", ".join(RoundConfig.model_fields)
        message = f"unknown key {key!r}; known keys: {known}"
    elif err["type"] == "missing":
        message = f"required key {key!r} is missing"
    elif key in data:
        shown = repr(data[key])
        message = f"{message} (got {shown if len(shown) <= 80 else shown[:60] + '…'})"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return InputError(message, source=source, line=lines.get(key), field=field)


# ---------------------------------------------------------------------------- presets


def _load_presets() -> dict[str, dict[str, Any]]:
    presets = {}
    for file in sorted(PRESET_DIR.glob("*.yaml")):
        presets[file.stem] = parse_yaml(read_text(file), source=file)
    return presets


PRESETS: dict[str, dict[str, Any]] = _load_presets()


def preset_config(name: str, **overrides: Any) -> RoundConfig:
    """A preset (see PRESETS) with keyword overrides, validated, paths resolved."""
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}", field="preset")
    data = {**PRESETS[name], **overrides}
    config = config_from_data(data, source=f"preset {name}")
    return resolve_paths(config)
