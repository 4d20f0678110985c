"""The judge the studio scores judged criteria with, chosen per rubric on the Preview page.

    choice = load_choice(root, "grade-school-math")       # JudgeChoice(kind="none") until one is saved
    save_choice(root, "grade-school-math", JudgeChoice(kind="endpoint", model="gpt-4o-mini",
                url="https://api.openai.com/v1", key_env="OPENAI_API_KEY"))
    judge = build_judge(choice, preview_model="smollm2-135m-instruct")   # a Judge, or None for "none"

Kinds: `none` (judged criteria stay unscored), `preview` (the model that samples the chains judges
them too), `local` (another local model: a folder or cached hub id), `endpoint` (an OpenAI-compatible
server). An endpoint's key is read from the environment variable the user names when a chain is
judged; the workspace keeps the variable's name, never the key (rubrics/<name>/judge.json).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rcsd_core.errors import InputError
from rcsd_core.files import atomic_write_text, read_text
from rcsd_core.studio import workspace as ws

KINDS = {"none": "none: judged criteria stay unscored", "preview": "the preview model",
         "local": "another local model", "endpoint": "an OpenAI-compatible endpoint"}
JUDGE_FILE = "judge.json"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


@dataclass(frozen=True)
class JudgeChoice:
    kind: str = "none"
    model: str = ""                      # local: a folder or hub id; endpoint: the served model's name
    url: str = ""                        # endpoint: base URL, e.g. http://127.0.0.1:8000/v1
    key_env: str = "OPENAI_API_KEY"      # endpoint: the environment variable holding the key

    def checked(self) -> "JudgeChoice":
        """The same choice with whitespace trimmed; InputError naming the field that cannot work."""
        choice = JudgeChoice(self.kind, self.model.strip(), self.url.strip(), self.key_env.strip())
        if choice.kind not in KINDS:
            raise InputError(f"unknown judge kind {choice.kind!r}; expected one of {', '.join(KINDS)}", field="judge")
        if choice.kind in ("local", "endpoint") and not choice.model:
            raise InputError("name the judge model", field="judge model")
        if choice.kind == "endpoint":
            if not re.match(r"^https?://", choice.url):
                raise InputError("the endpoint URL must start with http:// or https://", field="judge URL")
            if not _ENV_NAME.match(choice.key_env):
                raise InputError("the key variable must be an environment variable name such as OPENAI_API_KEY",
                                 field="judge key variable")
        return choice

    @property
    def label(self) -> str:
        if self.kind == "endpoint":
            return f"{self.model} at {self.url}"
        return {"none": "no judge", "preview": "the preview model"}.get(self.kind, self.model)


def load_choice(root: str | Path, rubric: str) -> JudgeChoice:
    """The judge last chosen for `rubric` (kind none when nothing usable was saved)."""
    path = ws.rubric_dir(root, rubric) / JUDGE_FILE
    try:
        data = json.loads(read_text(path, max_bytes=4096))
        return JudgeChoice(**{k: str(data[k]) for k in ("kind", "model", "url", "key_env") if k in data}).checked()
    except (FileNotFoundError, InputError, ValueError, TypeError):
        return JudgeChoice()


def save_choice(root: str | Path, rubric: str, choice: JudgeChoice) -> JudgeChoice:
    """Remember a (checked) choice for `rubric`; holds names and a URL only, never a key."""
    choice = choice.checked()
    atomic_write_text(ws.rubric_dir(root, rubric) / JUDGE_FILE, json.dumps(asdict(choice), indent=1) + "\n")
    return choice


def build_judge(choice: JudgeChoice, *, preview_model: str) -> Any:
    """The Judge for a choice (models load through the studio's one model cache); None for `none`."""
    choice = choice.checked()
    if choice.kind == "none":
        return None
    if choice.kind == "endpoint":
        from rcsd_core.scoring.remote import OpenAIJudge

        return OpenAIJudge(choice.url, choice.model, api_key_env=choice.key_env)
    from rcsd_core.scoring.judges import LocalJudge
    from rcsd_core.studio.state import cached_model

    name = preview_model if choice.kind == "preview" else choice.model
    model, tokenizer = cached_model(name)
    try:
        return LocalJudge(model, tokenizer, name=name)
    except ValueError as exc:
        raise InputError(str(exc), field="judge") from None
