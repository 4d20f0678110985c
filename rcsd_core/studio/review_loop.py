"""Verdicts that reach the next rubric version: promoted worked examples and answered review items.

    version = promote_example(root, store, flag_id, promoted_by="ana")
        # a chain whose latest decision is accept becomes the rubric's first worked example (shown
        # to the teacher as turns); the new version's history entry records chain, flag and review
    items = needs_work_items(root, store, "arithmetic")     # open "rubric needs work" reviews
    version = save_answering(root, rubric, [review_id, ...], note="…")
        # a version saved from the editor that answers those items; they leave the open list

The worked example goes first: the teacher is shown the first `teacher_examples` (2 by default)
examples, and on the embedded model the teacher signal comes mostly from those turns
(modeling.contexts), so an example reviewers accepted is one the next round's teacher sees.
"""

from __future__ import annotations

from pathlib import Path

from rcsd_core.contracts.rubric import Rubric, rubric_from_data
from rcsd_core.errors import InputError
from rcsd_core.studio import workspace as ws
from rcsd_core.studio.store import ReviewStore


def promote_example(root: str | Path, store: ReviewStore, flag_id: int, *, promoted_by: str) -> str:
    """A new version of the flag's rubric with the chain as its first worked example; returns it."""
    if not promoted_by.strip():
        raise InputError("say who promotes the chain", field="promoted_by")
    flag = store.flag(flag_id)
    latest = flag["latest"]
    if latest is None or latest["decision"] != "accept":
        raise InputError(f"flag {flag_id}: only a chain whose latest decision is accept can become a worked "
                         f"example (it is {flag['status']})", field="flag")
    chain = flag["chain"]
    prompt, text = str(chain.get("prompt") or "").strip(), str(chain.get("text") or "").strip()
    if not prompt or not text:
        raise InputError(f"flag {flag_id}: the chain snapshot has no {'prompt' if not prompt else 'text'} to make "
                         "a worked example of", field="chain")
    rubric = ws.load_rubric_version(root, flag["rubric_name"])
    if any(e.prompt.strip() == prompt and e.answer.strip() == text for e in rubric.examples):
        raise InputError(f"chain {flag['chain_id']} is already a worked example of {rubric.name}", field="flag")
    data = rubric.model_dump(mode="json")
    data["examples"] = [{"prompt": prompt, "answer": text}, *data.get("examples", [])]
    new = rubric_from_data(data, source=f"promoted chain {flag['chain_id']}")
    provenance = {"kind": "promoted-example", "chain_id": flag["chain_id"], "flag_id": int(flag_id),
                  "review_id": latest["id"], "reviewer": latest["reviewer"], "promoted_by": promoted_by.strip(),
                  "reviewed_version": flag["rubric_version"]}
    note = (f"worked example from chain {flag['chain_id']} (flag #{flag_id}, review #{latest['id']} "
            f"by {latest['reviewer']}, promoted by {promoted_by.strip()})")
    return ws.save_rubric_version(root, new, note=note, provenance=provenance)


def example_warnings(chain: dict, rubric: Rubric) -> list[str]:
    """Positive-weight criteria the chain's automatic scores fail (and pitfalls they find): as the first
    worked example the teacher imitates it, so a promoted chain that fails a check teaches that failure.
    Measured on SmolLM2-135M: promoting a correct chain without the "Answer:" line, which pushed an
    example with it out of the teacher's two, took the teacher's final-answer-line rate from 0.25 to
    0.05 on the same 10 tasks × 2 samples (notes of the worked pass)."""
    scores = chain.get("scores") or {}
    out = []
    for c in rubric.criteria:
        value = scores.get(c.id)
        if value is None:
            continue
        if (c.weight > 0 and value < 0.5) or (c.weight < 0 and value >= 0.5):
            out.append(c.id)
    return out


def answered_review_ids(root: str | Path, name: str) -> set[int]:
    """Review ids some saved version of the rubric says it answers."""
    return {int(i) for entry in ws.rubric_versions(root, name)
            for i in (entry.get("provenance") or {}).get("answers_reviews", [])}


def needs_work_items(root: str | Path, store: ReviewStore, name: str) -> list[dict]:
    """Open "rubric needs work" items of a rubric: each flag whose latest decision is that, and no saved
    version answers yet. {review_id, flag_id, chain_id, criterion, reviewer, note, chain}, oldest first."""
    answered = answered_review_ids(root, name)
    out = []
    for row in store.queue(rubric=name, status="rubric-needs-work").itertuples():
        flag = store.flag(int(row.id))
        latest = flag["latest"]
        if latest["id"] in answered:
            continue
        out.append({"review_id": latest["id"], "flag_id": flag["id"], "chain_id": flag["chain_id"],
                    "criterion": flag["criterion"] or _first_failed(latest["verdicts"]),
                    "reviewer": latest["reviewer"], "note": latest["note"], "chain": flag["chain"]})
    return sorted(out, key=lambda item: item["review_id"])


def save_answering(root: str | Path, rubric: Rubric, review_ids: list[int], *, note: str = "") -> str:
    """Save a version that answers these review items (recorded in its history entry)."""
    ids = sorted({int(i) for i in review_ids})
    provenance = {"kind": "answers-reviews", "answers_reviews": ids} if ids else None
    label = f"answers review{'s' if len(ids) != 1 else ''} " + ", ".join(f"#{i}" for i in ids) if ids else ""
    return ws.save_rubric_version(root, rubric, note="; ".join(p for p in (note.strip(), label) if p),
                                  provenance=provenance)


def _first_failed(verdicts: dict) -> str | None:
    """The first criterion a reviewer failed: where the editor opens when the flag names none."""
    return next((cid for cid, v in verdicts.items() if v == 0.0), None)


# ---------------------------------------------------------------------------- review rounds


def start_round(root: str | Path, store: ReviewStore, *, set_id: str, name: str, reviewers: list[str] | str,
                overlap: int, created_by: str) -> int:
    """A review round over a saved chain set's chains (rubric and version from the set's meta)."""
    meta = ws.chain_set_meta(root, set_id)
    chains = ws.load_chain_set(root, set_id)
    people = [r.strip() for r in reviewers.split(",")] if isinstance(reviewers, str) else list(reviewers)
    return store.create_round(name, chains, rubric_name=meta.get("rubric", "?"),
                              rubric_version=meta.get("rubric_version", "?"), reviewers=[p for p in people if p],
                              overlap=int(overlap), created_by=created_by)


def round_agreement(store: ReviewStore, round_id: int) -> dict:
    """`scoring.agreement.agreement_report` of a round's reviews, the automatic scores of the chain
    snapshots as the judge; each disagreement carries its flag id."""
    from rcsd_core.scoring.agreement import agreement_report

    judge = {c["id"]: dict(c.get("scores") or {}) for c in store.round_chains(round_id)}
    report = agreement_report(store.review_rows(round_id), judge)
    flags = dict(zip(store.assignments(round_id)["chain_id"], store.assignments(round_id)["flag_id"]))
    for row in report["criteria"].values():
        for item in row["disagreements"]:
            item["flag_id"] = int(flags[item["chain_id"]])
    return report


def agreement_table(report: dict):
    """One row per criterion: the `rcsd agreement` figures, Fleiss' m and disagreeing chains counted."""
    import pandas as pd

    from rcsd_core.scoring.agreement import JSON_KEYS

    rows = [{"criterion": cid, **{k: row[k] for k in JSON_KEYS}, "ratings_per_chain": row["fleiss"]["m"],
             "disagreeing": len(row["disagreements"])} for cid, row in report["criteria"].items()]
    columns = ["criterion", *JSON_KEYS, "ratings_per_chain", "disagreeing"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({c: object for c in ("fleiss_kappa", "krippendorff_alpha", "judge_kappa", "precision",
                                             "recall", "f1")}).where(frame.notna(), None)


# ---------------------------------------------------------------------------- rubric iteration


def version_comparison(root: str | Path, store: ReviewStore, name: str, old: str, new: str, set_id: str):
    """Two saved versions of a rubric scored on one chain set side by side (scoring.versions), with
    the human verdicts on those chains and each version's saved signal (teacher − student pass
    rate, from its newest signal report; None when it was never measured)."""
    from rcsd_core.scoring.versions import compare_versions

    chains = ws.load_chain_set(root, set_id)
    ids = {c["id"] for c in chains}
    rows = [r for r in store.review_rows() if r["chain_id"] in ids]
    table = compare_versions(chains, ws.load_rubric_version(root, name, old), ws.load_rubric_version(root, name, new),
                             rows)
    for side, version in (("old", old), ("new", new)):
        report = ws.latest_signal_report(root, name, version)
        gaps = {cid: c.get("gap") for cid, c in (report or {}).get("criteria", {}).items()}
        table[f"signal_{side}"] = [gaps.get(cid) for cid in table["criterion"]]
    return table


# ---------------------------------------------------------------------------- the judge learns from reviewers


def round_rubric(root: str | Path, store: ReviewStore, round_id: int) -> Rubric:
    """The rubric version a round was started on (the current one when that version is not saved here)."""
    info = store.round(round_id)
    try:
        return ws.load_rubric_version(root, info["rubric_name"], info["rubric_version"])
    except InputError:
        return ws.load_rubric_version(root, info["rubric_name"])


def teach_judge(root: str | Path, store: ReviewStore, round_id: int, criterion_id: str, model, tokenizer, *,
                max_shots: int = 4) -> dict:
    """A local judge on one judged criterion of a round's chains, without and with the chains it
    disagreed with the reviewers on as few-shot examples (scoring.judge_shots); kappa on held-out chains."""
    from rcsd_core.scoring.agreement import latest_ratings
    from rcsd_core.scoring.judge_shots import judge_before_after
    from rcsd_core.scoring.judges import LocalJudge

    rubric = round_rubric(root, store, round_id)
    try:
        criterion = rubric.criterion(criterion_id)
    except KeyError:
        raise InputError(f"the round's rubric has no criterion {criterion_id!r}", field="criterion") from None
    ratings = latest_ratings(store.review_rows(round_id)).get(criterion_id, {})
    if not ratings:
        raise InputError(f"no reviewer gave a verdict on {criterion_id!r} in this round", field="criterion")
    return judge_before_after(lambda shots: LocalJudge(model, tokenizer, shots={criterion_id: list(shots)}),
                              criterion, store.round_chains(round_id), ratings, max_shots=max_shots)


def before_after_table(result: dict):
    """The judge–human figures before and after the shots, one row each."""
    import pandas as pd

    rows = [{"judge": label, **{k: (result[key] or {}).get(k) for k in ("kappa", "precision", "recall", "f1", "n",
                                                                         "ties", "note")}}
            for label, key in (("before", "before"), ("with the shots", "after")) if result[key] is not None]
    frame = pd.DataFrame(rows)
    return frame.astype(object).where(frame.notna(), None)


# ---------------------------------------------------------------------------- contrastive drafting


def reviewed_pairs(store: ReviewStore, rubric_name: str, limit: int = 4) -> tuple[list, list]:
    """(prompt, text) of up to `limit` accepted and `limit` rejected chains of a rubric (latest decisions)."""
    accepted, rejected = [], []
    for chain in store.reviewed_chains():
        if chain["review"]["rubric"] != rubric_name or not chain.get("text"):
            continue
        pair = (str(chain.get("prompt") or ""), chain["text"])
        side = {"accept": accepted, "reject": rejected}.get(chain["review"]["decision"])
        if side is not None and len(side) < limit and pair not in side:
            side.append(pair)
    return accepted, rejected


def add_kept_criteria(root: str | Path, name: str, rows: list[dict], *, accepted: int, rejected: int) -> str:
    """A new version of the rubric with the proposals a person kept (and edited); provenance says
    they came from contrastive drafting on so many accepted and rejected chains."""
    kept = [r for r in rows if r.get("keep")]
    if not kept:
        raise InputError("keep at least one proposed criterion", field="criteria")
    data = ws.load_rubric_version(root, name).model_dump(mode="json")
    data["criteria"] += [{"id": str(r["id"]).strip(), "title": str(r.get("title") or "").strip(),
                          "description": str(r.get("description") or "").strip(), "weight": r.get("weight")}
                         for r in kept]
    rubric = rubric_from_data(data, source="contrastive draft")
    return ws.save_rubric_version(root, rubric, note=f"{len(kept)} criteria drafted from {accepted} accepted vs "
                                                     f"{rejected} rejected chains",
                                  provenance={"kind": "contrastive-draft", "criteria": [r["id"] for r in kept],
                                              "accepted": accepted, "rejected": rejected})


def contrastive_proposals(root: str | Path, store: ReviewStore, name: str, model_name: str, *, limit: int = 4):
    """The model's proposed criteria separating this rubric's accepted from its rejected chains:
    (draft result, editable rows, n accepted, n rejected)."""
    from rcsd_core.design.drafting import draft_contrastive
    from rcsd_core.studio.state import cached_model

    accepted, rejected = reviewed_pairs(store, name, limit)
    model, tokenizer = cached_model(model_name.strip())
    result, rows = draft_contrastive(model, tokenizer, rubric=ws.load_rubric_version(root, name),
                                     accepted=accepted, rejected=rejected)
    return result, rows, len(accepted), len(rejected)
