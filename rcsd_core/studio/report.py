"""Report: one self-contained HTML file that shows stakeholders what a round changed.

    html = render_report(run_id="…", config=cfg, status=status, metrics=frame, evaluation=ev,
                         design=actions.run_design_reports(root, run_dir), alert=jobs.held_out_alert(run_dir))

`design` adds the rubric's validation before and during the round: the held-out watch, the newest
signal and ablation reports of the rubric version (verdict, figures, per-criterion attribution
and the chains behind them) and the lint findings (polarity, leak, saturated, ...) with the
chains they name.

The file embeds plotly.js once (inline, no CDN) and every figure after it, so it opens offline
and can be mailed as one attachment. Text from runs (prompts, chains, config values) is
HTML-escaped; nothing from the run is ever interpreted as markup.
"""

from __future__ import annotations

import html
from datetime import datetime, timezone

import pandas as pd
import plotly.graph_objects as go
import yaml

from rcsd_core.studio.charts import (ablation_divergence_figure, ablation_figure, before_after_figure,
                                     before_after_rows, change_figure, eval_totals_figure, metric_figures, prompt_pairs,
                                     watch_figure)

_CSS = """
body { font-family: -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif; margin: 2rem auto;
       max-width: 1100px; color: #1f2933; padding: 0 1rem; }
h1 { margin-bottom: 0.2rem; } .sub { color: #616e7c; margin-top: 0; }
table { border-collapse: collapse; width: 100%; margin: 0.8rem 0; font-size: 0.92rem; }
th, td { border-bottom: 1px solid #e4e7eb; padding: 0.35rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f5f7fa; } .up { color: #1b7f4c; font-weight: 600; } .down { color: #b42318; font-weight: 600; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; margin-bottom: 1.2rem; }
.pair pre { white-space: pre-wrap; background: #f5f7fa; padding: 0.6rem; border-radius: 6px; margin: 0; }
.cards { display: flex; gap: 1rem; flex-wrap: wrap; } .card { background: #f5f7fa; border-radius: 8px;
       padding: 0.6rem 1rem; min-width: 9rem; } .card b { display: block; font-size: 1.3rem; }
.note { color: #616e7c; font-size: 0.85rem; }
"""


def render_report(*, run_id: str, config: dict, status: dict, metrics: pd.DataFrame | None,
                  evaluation: dict | None, max_pairs: int = 5, design: dict | None = None,
                  alert: str | None = None, max_chains: int = 6) -> str:
    """The report as one HTML string (plotly.js inline once, figures after it)."""
    parts: list[str] = []
    figures: list[go.Figure] = []
    esc = html.escape
    title = f"RCSD round {run_id}"
    parts.append(f"<h1>{esc(title)}</h1>")
    parts.append(f"<p class='sub'>model <b>{esc(str(config.get('model', '?')))}</b> · method "
                 f"<b>{esc(str(config.get('method', '?')))}</b> · rubric "
                 f"<b>{esc(_rubric_name(config))}</b> · status <b>{esc(str(status.get('status', '?')))}</b> · "
                 f"generated {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}</p>")

    rows = before_after_rows(evaluation) if evaluation else pd.DataFrame()
    if not rows.empty:
        total = rows[rows["criterion"] == "total"]
        if not total.empty:
            t = total.iloc[0]
            parts.append("<div class='cards'>" + _card("eval total before", t["before"]) + _card("after", t["after"])
                         + _card("change", t["delta"], signed=True, ci=t["delta_ci"]) + "</div>")
        parts.append("<h2>Per criterion, before and after</h2>")
        figures.append(before_after_figure(rows[rows["criterion"] != "total"]))
        parts.append("{figure}")
        figures.append(change_figure(rows))
        parts.append("{figure}")
        parts.append(_criteria_table(rows))
    else:
        parts.append("<p class='note'>This run has no evaluation yet; the charts below show its training metrics.</p>")

    eval_fig = eval_totals_figure(metrics) if metrics is not None else None
    if eval_fig is not None:
        parts.append("<h2>Eval over steps</h2>")
        figures.append(eval_fig)
        parts.append("{figure}")
    train_figs = metric_figures(metrics) if metrics is not None else {}
    if train_figs:
        parts.append("<h2>Training</h2>")
        for key in ("loss", "divergence", "criteria"):
            if key in train_figs:
                figures.append(train_figs[key])
                parts.append("{figure}")

    watch = watch_figure(metrics) if metrics is not None else None
    if watch is not None or alert:
        parts.append("<h2>Held-out watch</h2>")
        parts.append(f"<p class='down'>Alert: {esc(alert)}</p>" if alert else
                     "<p class='note'>No alert: the trained total has not risen while a held-out criterion fell "
                     "beyond its interval.</p>")
        if watch is not None:
            figures.append(watch)
            parts.append("{figure}")
    if design:
        design_parts, design_figures = _design_sections(design, max_chains)
        parts += design_parts
        figures += design_figures

    pairs = prompt_pairs(evaluation) if evaluation else pd.DataFrame()
    if not pairs.empty:
        parts.append("<h2>The same prompt, before and after</h2>")
        for _, pair in pairs.head(max_pairs).iterrows():
            parts.append(f"<p><b>{esc(str(pair['task_id']))}</b>: {esc(str(pair['prompt']))}</p>")
            parts.append("<div class='pair'>"
                         f"<div><i>before</i> (total {_fmt(pair['before_total'])})<pre>{esc(str(pair['before']))}</pre></div>"
                         f"<div><i>after</i> (total {_fmt(pair['after_total'])})<pre>{esc(str(pair['after']))}</pre></div>"
                         "</div>")

    parts.append("<h2>Configuration</h2>")
    shown = {k: v for k, v in config.items() if k != "rubric_data"}
    parts.append(f"<pre>{esc(yaml.safe_dump(shown, sort_keys=False, allow_unicode=True))}</pre>")
    parts.append("<p class='note'>Intervals are 95% bootstrap confidence intervals. A change whose interval "
                 "includes zero is not distinguishable from noise at this sample size.</p>")

    body = []
    first = True
    figure_iter = iter(figures)
    for part in parts:
        if part == "{figure}":
            fig = next(figure_iter)
            body.append(fig.to_html(full_html=False, include_plotlyjs=True if first else False,
                                    config={"displaylogo": False}))
            first = False
        else:
            body.append(part)
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>" + "\n".join(body) + "</body></html>")


def _design_sections(design: dict, max_chains: int) -> tuple[list[str], list[go.Figure]]:
    """The rubric's validation: signal, ablation (verdict, figures, attribution, chains), lint findings."""
    esc = html.escape
    parts: list[str] = []
    figures: list[go.Figure] = []
    signal = design.get("signal")
    if signal:
        parts.append("<h2>Signal per criterion (before the round)</h2>")
        parts.append(f"<p class='sub'>{esc(str(signal.get('model')))} · {signal.get('tasks')} tasks × "
                     f"{signal.get('samples')} samples · mean divergence {_fmt(signal['divergence'].get('mean'))}</p>")
        figures.append(ablation_figure({"variants": {"rubric as a round shows it": signal}}))
        parts.append("{figure}")
        parts.append(_gap_table({"signal": signal}))
        chains = sorted((c for c in signal["divergence"].get("per_chain", []) if c.get("mean") is not None),
                        key=lambda c: -c["mean"])[:max_chains]
        if chains:
            parts.append("<h3>Student chains the teacher pulls hardest on</h3>")
            parts += [f"<p class='note'>{esc(str(c['id']))} · mean divergence {c['mean']:.3f}</p>"
                      f"<pre>{esc(str(c['text']))}</pre>" for c in chains]
    ablation = design.get("ablation")
    if ablation:
        parts.append("<h2>Does the rubric matter? (ablation of the teacher's context)</h2>")
        parts.append(f"<p><b>Verdict:</b> {esc(str(ablation['verdict']))}</p>")
        parts.append("<ul>" + "".join(f"<li><b>{esc(k)}</b>: {esc(str(v))}</li>"
                                      for k, v in ablation.get("variant_contexts", {}).items()) + "</ul>")
        figures += [ablation_figure(ablation), ablation_divergence_figure(ablation)]
        parts += ["{figure}", "{figure}", _gap_table(ablation["variants"])]
        if ablation.get("attribution"):
            parts.append("<h3>Leaving one criterion out of the teacher's context</h3>")
            rows = ["<table><tr><th>left out</th><th>share of divergence mass moved</th>"
                    "<th>its own gap, with → without</th><th>share of its gap moved</th></tr>"]
            for a in ablation["attribution"]:
                own = a["gap"].get(a["criterion"], {})
                rows.append(f"<tr><td>{esc(a['criterion'])}</td><td>{_fmt(a['divergence_mass']['share'])}</td>"
                            f"<td>{_fmt(own.get('full'))} → {_fmt(own.get('left_out'))}</td>"
                            f"<td>{_fmt(a.get('own_gap_share'))}</td></tr>")
            parts.append("\n".join(rows) + "</table>")
        parts.append("<h3>The chains behind it</h3>")
        shown = [("student (shared by every variant)", ablation.get("student_chains", []))]
        shown += [(f"teacher · {name}", v.get("teacher_chains", [])) for name, v in ablation["variants"].items()]
        for label, chains in shown:
            parts.append(f"<details><summary>{esc(label)} · {len(chains)} chains</summary>")
            parts += [f"<p class='note'>{esc(str(c['id']))} · total {_fmt(c.get('total'))}</p>"
                      f"<pre>{esc(str(c['text']))}</pre>" for c in chains[:max_chains]]
            parts.append("</details>")
    findings = design.get("lint")
    if findings is not None:
        parts.append("<h2>Rubric lint</h2>")
        if not findings:
            parts.append("<p class='note'>No findings.</p>")
        else:
            rows = ["<table><tr><th>severity</th><th>code</th><th>criteria</th><th>finding</th></tr>"]
            rows += [f"<tr><td>{esc(f['severity'])}</td><td>{esc(f['code'])}</td>"
                     f"<td>{esc(', '.join(f.get('criteria', [])))}</td><td>{esc(f['message'])}</td></tr>"
                     for f in findings]
            parts.append("\n".join(rows) + "</table>")
        texts = design.get("lint_chains") or {}
        if texts:
            parts.append("<details><summary>Chains named by the findings</summary>")
            parts += [f"<p class='note'>{esc(cid)}</p><pre>{esc(str(text))}</pre>"
                      for cid, text in list(texts.items())[:max_chains * 2]]
            parts.append("</details>")
    return parts, figures


def _gap_table(variants: dict) -> str:
    """Per criterion, per variant: student → teacher and the gap with its interval."""
    names = list(variants)
    ids = list(dict.fromkeys(cid for v in variants.values() for cid in v["criteria"]))
    rows = ["<table><tr><th>criterion</th>" + "".join(f"<th>{html.escape(n)}: student → teacher, gap</th>"
                                                      for n in names) + "</tr>"]
    for cid in ids:
        cells = []
        for n in names:
            c = variants[n]["criteria"].get(cid)
            if c is None:
                cells.append("<td>—</td>")
                continue
            cls = ("up" if c.get("helps") else "down") if c.get("signal") else ""
            cells.append(f"<td class='{cls}'>{_fmt(c.get('student'))} → {_fmt(c.get('teacher'))}, "
                         f"{_fmt(c.get('gap'), c.get('ci'), signed=True)}</td>")
        rows.append(f"<tr><td>{html.escape(cid)}</td>{''.join(cells)}</tr>")
    return "\n".join(rows) + "</table>"


def _criteria_table(rows: pd.DataFrame) -> str:
    lines = ["<table><tr><th>criterion</th><th>before</th><th>after</th><th>change [95% CI]</th></tr>"]
    for _, r in rows.iterrows():
        cls = ""
        if r["significant"]:
            cls = "up" if (r["delta"] or 0) > 0 else "down"
        lines.append(f"<tr><td>{html.escape(str(r['criterion']))}</td><td>{_fmt(r['before'])}</td>"
                     f"<td>{_fmt(r['after'])}</td>"
                     f"<td class='{cls}'>{_fmt(r['delta'], r['delta_ci'], signed=True)}</td></tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _card(label: str, value, *, signed: bool = False, ci=None) -> str:
    return f"<div class='card'>{html.escape(label)}<b>{_fmt(value, ci, signed=signed)}</b></div>"


def _fmt(value, ci=None, *, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "—"
    text = f"{value:+.3f}" if signed else f"{value:.3f}"
    if ci is not None and ci[0] is not None and ci[1] is not None:
        text += f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if signed else f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    return text


def _rubric_name(config: dict) -> str:
    rubric = config.get("rubric")
    if isinstance(rubric, dict):
        return str(rubric.get("name", "?"))
    return str(rubric or "?")
