"""Arguments and output helpers shared by every `rcsd` subcommand (argument parsing stays in cli/).

Counts are checked as they are parsed (`positive`), judges come from one factory (`make_judge`:
a local model, or an OpenAI-compatible endpoint with `--judge-url`), and outputs are refused
before any work when they can never be written (`check_out`), then written at the end
(`write_out`), so a failed command leaves no file behind.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rcsd_core.errors import InputError


def positive(text: str) -> int:
    """argparse type: an integer of 1 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def add_model_args(p: argparse.ArgumentParser, *, default: str = "smollm2-135m-instruct") -> None:
    p.add_argument("--model", default=default, help="smollm2-135m-instruct (embedded), tiny-random, a local folder "
                                                     "or a cached Hugging Face id")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")


def add_sampling_args(p: argparse.ArgumentParser, *, samples: int) -> None:
    """How chains are sampled on a task set: preview, signal and ablate take the same options."""
    p.add_argument("--samples", type=positive, default=samples)
    p.add_argument("--max-new-tokens", type=positive, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=positive, help="use only the first N tasks")
    p.add_argument("--temperature", type=float, default=1.0)


def add_teacher_args(p: argparse.ArgumentParser) -> None:
    """The divergence and the teacher's context, as a round would show them."""
    p.add_argument("--divergence", default="forward_kl", help="forward_kl | reverse_kl | jsd | topk_forward_kl | "
                                                               "sampled_token")
    p.add_argument("--include-reference", action="store_true", help="give the teacher the reference answer")
    p.add_argument("--run-dir", help="show the teacher this run's own layout (examples, turns, reference)")


def check_divergence(name: str) -> None:
    """Refuse an unknown divergence before any model is loaded."""
    from rcsd_core.contracts.config import DIVERGENCES

    if name not in DIVERGENCES:
        raise InputError(f"unknown divergence {name!r}; expected one of {', '.join(DIVERGENCES)}",
                         field="--divergence")


def add_judge_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--judge", help="judge model for criteria without a check: a local model name, or the remote "
                                   "model with --judge-url")
    p.add_argument("--judge-url", help="OpenAI-compatible base URL (e.g. http://127.0.0.1:8000/v1); key from "
                                       "--judge-key-env")
    p.add_argument("--judge-key-env", default="OPENAI_API_KEY", help="environment variable holding the judge's key")


def judge_configured(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "judge", None) or getattr(args, "judge_url", None))


def check_judge_args(args: argparse.Namespace) -> None:
    """Refuse judge options that can never work before any file is read or model loaded."""
    if getattr(args, "judge_url", None) and not getattr(args, "judge", None):
        raise InputError("--judge-url needs --judge naming the remote model", field="judge")
    if getattr(args, "judge", None) and not getattr(args, "judge_url", None):
        from rcsd_core.modeling.models import check_model, resolve_device

        check_model(args.judge)
        resolve_device(getattr(args, "device", "auto"))


def make_judge(args: argparse.Namespace, *, device: str = "auto"):
    """A judge from --judge / --judge-url, or None."""
    if getattr(args, "judge_url", None):
        from rcsd_core.scoring.remote import OpenAIJudge

        if not args.judge:
            raise InputError("--judge-url needs --judge naming the remote model", field="judge")
        return OpenAIJudge(args.judge_url, args.judge, api_key_env=args.judge_key_env)
    if getattr(args, "judge", None):
        from rcsd_core.modeling.models import check_model, load_model
        from rcsd_core.scoring.judges import LocalJudge

        check_model(args.judge)
        model, tokenizer = load_model(args.judge, device=device)
        try:
            return LocalJudge(model, tokenizer, name=args.judge)
        except ValueError as exc:
            raise InputError(str(exc), field="--judge") from None
    return None


def check_out(path: str) -> None:
    """Refuse an output path that can never be written before any work is done."""
    if Path(path).is_dir():
        raise InputError("is a folder, not a file", source=path, field="--out")


def write_out(path: str, records: list[dict], write) -> None:
    """Write the output file; a path that cannot be written is the user's to fix (exit 2)."""
    try:
        write(path, records)
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror or exc}", source=path, field="--out") from None


def format_table(frame) -> str:
    """A pandas frame as the CLI prints it: no index, three decimals, '-' for missing."""
    return frame.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-")
