"""The run browser's pages, rendered on the server as plain HTML (no script, no build step).

Everything that comes from a run (ids, texts, reasons, errors) goes through :func:`esc`; the app also sends a
Content-Security-Policy that allows no script at all, so a candidate text holding ``<script>`` is shown, never run.
A page of a run that is still going reloads itself every few seconds (``<meta http-equiv="refresh">``).
"""

from __future__ import annotations

import html
from typing import Any, Final
from urllib.parse import quote

from synth_opt.gepa.report import describe_report
from synth_opt.view.data import CandidateDetail, CandidateNode, Decision, RunDetail, RunSummary
from synth_opt.view.diff import word_diff

__all__ = ["REFRESH_SECONDS", "candidate_page", "esc", "message_page", "run_page", "runs_page"]

REFRESH_SECONDS: Final = 3

_STYLE: Final = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em 2em; color: #1d2433; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
table { border-collapse: collapse; } td, th { padding: .25em .7em; border-bottom: 1px solid #e2e5ec; text-align: left; }
th { background: #f4f6fa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
a { color: #2452b8; text-decoration: none; } a:hover { text-decoration: underline; }
.badge { padding: .05em .45em; border-radius: .3em; font-size: .85em; background: #e9ecf3; }
.completed, .accepted, .seed { background: #dff3e4; } .failed, .rejected { background: #f9e0e0; }
.cancelled { background: #f3ecd9; } .live { background: #dbe8fb; }
ul.tree, ul.tree ul { list-style: none; padding-left: 1.4em; border-left: 1px dotted #b8bfcc; }
ul.tree { border-left: none; padding-left: 0; } ul.tree li { margin: .2em 0; }
pre.text { white-space: pre-wrap; background: #f8f9fb; border: 1px solid #e2e5ec; padding: .8em; max-width: 70em; }
del { background: #fbd8d8; text-decoration: line-through; } ins { background: #d4f5dc; text-decoration: none; }
.muted { color: #6b7385; } nav { margin-bottom: 1em; }
"""


def esc(value: object) -> str:
    """``value`` as text safe inside HTML (and inside an attribute)."""
    return html.escape("" if value is None else str(value), quote=True)


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _cost(run: RunSummary) -> str:
    if not run.cost_known:
        return "-"
    return "unknown" if run.cost_usd is None else f"${run.cost_usd:.4f}"


def _href(*parts: str) -> str:
    return "/" + "/".join(quote(part, safe="") for part in parts)


def _badge(status: str) -> str:
    return f'<span class="badge {esc(status)}">{esc(status)}</span>'


def _page(title: str, body: str, *, live: bool = False) -> str:
    refresh = f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">' if live else ""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">{refresh}<title>{esc(title)}</title>'
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def runs_page(runs: list[RunSummary], runs_dir: str) -> str:
    rows = "".join(f"<tr>{_run_cell(run)}{_run_row(run)}</tr>" for run in runs)
    table = (
        "<table id='runs'><tr><th>run</th><th>status</th><th>seed train</th><th>best train</th><th>seed heldout</th>"
        "<th>best heldout</th><th>proposals</th><th>accepted</th><th>cost</th><th>updated</th></tr>"
        f"{rows}</table>"
        if runs
        else '<p class="muted">No runs with a workspace here yet.</p>'
    )
    live = any(run.live or run.problem for run in runs)  # an unreadable run may be a run starting
    return _page("synth_opt runs", f'<h1>Runs</h1><p class="muted">{esc(runs_dir)}</p>{table}', live=live)


def _run_cell(run: RunSummary) -> str:
    """The run's link (by its directory, which may differ from the run id: a renamed run, a copy)."""
    elsewhere = f' <span class="muted">in {esc(run.directory)}</span>' if run.directory != run.run_id else ""
    return f'<td><a href="{_href("runs", run.directory)}">{esc(run.run_id)}</a>{elsewhere}</td>'


def _run_row(run: RunSummary) -> str:
    if run.problem is not None:
        return f'<td>{_badge("unreadable")}</td><td colspan="8" class="problem">{esc(run.problem)}</td>'
    return (
        f"<td>{_badge(run.status if not run.live else 'live')}</td>"
        f'<td class="num">{_score(run.seed_train_score)}</td><td class="num">{_score(run.best_train_score)}</td>'
        f'<td class="num">{_score(run.seed_heldout_score)}</td><td class="num">{_score(run.best_heldout_score)}</td>'
        f'<td class="num">{run.proposals}</td><td class="num">{run.accepted}</td>'
        f'<td class="num">{esc(_cost(run))}</td><td class="muted">{esc(run.updated_at)}</td>'
    )


def run_page(detail: RunDetail) -> str:
    run = detail.summary
    where = run.directory
    status = _badge("live" if run.live else run.status)
    facts = [
        ("status", status + (f" <span class='muted'>{esc(run.stop_reason)}</span>" if run.stop_reason else "")),
        ("train (pareto rows)", f"seed {_score(run.seed_train_score)} &rarr; best {_score(run.best_train_score)}"),
        ("heldout", f"seed {_score(run.seed_heldout_score)} &rarr; best {_score(run.best_heldout_score)}"),
        *_report_fact(run.heldout_report),
        ("proposals", f"{run.proposals} ({run.accepted} accepted)"),
        ("rollouts", esc(run.rollouts_total if run.rollouts_total is not None else "-")),
        ("cost", esc(_cost(run))),
    ]
    if run.error:
        facts.append(("error", esc(run.error)))
    summary = (
        '<table id="summary">'
        + "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in facts)
        + "</table>"
    )
    chart = (
        f'<h2>Score chart</h2><img alt="score chart" src="{_href("runs", where, "score_chart.svg")}">'
        if detail.has_chart
        else ""
    )
    tree = _tree(where, detail)
    heldout = "".join(
        f'<tr><td><a href="{_href("runs", where, "candidates", cid)}">{esc(cid)}</a>'
        f"{' (seed)' if cid == detail.seed_candidate_id else ''}{' (best)' if cid == detail.best_candidate_id else ''}"
        f'</td><td class="num">{_score(mean)}</td><td class="num">{rows}</td></tr>'
        for cid, mean, rows in detail.heldout
    )
    heldout_table = (
        f'<h2>Heldout</h2><table id="heldout"><tr><th>candidate</th><th>mean</th><th>rows</th></tr>{heldout}</table>'
        if heldout
        else ""
    )

    def made(decision: Decision) -> str:
        node = detail.nodes.get(decision.candidate_id)
        own = node is not None and node.proposal_index == decision.proposal_index
        return "" if own else ' <span class="muted">(no new candidate: its parent)</span>'

    decisions = "".join(
        f'<tr><td class="num">{d.proposal_index}</td>'
        f'<td><a href="{_href("runs", where, "candidates", d.candidate_id)}">{esc(d.candidate_id)}</a>'
        f"{made(d)}</td>"
        f"<td>{_badge('accepted' if d.accepted else 'rejected')}</td><td>{esc(d.reason)}{_how(where, d)}</td>"
        f'<td class="num">{_score(d.parent_sum)}</td><td class="num">{_score(d.child_sum)}</td></tr>'
        for d in detail.decisions
    )
    body = (
        f'<nav><a href="/">runs</a> / {esc(run.run_id)}</nav><h1>{esc(run.run_id)}</h1>{summary}{chart}'
        f'<h2>Lineage</h2><ul class="tree" id="lineage">{tree}</ul>{heldout_table}'
        "<h2>Decisions</h2><table id='decisions'><tr><th>proposal</th><th>candidate</th><th>decision</th>"
        f"<th>reason</th><th>parent minibatch</th><th>child minibatch</th></tr>{decisions}</table>"
    )
    return _page(run.run_id, body, live=run.live)


def _report_fact(report: dict[str, Any] | None) -> list[tuple[str, str]]:
    if not report:
        return []
    text = esc(describe_report(report))
    if report.get("overfit_flag"):
        text += ' <span class="badge failed">overfit?</span>'
    return [("heldout best &minus; seed", f'<span id="heldout-report">{text}</span>')]


def _tree(where: str, detail: RunDetail) -> str:
    """The lineage as nested lists, built with a stack (a chain of thousands of candidates is as deep)."""
    parts: list[str] = []
    stack: list[CandidateNode | None] = list(reversed(detail.roots))  # None: close the node opened last
    while stack:
        node = stack.pop()
        if node is None:
            parts.append("</ul></li>")
        elif node.children:
            parts.append(f"{_node(where, node, detail)}<ul>")
            stack.append(None)
            stack.extend(reversed(node.children))
        else:
            parts.append(f"{_node(where, node, detail)}</li>")
    return "".join(parts)


def _node(where: str, node: CandidateNode, detail: RunDetail) -> str:
    """A lineage node's opening ``<li>`` and its line (its children and ``</li>`` follow)."""
    marks = []
    if node.candidate_id == detail.best_candidate_id:
        marks.append('<span class="badge accepted">best</span>')
    scores = []
    if node.mean_score is not None:
        scores.append(f"pareto {_score(node.mean_score)}")
    if node.heldout_score is not None:
        scores.append(f"heldout {_score(node.heldout_score)}")
    if node.decision is not None:
        scores.append(f"minibatch {_score(node.decision.parent_sum)} &rarr; {_score(node.decision.child_sum)}")
    proposal = f"p{node.proposal_index} " if node.proposal_index is not None else ""
    reason = f" <span class='muted'>{esc(node.reason)}</span>" if node.reason else ""
    return (
        f'<li class="node" data-candidate="{esc(node.candidate_id)}">{esc(proposal)}'
        f'<a href="{_href("runs", where, "candidates", node.candidate_id)}">{esc(node.candidate_id)}</a> '
        f"{_badge(node.status)}{reason} {' '.join(marks)} <span class='muted'>{'; '.join(scores)}</span>"
    )


def candidate_page(detail: CandidateDetail) -> str:
    node = detail.node
    sections = []
    for module, text in detail.payload.items():
        parent_text = (detail.parent_payload or {}).get(module)
        if parent_text is None:
            shown, note = esc(text), "" if detail.parent_id is None else " (new module)"
        elif parent_text == text:
            shown, note = esc(text), " (unchanged)"
        else:
            shown, note = word_diff(parent_text, text), " (changes against the parent)"
        sections.append(f'<h2>{esc(module)}<span class="muted">{note}</span></h2><pre class="text">{shown}</pre>')
    parent = (
        f'<p>parent: <a href="{_href("runs", detail.directory, "candidates", detail.parent_id)}">'
        f"{esc(detail.parent_id)}</a></p>"
        if detail.parent_id
        else "<p>the seed candidate</p>"
    )
    decision = ""
    if node.decision is not None:
        d = node.decision
        decision = (
            f"<p>proposal {d.proposal_index}: {_badge('accepted' if d.accepted else 'rejected')} {esc(d.reason)}"
            f"{_how(detail.directory, d)} "
            f"(minibatch {_score(d.parent_sum)} &rarr; {_score(d.child_sum)})</p>"
        )
    rows = "".join(
        f'<tr><td>{esc(row)}</td><td class="num">{_score(score)}</td></tr>' for row, score in detail.scores.items()
    )
    scores = (
        f"<h2>Pareto rows</h2><table id='scores'><tr><th>row</th><th>reward</th></tr>{rows}</table>" if rows else ""
    )
    body = (
        f'<nav><a href="/">runs</a> / <a href="{_href("runs", detail.directory)}">{esc(detail.run_id)}</a> / '
        f"{esc(node.candidate_id)}</nav><h1>{esc(node.candidate_id)} {_badge(node.status)}</h1>{parent}{decision}"
        f"{''.join(sections)}{scores}"
    )
    return _page(node.candidate_id, body, live=detail.live)


def _how(where: str, decision: Decision) -> str:
    """How a pipelined proposal came about: asked again (its first reply repeated edits in flight), rebased."""
    notes = []
    if decision.repeated:
        others = ", ".join(f"p{index}" for index in decision.repeated)
        notes.append(f"asked again: its first reply repeated {others}")
    if decision.rebased_onto:
        href = _href("runs", where, "candidates", decision.rebased_onto)
        notes.append(f'rebased onto <a href="{href}">{esc(decision.rebased_onto)}</a>')
    return "".join(f' <span class="muted how">({note})</span>' for note in notes)


def message_page(title: str, message: str) -> str:
    return _page(title, f'<nav><a href="/">runs</a></nav><h1>{esc(title)}</h1><p>{esc(message)}</p>')
