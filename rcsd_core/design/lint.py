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
- `never-passes` / `always-passes`  the criterion does not discriminate between chains
- `unscored`        the criterion was null on every chain (e.g. answer_match without references)
- `correlated`      two criteria's scores correlate with |r| >= threshold (one is redundant)
- `few-chains`      too few chains to judge discrimination (info)

    findings = lint_rubric(rubric, chains=preview_records, judge_configured=False)
    findings_table(findings)   # pandas, for the CLI and the Rubric page

Per-task criteria (`lint_rubric(..., tasks=tasks)`): each task's combined rubric
(`contracts.tasks.rubric_for_task`) is checked for near-duplicates involving its own criteria and
for own criteria left unjudged (the message names the task); discrimination is judged per
criterion over the chains it applies to (its id is in their scores), correlation over the shared
criteria only (task criteria rarely share chains).

CLI: `rcsd lint --rubric R [--chains C] [--tasks T] [--judge M]` (exit 1 when there is an error-level
finding).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from itertools import combinations
from typing import Any, Iterable, Literal, Sequence

import numpy as np

from rcsd_core.design.drafting import similarity
from rcsd_core.contracts.rubric import Criterion, Rubric
from rcsd_core.contracts.tasks import Task, all_criteria, rubric_for_task, task_criteria

Severity = Literal["info", "warning", "error"]
MIN_CHAINS = 8  # fewer scored chains than this say nothing about discrimination


@dataclass
class LintFinding:
    """One finding: a code, how serious it is, the criteria it concerns, and what to do."""
    code: str
    severity: Severity
    criteria: list[str] = field(default_factory=list)
    message: str = ""

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
    """never-passes / always-passes / unscored per criterion, over the chains it applies to
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
            findings.append(LintFinding("never-passes", "warning", [c.id],
                                        f"{c.id!r}{flaw} scored 0 on all {scored.size} scored chains: it does not "
                                        "tell chains apart here; check its check, or expect to teach it from "
                                        "the teacher alone"))
        elif passed.all():
            findings.append(LintFinding("always-passes", "warning", [c.id],
                                        f"{c.id!r}{flaw} scored 1 on all {scored.size} scored chains: it does not "
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
    """Every finding for the rubric (and the `tasks`' own criteria), and for its scores on `chains`
    when given; errors first.

    `judge`: the judge that scored `chains`, if any; every call of it failing is an error.
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
    order = {"error": 0, "warning": 1, "info": 2}
    return sorted(findings, key=lambda f: order[f.severity])


def findings_table(findings: list[LintFinding]):
    """Findings as a pandas table (severity, code, criteria, message)."""
    import pandas as pd

    return pd.DataFrame([{"severity": f.severity, "code": f.code, "criteria": ", ".join(f.criteria),
                          "message": f.message} for f in findings],
                        columns=["severity", "code", "criteria", "message"])
