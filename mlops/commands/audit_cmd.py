"""`mlops audit REQUEST_ID`: data, run, version and revision behind a prediction; what came next."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import typer
from rich.console import Console

from mlops_core.settings import load_settings

console = Console()


def audit(
    request_id: str = typer.Argument(..., help="the request id a prediction response carried"),
    audit_dir: str | None = typer.Option(
        None, "--audit-dir", help="the servers' audit logs [env MLOPS_AUDIT_DIR]"
    ),
    registry: str | None = typer.Option(None, "--registry", help="[env MLOPS_REGISTRY_URI]"),
    as_json: bool = typer.Option(False, "--json", help="print the whole answer as JSON"),
) -> None:
    """Trace one prediction: its data, run, version and revision, and the run that came next."""
    from mlops_control.audit import audit_request

    s = load_settings(audit_dir=audit_dir, registry_uri=registry)
    answer = audit_request(request_id, audit_dir=s.audit_dir, registry_uri=s.registry_uri)
    if as_json:
        console.print_json(json.dumps(answer, default=str))
        return
    served, v = answer["served"], answer["version"]
    console.print(f"[bold]request {request_id}[/bold]")
    console.print(
        f"  served by {served['model']} v{served['version']} on revision {served['revision']} "
        f"at {datetime.fromtimestamp(served['at'], UTC).isoformat(timespec='seconds')}"
    )
    for row in served.get("features_used") or []:
        console.print(
            f"  feature values looked up: {json.dumps(row)}", highlight=False, soft_wrap=True
        )
    console.print(f"  made by run {v['run_id']} from data {v['data_source'] or '-'}")
    console.print(f"  data fingerprint {v['data_fingerprint']}, code {v['code_version']}")
    features = v.get("feature_lineage") or {}
    if features:
        console.print(
            f"  training set from feature service {features['feature_service']!r}: "
            f"fingerprint {features['fingerprint']}, {features['rows']} rows "
            f"({features['dropped_rows']} label rows had no features in force)",
            highlight=False,
        )
        for view, d in sorted(features["views"].items()):
            age = f"max age {d['max_age_s']:.0f} s" if d["max_age_s"] else "no max age"
            console.print(
                f"    feature view {view}: definition {d['definition_sha'][:16]}, {age}",
                highlight=False,
            )
    made = answer["version_made_by"]
    if made and made["trigger"]:
        console.print(
            f"  that run was started by trigger {made['trigger']['trigger_id']}: "
            f"{made['trigger']['reason']}",
            highlight=False,
        )
    nxt = answer["next_run"]
    if nxt:
        t = nxt["trigger"]
        console.print(
            f"  next run: trigger {t.get('trigger_id')} at {t['at']} ({t.get('reason')}) -> "
            f"v{nxt['produced_version'] or '?'}",
            highlight=False,
        )
    else:
        console.print("  no retraining was triggered after this prediction")
    holds = sum(1 for r in answer["rollout"] if r["action"] == "hold")
    if holds:
        console.print(f"  rollout: {holds} analyses held the canary's share (see --json)")
    for r in (r for r in answer["rollout"] if r["action"] != "hold"):
        console.print(
            f"  rollout {r['at']}: v{r['stable_version']} -> v{r['canary_version']} "
            f"{r['action']}"
            + (f" ({r['canary_percent']}%)" if r["canary_percent"] is not None else " (final)"),
            highlight=False,
        )
