"""Charts and tables the studio draws: pure functions from data to plotly figures and DataFrames.

Nothing here reads files or touches Streamlit, so the pages, the HTML report and the tests share
the same figures.

    frame = score_grid(records, rubric)            # chains × criteria, 1.0 / 0.0 / None
    fig = pass_rate_figure(records, rubric)        # student vs teacher pass rate per criterion
    figs = metric_figures(metrics)                 # loss, divergence, eval total, criteria, tokens/s, memory
    rows = before_after_rows(evaluation)           # per criterion: before, after, change, 95% CI
"""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd
import plotly.graph_objects as go

from rcsd_core.contracts.rubric import Rubric
from rcsd_core.contracts.tasks import Task, task_criteria
from rcsd_core.scoring.groups import group_means, group_values
from rcsd_core.scoring.stats import excludes_zero

PASS, FAIL, NULL = "#c8ecd0", "#f6c9c9", "#e6e6e6"          # good, bad, unscored (cell backgrounds)
CONTEXT_COLOURS = {"student": "#5b7fbf", "teacher": "#e39a3b"}
BEFORE_AFTER_COLOURS = {"before": "#9aa5b1", "after": "#2a9d8f"}
_LAYOUT = dict(template="plotly_white", margin=dict(l=40, r=20, t=48, b=40), height=340,
               legend=dict(orientation="h", yanchor="top", y=-0.22, xanchor="left", x=0))


# ---------------------------------------------------------------------------- previewed chains

def score_grid(records: list[dict], rubric: Rubric, tasks: Sequence[Task] | None = None, *,
               review: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per chain (id, task, context, total) and one column per criterion id (1.0/0.0/None).

    The chain column drops the chain set prefix ('<set id>/'), which is the same on every row.
    With `tasks`, their own criteria follow as one column per group (`weight:essential`,
    `tag:…`; `scoring.groups`): the chain's mean over its scored criteria in the group, else None.
    With `review` ({chain id: flag status}), a `review` column marks flagged chains (open, accept,
    reject, rubric-needs-work; empty when never flagged).
    """
    own = task_criteria(rubric, list(tasks or []))
    groups = list(group_values(records, lambda r: own.get(r.get("task_id"), [])))
    rows = []
    for r in records:
        row = {"chain": r["id"].rsplit("/", 1)[-1], "task": r.get("task_id"), "context": r.get("context"), "total": r.get("total")}
        if review is not None:
            row["review"] = review.get(r["id"], "")
        for c in rubric.criteria:
            row[c.id] = (r.get("scores") or {}).get(c.id)
        means = group_means(group_values([r], lambda r: own.get(r.get("task_id"), [])))
        row.update({g: means.get(g) for g in groups})
        rows.append(row)
    columns = ["chain", "task", "context", *(["review"] if review is not None else []), "total",
               *[c.id for c in rubric.criteria], *groups]
    return pd.DataFrame(rows, columns=columns)


def cell_colour(value: Any, pitfall: bool = False) -> str:
    """Green when the chain does well on the criterion, red when badly, grey when unscored.

    A pitfall's 1.0 means the flaw is present, so it is coloured as bad.
    """
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return NULL
    good = float(value) < 0.5 if pitfall else float(value) >= 0.5
    return PASS if good else FAIL


def style_score_grid(frame: pd.DataFrame, rubric: Rubric):
    """A pandas Styler colouring each criterion cell pass / fail / null (st.dataframe renders it)."""
    pitfalls = {c.id: c.is_pitfall for c in rubric.criteria}
    pitfalls.update({c: c == "weight:pitfall" for c in frame.columns if c.startswith(("weight:", "tag:"))})
    ids = [c for c in frame.columns if c in pitfalls]

    def colour(column: pd.Series) -> list[str]:
        return [f"background-color: {cell_colour(v, pitfalls[column.name])}" for v in column]

    return (frame.style.apply(colour, subset=ids)
            .format({**{c: _cell_text for c in ids}, "total": lambda v: "—" if pd.isna(v) else f"{v:.2f}"}))


def pass_rates(records: list[dict], rubric: Rubric, tasks: Sequence[Task] | None = None) -> pd.DataFrame:
    """Per criterion and context: pass rate over scored chains (share at 1.0), scored and null counts.

    With `tasks`, their own criteria follow as one row per group (counts over (chain, criterion)
    pairs); a shared criterion counts only the chains it applies to.
    """
    own = task_criteria(rubric, list(tasks or []))
    rows = []
    contexts = sorted({r.get("context") or "student" for r in records})
    for context in contexts:
        chosen = [r for r in records if (r.get("context") or "student") == context]
        for c in rubric.criteria:
            values = [(r.get("scores") or {}).get(c.id) for r in chosen
                      if not tasks or c.id in (r.get("scores") or {})]
            scored = [v for v in values if v is not None]
            rows.append({"criterion": c.id, "title": c.label, "context": context, "pitfall": c.is_pitfall,
                         "pass_rate": sum(v >= 0.5 for v in scored) / len(scored) if scored else None,
                         "scored": len(scored), "null": len(values) - len(scored)})
        for group, scored in group_values(chosen, lambda r: own.get(r.get("task_id"), [])).items():
            rows.append({"criterion": group, "title": group, "context": context,
                         "pitfall": group == "weight:pitfall",
                         "pass_rate": sum(v >= 0.5 for v in scored) / len(scored), "scored": len(scored),
                         "null": 0})
    return pd.DataFrame(rows, columns=["criterion", "title", "context", "pitfall", "pass_rate", "scored", "null"])


def pass_rate_figure(records: list[dict], rubric: Rubric, tasks: Sequence[Task] | None = None) -> go.Figure:
    """Grouped bars: student vs teacher pass rate per criterion (unscored criteria show no bar), then
    per group of the tasks' own criteria when `tasks` are given."""
    rates = pass_rates(records, rubric, tasks)
    fig = go.Figure()
    for context, group in rates.groupby("context", sort=False):
        fig.add_bar(name=context, x=group["criterion"], y=group["pass_rate"],
                    marker_color=CONTEXT_COLOURS.get(context), text=[_pct(v) for v in group["pass_rate"]],
                    textposition="outside",
                    customdata=group[["scored", "null"]].to_numpy(),
                    hovertemplate="%{x}<br>pass rate %{y:.0%}<br>scored %{customdata[0]}, unscored %{customdata[1]}"
                                  "<extra>" + context + "</extra>")
    fig.update_layout(barmode="group", title="Pass rate per criterion",
                      yaxis=dict(range=[0, 1.15], tickformat=".0%"), **_LAYOUT)
    return fig


# ---------------------------------------------------------------------------- round metrics

METRIC_PANELS = [
    ("loss", "Loss", ["train/loss"]),
    ("divergence", "Divergence (teacher vs student)", ["train/divergence"]),
    ("eval", "Eval total", ["eval/total"]),
    ("criteria", "Per-criterion pass rate (training chains)", "criterion/"),
    ("groups", "Tasks' own criteria by group (training chains)", "group/"),
    ("throughput", "Tokens per second", ["train/tokens_per_s"]),
    ("memory", "Peak memory (GiB)", ["memory/peak_gib", "memory/sampling_peak_gib", "memory/teacher_peak_gib",
                                     "memory/student_peak_gib"]),
]


def metric_figures(metrics: pd.DataFrame) -> dict[str, go.Figure]:
    """Line charts of a round's metrics by step; a panel appears only when it has data."""
    figures: dict[str, go.Figure] = {}
    if metrics is None or metrics.empty or "step" not in metrics:
        return figures
    for key, title, columns in METRIC_PANELS:
        if isinstance(columns, str):
            columns = [c for c in metrics.columns if c.startswith(columns)]
        columns = [c for c in columns if c in metrics and metrics[c].notna().any()]
        if not columns:
            continue
        fig = go.Figure()
        for column in columns:
            data = metrics[["step", column]].dropna()
            fig.add_scatter(x=data["step"], y=data[column], mode="lines+markers",
                            name=column.split("/", 1)[-1] if key in ("criteria", "groups") else column)
        fig.update_layout(title=title, showlegend=key in ("criteria", "groups"), **_LAYOUT)
        fig.update_xaxes(title_text="step" if key not in ("criteria", "groups") else None,
                         dtick=_step_tick(metrics["step"]))
        if key in ("criteria", "groups"):
            fig.update_yaxes(range=[-0.05, 1.05])
        figures[key] = fig
    return figures


def eval_totals_figure(metrics: pd.DataFrame) -> go.Figure | None:
    """Eval total (and per-criterion eval means) over steps, or None when the run logged no evals."""
    if metrics is None or metrics.empty or "step" not in metrics:
        return None
    columns = [c for c in metrics.columns if c == "eval/total" or c.startswith(("eval/criterion/", "eval/group/"))]
    columns = [c for c in columns if metrics[c].notna().any()]
    if not columns:
        return None
    fig = go.Figure()
    for column in columns:
        data = metrics[["step", column]].dropna()
        fig.add_scatter(x=data["step"], y=data[column], mode="lines+markers",
                        name=column.removeprefix("eval/criterion/").removeprefix("eval/group/").removeprefix("eval/"),
                        line=dict(width=4 if column == "eval/total" else 1.5))
    fig.update_layout(title="Eval over steps", **{**_LAYOUT, "height": 380})
    fig.update_xaxes(dtick=_step_tick(metrics["step"]))
    return fig


def watch_figure(metrics: pd.DataFrame) -> go.Figure | None:
    """The held-out watch: eval total and trained criteria beside each held-out criterion with its 95%
    band, by step; None when the run logged no held-out measure."""
    if metrics is None or metrics.empty or "step" not in metrics:
        return None
    held = [c for c in metrics.columns if c.startswith("eval/held_out/") and c.count("/") == 2
            and metrics[c].notna().any()]
    if not held:
        return None
    fig = go.Figure()
    trained = [c for c in metrics.columns if (c == "eval/total" or c.startswith("eval/criterion/"))
               and c.removeprefix("eval/criterion/") not in {h.removeprefix("eval/held_out/") for h in held}
               and metrics[c].notna().any()]
    for column in trained:
        data = metrics[["step", column]].dropna()
        fig.add_scatter(x=data["step"], y=data[column], mode="lines+markers", legendgroup="trained",
                        name=("trained total" if column == "eval/total" else column.removeprefix("eval/criterion/")),
                        line=dict(width=4 if column == "eval/total" else 1.2, dash=None if column == "eval/total"
                                  else "dot"))
    for column in held:
        cols = ["step", column] + [c for c in (f"{column}/low", f"{column}/high") if c in metrics]
        data = metrics[cols].dropna()
        if len(cols) == 4:
            fig.add_scatter(x=list(data["step"]) + list(data["step"])[::-1],
                            y=list(data[f"{column}/high"]) + list(data[f"{column}/low"])[::-1], fill="toself",
                            line=dict(width=0), opacity=0.25, showlegend=False, hoverinfo="skip")
        fig.add_scatter(x=data["step"], y=data[column], mode="lines+markers", line=dict(width=4),
                        name=f"held out: {column.removeprefix('eval/held_out/')}")
    fig.update_layout(title="Held-out watch (eval): trained vs held-out, 95% band", **{**_LAYOUT, "height": 380})
    fig.update_xaxes(dtick=_step_tick(metrics["step"]))
    return fig


# ---------------------------------------------------------------------------- ablation

def ablation_figure(report: dict) -> go.Figure:
    """Teacher − student gap per criterion, one bar group per ablation variant, 95% intervals as error bars."""
    fig = go.Figure()
    for name, variant in report["variants"].items():
        ids = list(variant["criteria"])
        gaps = [variant["criteria"][c]["gap"] for c in ids]
        lows = [variant["criteria"][c]["ci"][0] for c in ids]
        highs = [variant["criteria"][c]["ci"][1] for c in ids]
        fig.add_bar(x=ids, y=gaps, name=name, error_y=dict(
            type="data", symmetric=False,
            array=[(h - g) if None not in (h, g) else 0 for g, h in zip(gaps, highs)],
            arrayminus=[(g - lo) if None not in (lo, g) else 0 for g, lo in zip(gaps, lows)]))
    fig.update_layout(title="Does the rubric matter? Teacher − student pass rate per criterion and teacher context",
                      barmode="group", **{**_LAYOUT, "height": 380})
    fig.update_yaxes(title_text="gap (95% CI)")
    return fig


def ablation_divergence_figure(report: dict) -> go.Figure:
    """Mean per-token divergence of each variant's teacher on the student's chains, with its 95% interval."""
    names = list(report["variants"])
    means = [report["variants"][n]["divergence"] for n in names]
    cis = [report["variants"][n].get("divergence_ci") or [None, None] for n in names]
    fig = go.Figure()
    fig.add_bar(x=names, y=means, error_y=dict(
        type="data", symmetric=False,
        array=[(c[1] - m) if None not in (c[1], m) else 0 for m, c in zip(means, cis)],
        arrayminus=[(m - c[0]) if None not in (c[0], m) else 0 for m, c in zip(means, cis)]))
    fig.update_layout(title="Mean divergence teacher vs student on the student's chains", **_LAYOUT)
    return fig


# ---------------------------------------------------------------------------- before / after

def before_after_rows(evaluation: dict) -> pd.DataFrame:
    """Per criterion, then `total`: before, after, the change and its 95% CI (from eval.json).

    Reads rcsd_core.evaluation.before_after's result: `criteria` as a list of {criterion, weight, before, after,
    diff, ci_low, ci_high, significant} rows (a mapping id -> row is accepted too) and `total` as
    one such row. Pitfall rows give the rate at which the flaw shows.
    """
    items = evaluation.get("criteria") or []
    if isinstance(items, dict):
        items = [{"criterion": cid, **entry} for cid, entry in items.items()]
    items = list(items)
    if isinstance(evaluation.get("total"), dict):
        items.append({**evaluation["total"], "criterion": "total"})
    rows = []
    for entry in items:
        before, after = _num(entry.get("before")), _num(entry.get("after"))
        delta = _num(entry.get("diff", entry.get("delta")))
        if delta is None and before is not None and after is not None:
            delta = after - before
        ci = (entry.get("ci_low"), entry.get("ci_high"))
        if ci == (None, None) and entry.get("ci"):
            ci = tuple(entry["ci"])
        ci = ci if _has_ci(ci) else None
        rows.append({"criterion": entry.get("criterion"), "weight": entry.get("weight"), "before": before,
                     "after": after, "delta": delta, "delta_ci": ci, "significant": excludes_zero(ci),
                     "prompts": entry.get("prompts")})
    return pd.DataFrame(rows, columns=["criterion", "weight", "before", "after", "delta", "delta_ci", "significant",
                                       "prompts"])


def before_after_figure(rows: pd.DataFrame) -> go.Figure:
    """Grouped bars: mean score before vs after per criterion (pitfalls: rate of the flaw)."""
    fig = go.Figure()
    for side in ("before", "after"):
        fig.add_bar(name=side, x=rows["criterion"], y=rows[side], marker_color=BEFORE_AFTER_COLOURS[side],
                    text=[_pct(v) for v in rows[side]], textposition="outside")
    fig.update_layout(barmode="group", title="Before vs after, per criterion",
                      yaxis=dict(range=[0, 1.15], tickformat=".0%"), **_LAYOUT)
    return fig


def change_figure(rows: pd.DataFrame) -> go.Figure:
    """The change (after − before) per criterion with its paired bootstrap 95% CI; zero marked."""
    plus = [(ci[1] - d) if ci is not None and d is not None else None for d, ci in zip(rows["delta"], rows["delta_ci"])]
    minus = [(d - ci[0]) if ci is not None and d is not None else None for d, ci in zip(rows["delta"], rows["delta_ci"])]
    colours = ["#1b7f4c" if sig and (d or 0) > 0 else "#b42318" if sig else "#616e7c"
               for d, sig in zip(rows["delta"], rows["significant"])]
    fig = go.Figure(go.Scatter(x=rows["delta"], y=rows["criterion"], mode="markers",
                               marker=dict(size=11, color=colours),
                               error_x=dict(type="data", array=plus, arrayminus=minus, visible=True),
                               hovertemplate="%{y}: %{x:+.3f}<extra></extra>"))
    fig.add_vline(x=0, line_dash="dash", line_color="#9aa5b1")
    fig.update_layout(title="Change (after − before), 95% CI", xaxis_title="grey: interval includes zero",
                      yaxis=dict(autorange="reversed"), **{**_LAYOUT, "height": 80 + 34 * max(len(rows), 3)})
    return fig


def prompt_pairs(evaluation: dict) -> pd.DataFrame:
    """Same prompt before and after: task_id, prompt, reference, before/after text (first chain) and totals."""
    rows = []
    for item in evaluation.get("prompts") or []:
        rows.append({"task_id": item.get("task_id"), "prompt": item.get("prompt", ""),
                     "reference": item.get("reference"),
                     "before": _first_text(item.get("before")), "before_total": item.get("before_total"),
                     "after": _first_text(item.get("after")), "after_total": item.get("after_total")})
    return pd.DataFrame(rows, columns=["task_id", "prompt", "reference", "before", "before_total", "after",
                                       "after_total"])


# ---------------------------------------------------------------------------- helpers

def _cell_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "·"
    return "✓" if float(value) >= 0.5 else "✗"


def _pct(value: Any) -> str:
    return "" if value is None or pd.isna(value) else f"{value:.0%}"


def _step_tick(steps: pd.Series) -> int | None:
    """Whole-number ticks on short rounds (plotly would label step 1.5 otherwise)."""
    span = pd.to_numeric(steps, errors="coerce").max()
    return 1 if pd.notna(span) and span <= 12 else None


def _num(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else float(value)


def _first_text(value: Any) -> str:
    if isinstance(value, list):
        return str(value[0]) if value else ""
    return "" if value is None else str(value)


def _has_ci(ci) -> bool:
    return ci is not None and ci[0] is not None and ci[1] is not None


