"""Rubric lint: weak spots a practitioner should fix before spending a round on a rubric.

From the rubric alone:
- `near-duplicate`  two criteria say nearly the same thing (title + description similarity)
- `equal-weights`   every criterion has the same weight (nothing says what matters most)
- `no-pitfall`      no negative-weight criterion (nothing names a flaw to avoid)
- `judge-unconfigured`  criteria without a programmatic check, and no judge: they stay unscored
                    (an error when no positive-weight criterion can be scored at all)
- `judge-failed`    a judge was configured and every call to it failed (error): its criteria
                    were never scored, whatever the rest says
From scored chains (e.g. a preview), once a criterion has at least `min_chains` scored chains:
- `saturated`       the criterion passes on all or on none of the scored chains (with how many):
                    it does not discriminate between chains
- `leak`            rubric text (word n-grams of its description, criteria and worked examples)
                    echoed in chains: the teacher quoting its privileged context, or a student that
                    learned to; counted per context (teacher / student) with the chain ids
From a task set (`tasks=`):
- `polarity`        the ideal answers a task set carries (a task's `ideal_completion` / `ideal`, or a
                    `reference` of at least `MIN_REFERENCE_WORDS` words) and the rubric's own worked
                    examples, scored against the rubric: a positive criterion such an answer fails, or
                    a pitfall it hits, names the criterion and the tasks — a sign error, or a check
                    stricter than the answers the rubric calls ideal (answer_match is skipped: it
                    compares with the reference itself)
- `unscored`        the criterion was null on every chain (e.g. answer_match without references)
- `correlated`      two criteria's scores correlate with |r| >= threshold (one is redundant)
- `few-chains`      too few chains to judge discrimination (info)

    findings = lint_rubric(rubric, chains=preview_records, tasks=tasks, judge_configured=False)
    findings_table(findings)   # pandas, for the CLI and the Rubric page

Per-task criteria (`lint_rubric(..., tasks=tasks)`): each task's combined rubric
(`contracts.tasks.rubric_for_task`) is checked for near-duplicates involving its own criteria and
for own criteria left unjudged (the message names the task); discrimination is judged per
criterion over the chains it applies to (its id is in their scores), correlation over the shared
criteria only (task criteria rarely share chains).

CLI: `rcsd lint --rubric R [--tasks T] [--chains C] [--judge M]` (exit 1 when there is an error-level
finding).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from itertools import combinations
from typing import Any, Iterable, Literal, Sequence

import numpy as np

from rcsd_core.design.drafting import similarity
from rcsd_core.contracts.rubric import Criterion, Rubric
from rcsd_core.contracts.tasks import Task, all_criteria, rubric_for_task, task_criteria
from rcsd_core.scoring.scores import score_text

Severity = Literal["info", "warning", "error"]
MIN_CHAINS = 8  # fewer scored chains than this say nothing about discrimination
MIN_REFERENCE_WORDS = 8  # a shorter reference is a bare value ("42"), not an answer to score
LEAK_NGRAM = 6  # words in a row shared with the rubric's text that count as quoting it
SHOWN = 10  # ids named in a message before "+N more"


@dataclass
class LintFinding:
    """One finding: a code, how serious it is, the criteria it concerns, and what to do."""
    code: str
    severity: Severity
    criteria: list[str] = field(default_factory=list)
    message: str = ""
    tasks: list[str] = field(default_factory=list)
    chains: list[str] = field(default_factory=list)

    def to_record(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------- rubric-only rules


def find_near_duplicates(rubric: Rubric, threshold: float = 0.8) -> list[LintFinding]:
    findings = []
    for a, b in combinations(rubric.criteria, 2):
        ratio = similarity(f"{a.title} {a.description}", f"{b.title} {b.description}")
        if ratio >= threshold:
            findings.append(LintFinding("near-duplicate", "warning", [a.id, b.id],
                                        f"{a.id!r} and {b.id!r} read {ratio:.0%} alike; merge them or make each "
                                        "say something the other does not"))
    return findings


def find_weight_problems(rubric: Rubric) -> list[LintFinding]:
    findings = []
    weights = {c.weight for c in rubric.criteria}
    if len(rubric.criteria) > 1 and len(weights) == 1:
        findings.append(LintFinding("equal-weights", "info", [c.id for c in rubric.criteria],
                                    f"all {len(rubric.criteria)} criteria weigh {next(iter(weights)):g}; weights "
                                    "tell the total (and the teacher) what matters most"))
    if not any(c.is_pitfall for c in rubric.criteria):
        findings.append(LintFinding("no-pitfall", "info", [],
                                    "no pitfall (negative weight): name a flaw weak answers show, e.g. restating "
                                    "the rubric or padding"))
    return findings


def find_unjudged(rubric: Rubric, judge_configured: bool) -> list[LintFinding]:
    judged = [c.id for c in rubric.criteria if c.is_judged]
    if judged and not judge_configured:
        positive = [c for c in rubric.criteria if c.weight > 0]
        if all(c.is_judged for c in positive):
            return [LintFinding("judge-unconfigured", "error", judged,
                                "every positive-weight criterion needs a judge and none is configured: no chain "
                                "can get a total. Configure a judge or add programmatic checks")]
        return [LintFinding("judge-unconfigured", "warning", judged,
                            f"{len(judged)} criteria have no programmatic check and no judge is configured: they "
                            "stay unscored (the teacher still reads them). Configure a judge or add checks")]
    return []


# ---------------------------------------------------------------------------- rules on scored chains


def _scores_of(chain: Any) -> dict:
    scores = chain.get("scores") if isinstance(chain, dict) else getattr(chain, "scores", None)
    return scores or {}


def score_matrix(rubric: Rubric | Sequence[Criterion], chains: Iterable[Any]) -> np.ndarray:
    """(chains, criteria) float array of scores, NaN where unscored or not applying. Chains are score
    records ({"scores": {...}}), scored chain records, or objects with `.scores` (ChainScore)."""
    criteria = rubric.criteria if isinstance(rubric, Rubric) else list(rubric)
    rows = []
    for chain in chains:
        scores = _scores_of(chain)
        rows.append([np.nan if scores.get(c.id) is None else float(scores[c.id]) for c in criteria])
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(criteria))


def applies_matrix(criteria: Sequence[Criterion], chains: Iterable[Any]) -> np.ndarray:
    """(chains, criteria) bool array: the criterion applies to the chain (its id is in the scores)."""
    rows = [[c.id in _scores_of(chain) for c in criteria] for chain in chains]
    return np.asarray(rows, dtype=bool).reshape(len(rows), len(criteria))


def find_discrimination(rubric: Rubric | Sequence[Criterion], matrix: np.ndarray, min_chains: int = MIN_CHAINS,
                        applies: np.ndarray | None = None) -> list[LintFinding]:
    """saturated (passes on none or all) / unscored per criterion, over the chains it applies to
    (`applies`; all chains when None)."""
    findings = []
    criteria = rubric.criteria if isinstance(rubric, Rubric) else list(rubric)
    for j, c in enumerate(criteria):
        col = matrix[:, j] if applies is None else matrix[applies[:, j], j]
        scored = col[~np.isnan(col)]
        if len(col) >= min_chains and scored.size == 0:
            findings.append(LintFinding("unscored", "warning", [c.id],
                                        f"{c.id!r} was unscored on all {len(col)} chains (a judge criterion without "
                                        "a judge, or answer_match on tasks without references)"))
            continue
        if scored.size < min_chains:
            continue
        passed = scored >= 0.5
        flaw = " (this pitfall's flaw)" if c.is_pitfall else ""
        if not passed.any():
            findings.append(LintFinding("saturated", "warning", [c.id],
                                        f"{c.id!r}{flaw} passes on none of {scored.size} scored chains: it does not "
                                        "tell chains apart here; check its check, or expect to teach it from "
                                        "the teacher alone"))
        elif passed.all():
            findings.append(LintFinding("saturated", "warning", [c.id],
                                        f"{c.id!r}{flaw} passes on all {scored.size} scored chains: it does not "
                                        "tell chains apart; make it stricter or drop it"))
    return findings


def find_correlated(rubric: Rubric, matrix: np.ndarray, threshold: float = 0.9,
                    min_chains: int = MIN_CHAINS) -> list[LintFinding]:
    findings = []
    for (i, a), (j, b) in combinations(list(enumerate(rubric.criteria)), 2):
        both = ~np.isnan(matrix[:, i]) & ~np.isnan(matrix[:, j])
        x, y = matrix[both, i], matrix[both, j]
        if x.size < min_chains or x.std() == 0 or y.std() == 0:
            continue
        r = float(np.corrcoef(x, y)[0, 1])
        if abs(r) >= threshold:
            findings.append(LintFinding("correlated", "warning", [a.id, b.id],
                                        f"{a.id!r} and {b.id!r} correlate at r = {r:+.2f} over {x.size} chains; "
                                        "they measure one thing, which then counts twice in the total"))
    return findings


# ---------------------------------------------------------------------------- polarity and leaks


def _named(ids: list[str]) -> str:
    return ", ".join(ids[:SHOWN]) + (f" (+{len(ids) - SHOWN} more)" if len(ids) > SHOWN else "")


def ideal_answers(rubric: Rubric, tasks: Iterable[Task], min_words: int = MIN_REFERENCE_WORDS) -> list[tuple[str, str, Task | None]]:
    """(label, text, task) of every answer the rubric or the task set calls ideal: the rubric's worked
    examples, then each task's `ideal_completion` / `ideal` or a reference long enough to be an answer."""
    out: list[tuple[str, str, Task | None]] = [(f"example {i}", e.answer, None)
                                               for i, e in enumerate(rubric.examples, start=1)]
    for task in tasks:
        extra = task.model_extra or {}
        ideal = next((extra[k] for k in ("ideal_completion", "ideal") if isinstance(extra.get(k), str)), None)
        if ideal is None and task.reference and len(task.reference.split()) >= min_words:
            ideal = task.reference
        if ideal:
            out.append((task.id, ideal, task))
    return out


def find_polarity(rubric: Rubric, tasks: Iterable[Task], *, judge: Any = None,
                  min_words: int = MIN_REFERENCE_WORDS) -> list[LintFinding]:
    """Ideal answers scored against the rubric (a task's own criteria included: HealthBench-style sign
    errors live there): a positive criterion they fail or a pitfall they hit."""
    answers = ideal_answers(rubric, tasks, min_words)
    contradict: dict[str, list[str]] = {}
    scored: dict[str, int] = {}
    criteria: dict[str, Criterion] = {}
    for label, text, task in answers:
        task_rubric = rubric_for_task(rubric, task) if task else rubric
        scores, _ = score_text(task_rubric, text, reference=task.reference if task else None,
                               prompt=task.prompt if task else "", judge=judge)
        for c in task_rubric.criteria:
            value = scores.get(c.id)
            if value is None or (c.check is not None and c.check.type == "answer_match"):
                continue
            criteria.setdefault(c.id, c)
            scored[c.id] = scored.get(c.id, 0) + 1
            if (value >= 0.5) == c.is_pitfall:
                contradict.setdefault(c.id, []).append(label)
    findings = []
    for cid, c in criteria.items():
        bad = contradict.get(cid)
        if not bad:
            continue
        what = "hit by" if c.is_pitfall else "failed by"
        every = len(bad) == scored[cid]
        hint = ("every ideal answer contradicts it: a sign error (the weight's sign) or a check stricter than "
                "the answers the rubric calls ideal" if every else
                "check the weight's sign, the check, or those answers")
        findings.append(LintFinding(
            "polarity", "error" if every and len(bad) > 1 else "warning", [cid],
            f"{'pitfall' if c.is_pitfall else 'criterion'} {cid!r} (weight {c.weight:g}) is {what} "
            f"{len(bad)} of {scored[cid]} ideal answers: {_named(bad)}; {hint}",
            tasks=[b for b in bad if not b.startswith("example ")]))
    return findings


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def rubric_ngrams(rubric: Rubric, n: int = LEAK_NGRAM) -> dict[tuple[str, ...], str]:
    """Each word n-gram of the rubric's privileged text -> where it comes from (a criterion id,
    `description` or `example N`); the first source wins."""
    sources = [("description", rubric.description)]
    sources += [(c.id, f"{c.title}. {c.description}") for c in rubric.trained]  # held-out: never shown
    sources += [(f"example {i}", f"{e.prompt}\n{e.answer}") for i, e in enumerate(rubric.examples, start=1)]
    grams: dict[tuple[str, ...], str] = {}
    for source, text in sources:
        for gram in _ngrams(_words(text), n):
            grams.setdefault(gram, source)
    return grams


def find_leaks(rubric: Rubric, chains: Iterable[Any], n: int = LEAK_NGRAM) -> list[LintFinding]:
    """Chains that echo n words in a row of the rubric's text (n-grams also in the chain's own prompt
    are not counted: the task may say them). One finding per rubric source echoed."""
    grams = rubric_ngrams(rubric, n)
    hits: dict[str, dict[str, list[str]]] = {}
    quoted: dict[str, tuple[str, ...]] = {}
    totals: dict[str, int] = {}
    for chain in chains:
        if not isinstance(chain, dict) or not isinstance(chain.get("text"), str):
            continue
        context = chain.get("context") if chain.get("context") in ("teacher", "student") else "chains"
        totals[context] = totals.get(context, 0) + 1
        own = _ngrams(_words(chain["text"]), n) - _ngrams(_words(chain.get("prompt") or ""), n)
        for gram in sorted(own & grams.keys()):
            source = grams[gram]
            ids = hits.setdefault(source, {}).setdefault(context, [])
            if not ids or ids[-1] != str(chain.get("id")):
                ids.append(str(chain.get("id")))
            quoted.setdefault(source, gram)
    findings = []
    for source, by_context in hits.items():
        counts = "; ".join(f"{len(ids)} of {totals[ctx]} {ctx} chains" for ctx, ids in sorted(by_context.items()))
        criteria = [source] if source in {c.id for c in rubric.criteria} else []
        where = f"criterion {source!r}" if criteria else f"the rubric's {source}"
        chain_ids = [i for _, ids in sorted(by_context.items()) for i in ids]
        findings.append(LintFinding(
            "leak", "warning", criteria,
            f"{counts} echo {where} word for word (e.g. \"{' '.join(quoted[source])}\"): {_named(chain_ids)}. "
            "The teacher quotes its privileged context; a student trained on it learns to recite the rubric",
            chains=chain_ids))
    return findings


# ---------------------------------------------------------------------------- all rules


def find_judge_failure(judge: Any) -> list[LintFinding]:
    """An error when the judge was called and every call failed (a remote judge counts its calls)."""
    if judge is None or not getattr(judge, "all_failed", False):
        return []
    return [LintFinding("judge-failed", "error", [],
                        f"all {judge.attempts} judge calls failed (last: {judge.last_error}); judged criteria are "
                        "unscored. Check the judge URL, its key and that the server is up")]


def find_task_problems(rubric: Rubric, tasks: Sequence[Task], judge_configured: bool,
                       threshold: float = 0.8) -> list[LintFinding]:
    """Near-duplicates involving a task's own criteria, and its own criteria left unjudged."""
    findings = []
    own_by_task = task_criteria(rubric, list(tasks))
    for task in tasks:
        own = {c.id for c in own_by_task.get(task.id, [])}
        if not own:
            continue
        combined = rubric_for_task(rubric, task)
        for f in find_near_duplicates(combined, threshold):
            if own & set(f.criteria):
                findings.append(LintFinding(f.code, f.severity, f.criteria, f"task {task.id!r}: {f.message}"))
        judged = [c for c in own if combined.criterion(c).is_judged]
        if judged and not judge_configured:
            findings.append(LintFinding("judge-unconfigured", "warning", sorted(judged),
                                        f"task {task.id!r}: {len(judged)} of its own criteria have no programmatic "
                                        "check and no judge is configured: they stay unscored"))
    return findings


def lint_rubric(rubric: Rubric, chains: Iterable[Any] | None = None, *, judge_configured: bool = False,
                correlation_threshold: float = 0.9, similarity_threshold: float = 0.8,
                min_chains: int = MIN_CHAINS, judge: Any = None,
                tasks: Sequence[Task] | None = None) -> list[LintFinding]:
    """Every finding for the rubric (and the `tasks`' own criteria), for its scores and texts on `chains`,
    and for the ideal answers of `tasks` (polarity), when given; errors first.

    `judge`: the judge that scored `chains`, if any; every call of it failing is an error. It also
    judges the ideal answers' judged criteria (without it they are skipped).
    """
    tasks = list(tasks or [])
    findings = find_near_duplicates(rubric, similarity_threshold)
    findings += find_weight_problems(rubric)
    findings += find_unjudged(rubric, judge_configured)
    findings += find_task_problems(rubric, tasks, judge_configured, similarity_threshold)
    findings += find_judge_failure(judge)
    if chains is not None:
        chains = list(chains)
        matrix = score_matrix(rubric, chains)
        if matrix.shape[0] < min_chains:
            findings.append(LintFinding("few-chains", "info", [],
                                        f"only {matrix.shape[0]} chains; at least {min_chains} are needed to check "
                                        "discrimination and correlation (preview more samples)"))
        criteria = all_criteria(rubric, tasks)
        if tasks:  # each criterion over the chains it applies to
            findings += find_discrimination(criteria, score_matrix(criteria, chains), min_chains,
                                            applies_matrix(criteria, chains))
        else:
            findings += find_discrimination(rubric, matrix, min_chains)
        findings += find_correlated(rubric, matrix, correlation_threshold, min_chains)
        findings += find_leaks(rubric, chains)
    if tasks:
        findings += find_polarity(rubric, tasks, judge=judge)
    order = {"error": 0, "warning": 1, "info": 2}
    return sorted(findings, key=lambda f: order[f.severity])


def findings_table(findings: list[LintFinding]):
    """Findings as a pandas table (severity, code, criteria, message)."""
    import pandas as pd

    return pd.DataFrame([{"severity": f.severity, "code": f.code, "criteria": ", ".join(f.criteria),
                          "message": f.message} for f in findings],
                        columns=["severity", "code", "criteria", "message"])
