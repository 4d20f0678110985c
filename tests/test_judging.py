"""The judge picker: choices remembered per rubric (never a key), checked, and used to score."""

from __future__ import annotations

import json

import pytest
from test_pages import by_label, frame_with, home, open_page, sample_tiny  # noqa: F401  (home is a fixture)

from rcsd_core.errors import InputError
from rcsd_core.studio import judging
from rcsd_core.studio import workspace as ws
from rcsd_core.studio.judging import JudgeChoice


def test_choice_is_remembered_per_rubric_without_the_key(home, monkeypatch):
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-secret-value")
    choice = JudgeChoice("endpoint", " judge-model ", "http://127.0.0.1:9/v1", "MY_JUDGE_KEY")
    saved = judging.save_choice(home, "grade-school-math", choice)
    assert saved.model == "judge-model"
    text = (ws.rubric_dir(home, "grade-school-math") / judging.JUDGE_FILE).read_text()
    assert "sk-secret-value" not in text and json.loads(text)["key_env"] == "MY_JUDGE_KEY"
    assert judging.load_choice(home, "grade-school-math") == saved
    assert judging.load_choice(home, "science-explainer") == JudgeChoice()          # another rubric: none
    judge = judging.build_judge(saved, preview_model="tiny-random")
    assert judge.api_key_env == "MY_JUDGE_KEY" and judge.model == "judge-model"


@pytest.mark.parametrize("choice, field", [
    (JudgeChoice("oracle"), "judge"),
    (JudgeChoice("local"), "judge model"),
    (JudgeChoice("endpoint", "m", "ftp://host"), "judge URL"),
    (JudgeChoice("endpoint", "m", "https://host/v1", "not a name"), "judge key variable"),
])
def test_a_choice_that_cannot_work_names_its_field(choice, field):
    with pytest.raises(InputError) as info:
        choice.checked()
    assert info.value.field == field


def test_preview_with_the_preview_model_as_judge_scores_judged_criteria(home):
    at = open_page("pages/preview.py", rubric="science-explainer")
    assert by_label(at.selectbox, "Judge for criteria without a check").value == "none"
    sample_tiny(at, **{"Judge for criteria without a check": "preview"})
    assert not at.exception, [e.value for e in at.exception]
    rubric = ws.load_rubric_version(home, "science-explainer")
    judged = [c.id for c in rubric.criteria if c.is_judged]
    assert judged, "the science sample has judged criteria"
    (chain_set,) = ws.list_chain_sets(home)
    (chain,) = ws.load_chain_set(home, chain_set["id"])
    # every judged criterion was put to the judge (tiny-random's random weights give no usable yes/no,
    # so its verdicts say so; the embedded model's are scored: tests/test_judge.py)
    assert set(chain["judge"]) == set(judged) and {v["judge"] for v in chain["judge"].values()} == {"tiny-random"}
    panel = frame_with(at, "judge verdict")
    assert panel.set_index("criterion").loc[judged[0], "judge verdict"].startswith("P(yes)=")
    assert ws.chain_set_meta(home, chain_set["id"])["judge"] == "the preview model"
    assert judging.load_choice(home, "science-explainer").kind == "preview"
    # the next visit opens on the remembered judge
    at = open_page("pages/preview.py", rubric="science-explainer")
    assert by_label(at.selectbox, "Judge for criteria without a check").value == "preview"
