"""The loop's report: one self-contained HTML file of plots (inline PNG), and a terminal summary.

Plots: drift per feature over time with the phases of the world and the moments the trigger fired
and v2 was registered; the rollout's traffic split and its checks per analysis; v1 and v2 side by
side (on the recent data's holdout, where the gate compared them, and live on labelled traffic).
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table

from mlops_core.jsonl_log import read_json_lines
from mlops_core.settings import Settings
from mlops_demo.loop_result import LoopResult

V1_COLOUR, V2_COLOUR = "#4C72B0", "#DD8452"
PHASE_COLOURS = ("#f2f2f2", "#fbe9d7", "#f8d9bb", "#f5c89f", "#f2b884")


DASHBOARD_URL = (
    f"http://127.0.0.1:{Settings().dashboard_http_port}/"  # where `mlops dashboard` serves
)


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def drift_figure(r: LoopResult) -> Figure:
    fig, ax = plt.subplots(figsize=(11, 4.6))
    if not r.timeline:
        ax.text(0.5, 0.5, "no drift evaluations", ha="center")
        return fig
    x = np.array([p.request for p in r.timeline])
    features = list(r.timeline[0].snapshot.psi)
    peak = {f: max(p.snapshot.psi.get(f, 0.0) for p in r.timeline) for f in features}
    loud = [f for f in features if any(p.snapshot.drifted.get(f) for p in r.timeline)]
    ends = [s for s, _ in r.phase_starts[1:]] + [int(x.max())]
    for i, (start, name) in enumerate(r.phase_starts):
        ax.axvspan(start, ends[i], color=PHASE_COLOURS[i % len(PHASE_COLOURS)], zorder=0)
        ax.text(
            (start + ends[i]) / 2,
            0.98,
            textwrap.fill(name, 22),
            transform=ax.get_xaxis_transform(),
            fontsize=8,
            ha="center",
            va="top",
            color="#555555",
        )
    cmap = plt.get_cmap("tab10")
    ordered = sorted(features, key=lambda f: -peak[f])
    for i, f in enumerate(ordered):
        y = [p.snapshot.psi.get(f, np.nan) for p in r.timeline]
        if f in loud:
            ax.plot(x, y, lw=2.4, color=cmap(i % 10), label=f"{f} (drifted)", zorder=3)
        else:
            label = "other features" if f == ordered[-1] else None
            ax.plot(x, y, lw=0.8, color="#9a9a9a", alpha=0.7, zorder=2, label=label)
    # Where the monitor judged a feature drifted: by PSI past its threshold, or by a significant
    # test with a material effect, which can happen below that PSI.
    xs_d = [p.request for p in r.timeline for f in loud if p.snapshot.drifted.get(f)]
    ys_d = [p.snapshot.psi[f] for p in r.timeline for f in loud if p.snapshot.drifted.get(f)]
    ax.scatter(xs_d, ys_d, s=22, color="black", zorder=4, label="judged drifted (PSI or test)")
    ax.set_ylim(0, max(0.3, r.psi_threshold * 1.2, ax.get_ylim()[1]) * 1.25)  # room for names
    ax.axhline(r.psi_threshold, ls="--", color="#c44e52", lw=1)
    ax.text(
        x.min(),
        r.psi_threshold,
        f"PSI threshold {r.psi_threshold:g} (the monitor's)",
        color="#c44e52",
        fontsize=8,
        va="bottom",
    )
    if r.trigger_request is not None:
        ax.axvline(r.trigger_request, color="black", lw=1.5)
        ax.annotate(
            f"retraining triggered\n(share drifted \u2265 {r.trigger_share_drifted:g})",
            (r.trigger_request, ax.get_ylim()[1] * 0.55),
            xytext=(6, 0),
            textcoords="offset points",
            fontsize=9,
            fontweight="bold",
        )
    ax.set_xlabel("requests served by v1 (the window holds 600 rows before its first verdict)")
    ax.set_ylabel("PSI vs v1's training data")
    ax.set_title("Drift per feature over time (sliding window of the stable server's traffic)")
    ax.set_xlim(0, x.max())
    ax.legend(loc="center left", fontsize=8, frameon=False, bbox_to_anchor=(1.0, 0.5))
    return fig


def rollout_figure(r: LoopResult) -> Figure:
    fig, (ax1, ax2) = plt.subplots(
        2, 1, figsize=(11, 6.2), sharex=True, gridspec_kw={"height_ratios": [1.2, 1]}
    )
    decisions = r.rollout_decisions
    if not decisions:
        ax1.text(0.5, 0.5, "no rollout decisions", ha="center")
        return fig
    times = [datetime.fromisoformat(d["at"]).timestamp() for d in decisions]
    t0 = times[0] - 2.0  # the baseline reading precedes the first decision by one interval
    traffic = [(t - t0, v) for t, v in r.rollout_traffic if t0 <= t <= times[-1] + 1]
    if traffic:
        edges = np.arange(0, max(t for t, _ in traffic) + 2, 2.0)
        share_v2 = []
        for a, b in itertools.pairwise(edges):
            in_bin = [(v == str(r.v2)) for t, v in traffic if a <= t < b]
            share_v2.append(100 * np.mean(in_bin) if in_bin else np.nan)
        mids = (edges[:-1] + edges[1:]) / 2
        s2 = np.array(share_v2)
        ax1.fill_between(
            mids, 0, s2, step="mid", color=V2_COLOUR, alpha=0.85, label=f"v{r.v2} (canary)"
        )
        ax1.fill_between(
            mids, s2, 100, step="mid", color=V1_COLOUR, alpha=0.85, label=f"v{r.v1} (stable)"
        )
    pct = [d["decision"]["canary_percent"] for d in decisions]
    rel = [t - t0 for t in times]
    ax1.step(
        rel, pct, where="post", color="black", lw=1.8, label="canary weight set by the analysis"
    )
    for t, d in zip(rel, decisions, strict=True):
        action = d["decision"]["action"]
        if action in ("step_up", "promote", "rollback"):
            ax1.annotate(
                action.replace("_", " "),
                (t, d["decision"]["canary_percent"]),
                xytext=(3, 4),
                textcoords="offset points",
                fontsize=8,
            )
    ax1.set_ylim(0, 105)
    ax1.set_ylabel("% of requests")
    ax1.set_title(f"Canary rollout of v{r.v2}: traffic split (served responses per 2 s)")
    ax1.legend(loc="center left", fontsize=8, frameon=False, bbox_to_anchor=(1.0, 0.5))

    def check_number(d: dict[str, Any], check: str, key: str) -> float:
        for c in d["decision"].get("checks", []):
            if c["name"] == check and key in c.get("numbers", {}):
                return float(c["numbers"][key])
        return np.nan

    div = [check_number(d, "predictions", "psi") for d in decisions]
    p99_c = [1e3 * check_number(d, "latency", "canary_p99_s") for d in decisions]
    p99_s = [1e3 * check_number(d, "latency", "stable_p99_s") for d in decisions]
    err_c = 100 * check_number(decisions[-1], "errors", "canary_error_rate")
    err_s = 100 * check_number(decisions[-1], "errors", "stable_error_rate")
    ax2.plot(rel, div, "o-", color="#8172B2", ms=4, label="prediction divergence, PSI (left)")
    ax2.axhline(0.2, ls="--", color="#8172B2", lw=0.8)
    ax2.text(rel[-1], 0.2, "divergence limit ", color="#8172B2", fontsize=8, va="top", ha="right")
    top = np.nanmax(div) if not np.all(np.isnan(div)) else 0.0
    ax2.set_ylim(0, max(0.25, top * 1.1))
    ax2.set_ylabel("PSI canary vs stable")
    ax2.set_xlabel("seconds since the canary started")
    ax3 = ax2.twinx()
    ax3.plot(rel, p99_c, "^-", color=V2_COLOUR, ms=4, label=f"v{r.v2} p99 latency, ms (right)")
    ax3.plot(rel, p99_s, "^--", color=V1_COLOUR, ms=4, label=f"v{r.v1} p99 latency, ms (right)")
    ax3.set_ylim(0, np.nanmax([*p99_c, *p99_s, 1.0]) * 1.15)
    ax3.set_ylabel("ms")
    lines = ax2.get_legend_handles_labels()
    lines3 = ax3.get_legend_handles_labels()
    ax2.legend(
        lines[0] + lines3[0],
        lines[1] + lines3[1],
        fontsize=8,
        frameon=False,
        loc="center left",
        bbox_to_anchor=(1.08, 0.5),
    )
    ax2.set_title(
        "The analysis' checks at each decision (cumulative); "
        f"5xx: canary {err_c:.2f}%, stable {err_s:.2f}%"
    )
    fig.tight_layout()
    return fig


# Live quality metrics by direction: one chart never mixes the two.
HIGHER_IS_BETTER = ("accuracy",)
LOWER_IS_BETTER = ("log_loss", "brier_score", "calibration_error")


def _bars(ax: Any, r: LoopResult, metrics: tuple[str, ...], values: Any) -> None:
    """Grouped bars from zero, v1 then v2 per metric, each labelled with its value."""
    width = 0.38
    xs = np.arange(len(metrics))
    for i, (version, colour) in enumerate(((str(r.v1), V1_COLOUR), (str(r.v2), V2_COLOUR))):
        ys = [values(version, m) for m in metrics]
        bs = ax.bar(xs + (i - 0.5) * width, ys, width, color=colour, label=f"v{version}")
        for b, v in zip(bs, ys, strict=True):
            if not np.isnan(v):
                ax.text(
                    b.get_x() + b.get_width() / 2,
                    v,
                    f"{v:.3f}",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
    ax.set_xticks(xs, [m.replace("_", " ") for m in metrics], fontsize=8)
    ax.set_ylim(bottom=0)


def versions_figure(r: LoopResult) -> Figure:
    fig, (ax1, ax2, ax3) = plt.subplots(
        1, 3, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1, 0.8, 1.6]}
    )
    # Left: where the gate compared them (recent data's holdout): ROC AUC on its full 0-1 scale.
    names = [f"v{r.v1}", f"v{r.v2}"]
    vals = [r.retrain.get("champion_metric") or np.nan, r.retrain.get("candidate") or np.nan]
    bars = ax1.bar(names, vals, color=[V1_COLOUR, V2_COLOUR])
    for b, v in zip(bars, vals, strict=True):
        ax1.text(b.get_x() + b.get_width() / 2, v, f"{v:.4f}", ha="center", va="bottom", fontsize=9)
    ax1.set_ylim(0, 1.05)
    ax1.set_title(
        "ROC AUC, recent data's holdout\n(the gate's comparison; higher is better)", fontsize=9
    )

    def live(version: str, metric: str) -> float:
        q = r.quality.get(version)
        return float(getattr(q, metric)) if q else np.nan

    _bars(ax2, r, HIGHER_IS_BETTER, live)
    ax2.set_title("Live, labelled traffic:\nhigher is better", fontsize=9)
    _bars(ax3, r, LOWER_IS_BETTER, live)
    ax3.set_title("Live, labelled traffic:\nlower is better", fontsize=9)
    counts = ", ".join(
        f"v{v}: {q.labelled if q else 0} labelled rows"
        for v, q in ((str(r.v1), r.quality.get(str(r.v1))), (str(r.v2), r.quality.get(str(r.v2))))
    )
    ax3.legend(fontsize=8, frameon=False, title=counts, title_fontsize=7)
    fig.tight_layout()
    return fig


def _events_table(r: LoopResult) -> str:
    rows = []
    for e in read_json_lines(Path(r.audit_dir) / "decisions.jsonl"):
        detail = {k: v for k, v in e.items() if k not in ("event", "event_id", "at", "model")}
        rows.append(
            f"<tr><td>{html.escape(e['at'])}</td><td><b>{html.escape(e['event'])}</b></td>"
            f"<td><code>{html.escape(e['event_id'])}</code></td>"
            f"<td>{html.escape(json.dumps(detail, default=str)[:400])}</td></tr>"
        )
    return (
        "<table><tr><th>at</th><th>event</th><th>id</th><th>detail</th></tr>"
        + "".join(rows)
        + "</table>"
    )


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;color:#222}
h1{margin-bottom:.2em} .lead{color:#555;margin-top:0}
.cards{display:flex;gap:1em;margin:1.2em 0}.card{flex:1;background:#f6f6f6;border-radius:8px;padding:.8em 1em}
.card .n{font-size:1.6em;font-weight:600}.card .l{color:#666;font-size:.85em}
img{max-width:100%;margin:.6em 0 1.6em} table{border-collapse:collapse;font-size:.8em;width:100%}
td,th{border-bottom:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}
code{font-size:.95em} details{margin:1em 0}
"""


TIMING_NAMES = {
    "train_v1": "train v1",
    "drift": "serve v1 while the world drifts",
    "retrain": "retraining run (triggered -> v2 registered, as in the audit trail)",
    "rollout": "canary rollout",
}


def retraining_seconds(audit_dir: str | Path) -> float | None:
    """From the audit trail: the retraining run's trigger to its completion."""
    events = {e["event"]: e for e in read_json_lines(Path(audit_dir) / "decisions.jsonl")}
    fired, done = events.get("retraining_triggered"), events.get("retraining_completed")
    if fired is None or done is None:
        return None
    return (
        datetime.fromisoformat(done["at"]) - datetime.fromisoformat(fired["at"])
    ).total_seconds()


def timings_line(r: LoopResult) -> str:
    return ", ".join(f"{TIMING_NAMES.get(k, k)} {v:.1f} s" for k, v in r.seconds.items())


def write_report(r: LoopResult, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    trig = r.trigger
    cards = [
        (f"{r.requests:,}", "requests served"),
        (f"{r.labels:,}", "labels received later"),
        (f"{r.failures}", "failed requests"),
        (f"v{r.v1} → v{r.v2}", "champion, before → after"),
        (
            f"{r.retrain.get('candidate', float('nan')):.3f} vs {r.retrain.get('champion_metric', float('nan')):.3f}",
            f"ROC AUC v{r.v2} vs v{r.v1} on recent data",
        ),
    ]
    card_html = "".join(
        f'<div class="card"><div class="n">{html.escape(n)}</div><div class="l">{html.escape(label)}</div></div>'
        for n, label in cards
    )
    audit = (
        html.escape(json.dumps(r.audit_example, indent=2, default=str))
        if r.audit_example
        else "(none)"
    )
    drifted = [f for f, d in r.timeline[-1].snapshot.drifted.items() if d] if r.timeline else []
    story = (
        f"v{r.v1} was trained and served. The world then changed: prices rose and customers with "
        f"many support tickets started to stay. The drift monitor inside the model server saw "
        f"<b>{html.escape(', '.join(drifted) or 'drift')}</b>; "
        f"after request {r.trigger_request} the trigger fired ({html.escape(trig.trigger_id if trig else '')}): "
        f"{html.escape(trig.reason if trig else 'did not fire')}. The training pipeline ran on recent data and "
        f"registered v{r.v2}, which the gate promoted; the canary analysis then moved it from "
        f"{r.rollout_decisions[0]['decision']['canary_percent'] if r.rollout_decisions else '?'}% to 100% of traffic: <b>{html.escape(r.rollout_action)}</b>."
    )
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>mlops loop report</title>
<style>{CSS}</style></head><body>
<h1>Drift → retraining → canary: the loop</h1><p class="lead">{story}</p>
<div class="cards">{card_html}</div>
<h2>1. The monitor saw the world drift</h2>
<img alt="drift per feature over time" src="data:image/png;base64,{_png(drift_figure(r))}">
<h2>2. v{r.v2} went out as a canary and was promoted</h2>
<img alt="traffic split and checks over the rollout" src="data:image/png;base64,{_png(rollout_figure(r))}">
<h2>3. The versions side by side</h2>
<img alt="v1 and v2 metrics" src="data:image/png;base64,{_png(versions_figure(r))}">
<h2>4. The audit trail</h2>
<p>Every decision, in order (<code>{html.escape(str(Path(r.audit_dir) / "decisions.jsonl"))}</code>):</p>
{_events_table(r)}
<details><summary>One prediction traced end to end: <code>mlops audit {html.escape(r.audit_example.get("request_id", "") if r.audit_example else "")} --audit-dir {html.escape(r.audit_dir)} --registry {html.escape(r.registry_uri)}</code></summary><pre>{audit}</pre></details>
<p class="lead">The same models, live: <code>mlops dashboard --registry {html.escape(r.registry_uri)} --audit-dir {html.escape(r.audit_dir)}</code>, then <a href="{DASHBOARD_URL}">{DASHBOARD_URL}</a> (docs/dashboard.md).</p>
<p class="lead">Timings: {html.escape(timings_line(r))}</p>
</body></html>"""
    path.write_text(body)
    r.report_path = str(path)
    return path


def print_summary(r: LoopResult, console: Console) -> None:
    table = Table(title="the loop", show_lines=False)
    table.add_column("step")
    table.add_column("what happened", overflow="fold")
    drifted = [f for f, d in r.timeline[-1].snapshot.drifted.items() if d] if r.timeline else []
    table.add_row("served", f"{r.requests} requests ({r.failures} failed), {r.labels} labels back")
    table.add_row("drift", f"{', '.join(drifted) or 'none'} past thresholds at the end")
    table.add_row(
        "trigger", f"{r.trigger.trigger_id}: {r.trigger.reason}" if r.trigger else "never fired"
    )
    if r.retrain:
        table.add_row(
            "retrain",
            f"v{r.v2} ({r.retrain['run_id']}): ROC AUC {r.retrain['candidate']:.4f} vs "
            f"v{r.v1} {r.retrain['champion_metric']:.4f} on recent data; promoted={r.retrain['promoted']}",
        )
    final = r.rollout_decisions[-1]["decision"]["reason"] if r.rollout_decisions else ""
    table.add_row("rollout", f"{r.rollout_action}: {final}")
    for v in (str(r.v1), str(r.v2)):
        q = r.quality.get(v)
        if q:
            table.add_row(
                f"live v{v}",
                f"accuracy {q.accuracy:.3f}, log loss {q.log_loss:.3f} over {q.labelled} labelled rows",
            )
    table.add_row("report", r.report_path)
    if r.audit_example:
        table.add_row(
            "audit",
            f"mlops audit {r.audit_example['request_id']} --audit-dir {r.audit_dir} --registry {r.registry_uri}",
        )
    console.print(table)
