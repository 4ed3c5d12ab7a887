"""An experiment run locally: the strategy's pure step applied each interval through the router.

`start` checks the policy and versions, sets the router's split (bandit, A/B/n) or shadow tee and
writes the experiment's record (`<work_dir>/experiments/<model>.json`: policy, versions, the
strategy's state, the last decision). `step` reads one interval's evidence (matured rewards from
the label join; the tee's pairs for a shadow), applies the strategy's step, moves the router, and
appends the decision as a JSON line (`<model>.decisions.jsonl`). A winner is promoted the way a
canary is: the router keeps only it, and it becomes the registry's champion.

The record is rewritten after every step, so a restarted `mlops experiment run` resumes, and the
strategies skip an interval they already stepped.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from mlops_control.experiments.abn import ABnPolicy, ABnState, abn_step, start_abn
from mlops_control.experiments.bandit import BanditPolicy, BanditState, bandit_step, start_bandit
from mlops_control.experiments.errors import ExperimentError
from mlops_control.experiments.evidence import IntervalEvidence, matured_rewards
from mlops_control.experiments.label_join import join_labels
from mlops_control.experiments.policy_file import ExperimentPolicy, experiment_policy
from mlops_control.experiments.shadow import MirroredRequest, ShadowPolicy, shadow_readout
from mlops_control.traffic.shadow_tee import MIRROR_LOG
from mlops_core.jsonl_log import DecisionLog, read_rotated_json_lines
from mlops_core.registry import ModelRegistry


class ExperimentRunning(ExperimentError):
    """An experiment is already running for the model."""


class NoExperiment(ExperimentError):
    """No experiment has been started for the model."""


class RouterUnavailable(ExperimentError):
    """The local router refused or did not answer."""


@dataclass(frozen=True)
class Where:
    model: str
    router_url: str
    registry_uri: str
    audit_dir: Path
    work_dir: Path

    @property
    def record_path(self) -> Path:
        return self.work_dir / "experiments" / f"{self.model}.json"

    @property
    def decision_path(self) -> Path:
        return self.work_dir / "experiments" / f"{self.model}.decisions.jsonl"


@dataclass(frozen=True)
class Experiment:
    strategy: str
    policy: dict[str, Any]
    versions: list[str]  # the first is the control (the router's stable version)
    started_at: float
    state: dict[str, Any]
    decisions: int = 0
    last_decision: dict[str, Any] | None = None
    done: bool = False
    labels_log: str = ""
    mirror_log: str = ""
    notes: dict[str, Any] = field(default_factory=dict)

    def parsed_policy(self) -> ExperimentPolicy:
        return experiment_policy({"strategy": self.strategy, **self.policy})

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def load(where: Where) -> Experiment:
    try:
        return Experiment(**json.loads(where.record_path.read_text()))
    except FileNotFoundError as e:
        raise NoExperiment(
            f"no experiment for {where.model} (start one with `mlops experiment start`)"
        ) from e


def _save(where: Where, exp: Experiment) -> None:
    where.record_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = where.record_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(exp.to_dict(), indent=1))
    os.replace(tmp, where.record_path)


def _router(where: Where, method: str, path: str, doc: dict[str, Any] | None = None) -> Any:
    try:
        r = httpx.request(method, where.router_url + path, json=doc, timeout=300)
    except httpx.HTTPError as e:
        raise RouterUnavailable(f"the router at {where.router_url} did not answer: {e}") from e
    if r.status_code != 200:
        raise RouterUnavailable(f"the router refused {method} {path}: {r.text[:500]}")
    return r.json()


def start(where: Where, policy_doc: dict[str, Any], versions: list[str]) -> Experiment:
    policy = experiment_policy(policy_doc)  # checked in full before anything moves
    if where.record_path.exists() and not load(where).done:
        raise ExperimentRunning(
            f"an experiment for {where.model} is running; see `mlops experiment status`"
        )
    router = _router(where, "GET", "/router/state")
    stable = (router.get("stable") or {}).get("version")
    if isinstance(policy, ABnPolicy):
        if versions and versions != list(policy.shares):
            raise ExperimentError(
                f"--versions {versions} differ from the policy's shares {list(policy.shares)}"
            )
        versions = list(policy.shares)
    if len(versions) < 2:
        raise ExperimentError(f"an experiment needs two or more versions, got {versions}")
    if versions[0] != stable:
        raise ExperimentError(
            f"the first version (the control) must be the router's stable version {stable}, "
            f"got {versions[0]}"
        )
    strategy = str(policy_doc["strategy"])
    state: dict[str, Any]
    if isinstance(policy, BanditPolicy):
        bandit = start_bandit(policy, versions)
        state = bandit.to_dict()
        routed = _router(where, "PUT", "/router/split", {"percents": bandit.percents})
    elif isinstance(policy, ABnPolicy):
        state = start_abn(policy).to_dict()
        routed = _router(where, "PUT", "/router/split", {"percents": policy.shares})
    else:
        if len(versions) != 2:
            raise ExperimentError(f"a shadow needs the primary and one shadow, got {versions}")
        state = {"readout": None}
        shadow = {"version": versions[1], "percent": policy.mirror_percent}
        routed = _router(where, "PUT", "/router/shadow", shadow)
    exp = Experiment(
        strategy=strategy,
        policy={k: v for k, v in policy_doc.items() if k != "strategy"},
        versions=versions,
        started_at=time.time(),
        state=state,
        labels_log=routed["labels_log"],
        mirror_log=str(Path(routed["labels_log"]).with_name(MIRROR_LOG)),
    )
    DecisionLog(where.decision_path).append(
        "experiment_start", model=where.model, strategy=strategy, versions=versions
    )
    _save(where, exp)
    return exp


def next_due(exp: Experiment) -> float:
    """When the next step is due: the end of the next interval (a shadow: now)."""
    policy = exp.parsed_policy()
    if isinstance(policy, ShadowPolicy):
        return time.time()
    k = int(exp.state.get("interval", -1)) + 1
    return exp.started_at + (k + 1) * policy.interval_s


def step(where: Where) -> Experiment:
    """One interval: evidence in, the strategy's decision applied and recorded."""
    exp = load(where)
    if exp.done:
        return exp
    policy = exp.parsed_policy()
    if isinstance(policy, ShadowPolicy):
        decision, state, final = _shadow_step(exp, policy)
    else:
        decision, state, final = _split_step(where, exp, policy)
    # Applied first: if the router refuses, nothing is recorded, and the next run takes the same
    # interval again (the step is pure, so it decides the same).
    _apply(where, replace(exp, done=final), decision)
    line = DecisionLog(where.decision_path).append(
        "experiment_decision", model=where.model, strategy=exp.strategy, **decision
    )
    exp = replace(exp, state=state, decisions=exp.decisions + 1, last_decision=line, done=final)
    _save(where, exp)
    return exp


def _split_step(
    where: Where, exp: Experiment, policy: BanditPolicy | ABnPolicy
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    # Interval k covers the predictions that matured by its end: made up to
    # started_at + (k+1) interval_s - label_window_s. A late or restarted `run` catches up one
    # interval per step, so the shares move as they would have.
    k = int(exp.state.get("interval", -1)) + 1
    since = exp.state.get("until") or exp.started_at
    until = max(exp.started_at + (k + 1) * policy.interval_s - policy.label_window_s, since)
    joined = join_labels(
        where.audit_dir, Path(exp.labels_log), policy.reward, exp.versions, since=since
    )
    rewards = matured_rewards(
        joined.predictions, policy.reward, since=since, until=until, versions=exp.versions
    )
    evidence = IntervalEvidence(
        interval=k,
        until=until,
        rewards=rewards,
    )
    if isinstance(policy, BanditPolicy):
        bd, bs = bandit_step(policy, BanditState.from_dict(exp.state), evidence)
        doc, state, final = bd.to_dict(), bs.to_dict(), bd.final
        doc["winner"] = bs.winner
    else:
        ad, abs_ = abn_step(policy, ABnState.from_dict(exp.state), evidence)
        doc, state, final = ad.to_dict(), abs_.to_dict(), ad.final
        doc["winner"] = abs_.winner
        if ad.action == "stop":
            doc["winner"] = None
    doc |= {
        "interval": evidence.interval,
        "matured": {v: r.matured for v, r in rewards.items()},
        "labelled": {v: r.labelled for v, r in rewards.items()},
        "unreadable_labels": joined.unreadable_labels,
    }
    return doc, state, final


def _shadow_step(
    exp: Experiment, policy: ShadowPolicy
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    shadow = exp.versions[1]
    mirrored = []
    log = Path(exp.mirror_log)
    if log.exists():
        for d in read_rotated_json_lines(log):
            if d.get("shadow_version") != shadow or d.get("at", 0) < exp.started_at:
                continue
            if d.get("primary") is None:
                continue
            mirrored.append(
                MirroredRequest(
                    str(d["request_id"]),
                    float(d["primary"]),
                    float(d["primary_latency_s"]),
                    None if d.get("shadow") is None else float(d["shadow"]),
                    d.get("shadow_latency_s"),
                )
            )
    readout = shadow_readout(policy, mirrored)
    reason = (
        "; ".join(readout.reasons)
        or {
            "waiting": f"{readout.requests} of {policy.requests} mirrored requests",
            "pass": "the shadow's readout is within every bound",
            "fail": "",
        }[readout.status]
    )
    doc = {"action": readout.status, "reason": reason, "readout": readout.to_dict()}
    return doc, {"readout": readout.to_dict()}, readout.status != "waiting"


def _apply(where: Where, exp: Experiment, decision: dict[str, Any]) -> None:
    """Move the router as the decision says; a winner also becomes the champion."""
    if exp.strategy == "shadow":
        if exp.done:
            _router(where, "PUT", "/router/shadow", {"percent": 0})
            percent = int(exp.policy.get("canary_percent", 0))
            if decision["action"] == "pass" and percent:
                canary = {"version": exp.versions[1], "percent": percent}
                _router(where, "PUT", "/router/canary", canary)
        return
    winner = decision.get("winner")
    if exp.done:
        chosen = winner or exp.versions[0]
        _router(where, "POST", "/router/select", {"version": chosen})
        registry = ModelRegistry(where.registry_uri)
        if winner is not None and registry.champion(where.model) != int(winner):
            registry.set_champion(
                where.model, int(winner), reason=f"{exp.strategy} experiment: {decision['reason']}"
            )
        return
    if decision.get("action") != "skip":
        _router(where, "PUT", "/router/split", {"percents": decision["percents"]})


def status(where: Where) -> dict[str, Any]:
    exp = load(where)
    try:
        router = _router(where, "GET", "/router/state")
    except RouterUnavailable as e:
        router = {"error": str(e)}
    shares = router.get("split") or {}
    if not shares and router.get("stable"):
        canary, percent = router.get("canary"), int(router.get("canary_percent") or 0)
        shares = {router["stable"]["version"]: 100 - (percent if canary else 0)}
        if canary:
            shares[canary["version"]] = percent
    return {
        "model": where.model,
        "strategy": exp.strategy,
        "versions": exp.versions,
        "state": "ended" if exp.done else "running",
        "decisions": exp.decisions,
        "shares": shares,
        "shadow": router.get("shadow"),
        "last_decision": exp.last_decision,
    }
