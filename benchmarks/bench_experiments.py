"""Experiment strategies on simulated traffic with delayed labels and a drifting reward.

Three versions serve the same traffic, interval by interval; each prediction's reward is whether it
was correct (Bernoulli), with a mean that drifts over the horizon for all versions (a seasonal
swing) and for one version of its own, the ranking kept. A share of labels never arrives; the
others arrive at a uniform delay within the label window (30% of the horizon by default), so no
strategy learns anything in the first 30% of the run.

Strategies, on the same traffic and label draws (one seed per run):
- bandit: `bandit_step` on matured predictions only (those whose label window has closed);
- bandit, unlabelled = failure: the same step fed every prediction at once, rewarded only by the
  labels that have come so far (what the delayed-label problem looks like);
- fixed equal split; epsilon-greedy (10%) on the same matured evidence.

Reported: cumulative regret (expected reward lost against always serving the best version at that
interval) and its ratio to the fixed split's; the share of runs with equal versions in which the
bandit declares a winner; the smallest share an arm had while the bandit ran, against the floor.
The shadow tee's p99 cost needs the platform's router and is not measured here.

Run: `make bench-experiments` (writes docs/figures/bench_experiments.json and the figures block of
docs/experiments.md, which a test keeps equal to that JSON).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from mlops_control.experiments.bandit import (
    BanditPolicy,
    BanditState,
    bandit_step,
    start_bandit,
)
from mlops_control.experiments.evidence import ArmRewards, IntervalEvidence
from mlops_control.experiments.reward import RewardSpec

ARMS = ("stable", "challenger-a", "challenger-b")
OUT = Path("docs/figures/bench_experiments.json")  # the figures docs/experiments.md shows
DOCS_BEGIN, DOCS_END = "<!-- bench-experiments:begin -->", "<!-- bench-experiments:end -->"


@dataclass(frozen=True)
class Scenario:
    horizon: int = 200  # intervals
    requests: int = 2000  # per interval, all versions together
    label_window: float = 0.3  # share of the horizon after which every label that comes has come
    label_rate: float = 0.8  # share of predictions that ever get a label
    base: float = 0.75  # mean reward (accuracy) of the stable version at the start
    gaps: tuple[float, ...] = (0.0, 0.03, -0.03)  # each version's offset from the base
    swing: float = 0.08  # amplitude of the common seasonal drift
    own_drift: float = 0.02  # challenger-b's offset rises by this much over the horizon

    @property
    def delay(self) -> int:
        return max(1, round(self.label_window * self.horizon))

    def means(self, t: int) -> np.ndarray:
        season = self.swing * np.sin(2 * np.pi * t / self.horizon)
        own = np.zeros(len(self.gaps))
        own[-1] = self.own_drift * t / self.horizon
        return self.base + season + np.asarray(self.gaps) + own


@dataclass
class RunResult:
    regret: float
    min_percent: float  # the smallest share an arm had while the experiment ran
    winner: str | None
    winner_interval: int | None


Allocator = Callable[[int, dict[str, ArmRewards], dict[str, ArmRewards]], dict[str, float]]


def bench_policy(floor_percent: int = 5) -> BanditPolicy:
    return BanditPolicy(
        reward=RewardSpec(task="binary", classes=(0, 1)),
        floor_percent=floor_percent,
        min_labelled_per_arm=200,
        draws=1000,  # P(best) to about 1.5 points: enough for a simulated split
    )


def simulate(scenario: Scenario, strategy: str, seed: int, policy: BanditPolicy) -> RunResult:
    """One run of `strategy` (bandit, bandit_unlabelled_failure, fixed, epsilon_greedy)."""
    rng = np.random.default_rng(seed)
    k, h, d = len(ARMS), scenario.horizon, scenario.delay
    served = np.zeros((h, k), dtype=int)
    labelled = np.zeros((h, k), dtype=int)  # predictions of interval t that get a label
    correct = np.zeros((h, k), dtype=int)  # of those, correct
    arrived = np.zeros((h + d + 1, k), dtype=int)  # correct labels arriving at interval t
    state: BanditState | None = (
        start_bandit(policy, ARMS) if strategy.startswith("bandit") else None
    )
    matured_eps = {a: ArmRewards() for a in ARMS}
    regret, min_percent = 0.0, 100.0
    winner: str | None = None
    winner_at: int | None = None
    for t in range(h):
        shares = _shares(strategy, state, matured_eps, winner, rng)
        if winner is None:
            min_percent = min(min_percent, 100.0 * min(shares))
        n = served[t] = rng.multinomial(scenario.requests, shares)
        mu = scenario.means(t)
        regret += float(np.sum(n * (mu.max() - mu)))
        labelled[t] = rng.binomial(n, scenario.label_rate)
        correct[t] = rng.binomial(labelled[t], mu)
        for a in range(k):  # each correct label arrives 1..d intervals later
            when = rng.integers(1, d + 1, size=correct[t, a])
            arrived[t : t + d + 1, a] += np.bincount(when, minlength=d + 1)
        matured = t - d  # predictions of this interval have all their labels by now
        mature = {
            a: _bernoulli(served[matured, i], labelled[matured, i], correct[matured, i])
            if matured >= 0 else ArmRewards()
            for i, a in enumerate(ARMS)
        }  # fmt: skip
        if strategy == "epsilon_greedy":
            matured_eps = {a: matured_eps[a] + mature[a] for a in ARMS}
        if state is not None and winner is None:
            if strategy == "bandit_unlabelled_failure":
                # every prediction counted now, rewarded by the correct labels come so far
                evidence = {a: _bernoulli(n[i], n[i], arrived[t, i]) for i, a in enumerate(ARMS)}
            else:
                evidence = mature
            decision, state = bandit_step(policy, state, IntervalEvidence(t, float(t), evidence))
            if decision.action == "winner":
                winner, winner_at = state.winner, t
    return RunResult(regret, min_percent, winner, winner_at)


def _bernoulli(matured: int, labelled: int, correct: int) -> ArmRewards:
    """Rewards of 0/1 outcomes: the sum of squares is the sum."""
    return ArmRewards(float(matured), float(labelled), float(correct), float(correct))


def _shares(
    strategy: str,
    state: BanditState | None,
    matured: dict[str, ArmRewards],
    winner: str | None,
    rng: np.random.Generator,
    epsilon: float = 0.1,
) -> np.ndarray:
    k = len(ARMS)
    if state is not None:
        return np.array([state.weights[a] for a in ARMS]) / sum(state.weights.values())
    if strategy == "fixed":
        return np.full(k, 1.0 / k)
    means = np.array([matured[a].mean if matured[a].labelled else np.inf for a in ARMS])
    best = int(rng.choice(np.flatnonzero(means == means.max())))
    shares = np.full(k, epsilon / k)
    shares[best] += 1.0 - epsilon
    return shares


def regret_table(
    scenario: Scenario, runs: int, policy: BanditPolicy
) -> dict[str, dict[str, float]]:
    strategies = ("fixed", "epsilon_greedy", "bandit", "bandit_unlabelled_failure")
    out: dict[str, dict[str, float]] = {}
    results = {s: [simulate(scenario, s, seed, policy) for seed in range(runs)] for s in strategies}
    fixed = float(np.mean([r.regret for r in results["fixed"]]))
    for s, rs in results.items():
        regret = float(np.mean([r.regret for r in rs]))
        winners = [r.winner_interval for r in rs if r.winner is not None]
        out[s] = {
            "regret": round(regret, 1),
            "regret_ratio_to_fixed": round(regret / fixed, 3),
            "min_percent": round(float(min(r.min_percent for r in rs)), 2),
            "winner_declared_share": round(len(winners) / runs, 3),
            "winner_correct_share": round(
                sum(r.winner == ARMS[int(np.argmax(scenario.gaps))] for r in rs) / runs, 3
            ),
            "median_winner_interval": float(np.median(winners)) if winners else None,
        }
    return out


def false_winner_rate(scenario: Scenario, runs: int, policy: BanditPolicy) -> dict[str, float]:
    equal = replace(scenario, gaps=(0.0,) * len(ARMS), own_drift=0.0)
    rs = [simulate(equal, "bandit", 10_000 + seed, policy) for seed in range(runs)]
    declared = sum(r.winner is not None for r in rs)
    return {
        "runs": runs,
        "winners_declared": declared,
        "false_winner_rate": round(declared / runs, 4),
        "min_percent": round(float(min(r.min_percent for r in rs)), 2),
    }


def _niced(shadow: dict[str, object]) -> str:
    nice = shadow.get("shadow_nice", 0)
    return (
        f", whose model server runs at nice {nice} (standing for its own pod's CPU)" if nice else ""
    )


def render_docs_table(result: dict) -> str:
    """The Markdown table docs/experiments.md shows, from the bench's JSON."""
    s, regret, fw = result["scenario"], result["regret"], result["false_winner"]
    names = {
        "fixed": "fixed equal split",
        "epsilon_greedy": "epsilon-greedy (10%)",
        "bandit": "bandit (matured labels only)",
        "bandit_unlabelled_failure": "bandit, unlabelled counted as failure",
    }
    lines = [
        f"Simulated: {len(ARMS)} versions, {s['horizon']} intervals x {s['requests']} requests, "
        f"labels after up to {s['label_window']:.0%} of the horizon ({s['label_rate']:.0%} ever "
        f"labelled), drifting reward; {result['runs']} seeded runs "
        f"(`make bench-experiments`, {result['cpu_seconds']:.0f} s of CPU).",
        "",
        "| strategy | cumulative regret | vs fixed split | smallest share | winner declared |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, label in names.items():
        r = regret[key]
        declared = f"{r['winner_declared_share']:.0%}" if key.startswith("bandit") else "-"
        lines.append(
            f"| {label} | {r['regret']:,.0f} | {r['regret_ratio_to_fixed']:.2f} | "
            f"{r['min_percent']:.1f}% | {declared} |"
        )
    ratios = "\n".join(f"{name:42s} {value}" for name, value in result["ratios"].items())
    lines += [
        "",
        f"Equal versions: a winner was declared in {fw['winners_declared']} of {fw['runs']} runs "
        f"({fw['false_winner_rate']:.1%}); the floor is {result['floor_percent']}% and no arm went "
        f"below {min(fw['min_percent'], regret['bandit']['min_percent']):.1f}%.",
    ]
    sh = result.get("shadow")
    if sh:
        lines += [
            "",
            f"Shadow tee, measured side by side in one run (two local routers, each with its own "
            f"model server of the same version, {sh['workers']} client threads alternating "
            f"between them, {sh['requests_each']:,} single-row requests each; one router copies "
            f"{sh['mirror_percent']}% to a shadow{_niced(sh)}: {sh['tee']['answered']:,} copies "
            f"answered (warm-up included), {sh['tee']['dropped']} dropped):",
            "",
            "| primary | p50 | p99 |",
            "|---|---:|---:|",
            f"| without mirroring | {sh['plain_p50_ms']:.1f} ms | {sh['plain_p99_ms']:.1f} ms |",
            f"| with 100% mirroring | {sh['mirrored_p50_ms']:.1f} ms | "
            f"{sh['mirrored_p99_ms']:.1f} ms |",
        ]
    lines += [
        "",
        "```console",
        "$ make bench-experiments",
        "...",
        ratios,
        f"wrote {OUT}",
        "```",
    ]
    return "\n".join(lines)


def write_docs(path: Path, table: str) -> None:
    text = path.read_text()
    pattern = re.compile(re.escape(DOCS_BEGIN) + ".*?" + re.escape(DOCS_END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{path} has no {DOCS_BEGIN} ... {DOCS_END} block to fill")
    path.write_text(pattern.sub(lambda _: f"{DOCS_BEGIN}\n{table}\n{DOCS_END}", text))


def run(runs: int, false_winner_runs: int, scenario: Scenario) -> dict:
    started, cpu = time.perf_counter(), time.process_time()
    policy = bench_policy()
    regret = regret_table(scenario, runs, policy)
    fw = false_winner_rate(scenario, false_winner_runs, policy)
    return {
        "scenario": asdict(scenario),
        "runs": runs,
        "floor_percent": policy.floor_percent,
        "regret": regret,
        "false_winner": fw,
        "ratios": {
            "bandit_regret_vs_fixed": regret["bandit"]["regret_ratio_to_fixed"],
            "epsilon_greedy_regret_vs_fixed": regret["epsilon_greedy"]["regret_ratio_to_fixed"],
            "bandit_regret_vs_unlabelled_as_failure": round(
                regret["bandit"]["regret"] / regret["bandit_unlabelled_failure"]["regret"], 3
            ),
            "false_winner_rate": fw["false_winner_rate"],
            "min_percent_over_floor": round(
                min(fw["min_percent"], regret["bandit"]["min_percent"]) / policy.floor_percent, 3
            ),
        },
        "seconds": round(time.perf_counter() - started, 1),
        "cpu_seconds": round(time.process_time() - cpu, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20, help="seeded runs per strategy")
    ap.add_argument("--false-winner-runs", type=int, default=300, help="runs with equal versions")
    ap.add_argument("--horizon", type=int, default=Scenario.horizon)
    ap.add_argument(
        "--shadow-requests",
        type=int,
        default=4000,
        help="requests to each router in the shadow tee's side-by-side latency run (0: skip)",
    )
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--docs", type=Path, help="fill the figures table of this Markdown page")
    args = ap.parse_args()
    result = run(args.runs, args.false_winner_runs, Scenario(horizon=args.horizon))
    if args.shadow_requests:
        from benchmarks.bench_shadow import measure_shadow

        result["shadow"] = measure_shadow(args.shadow_requests)
        result["ratios"]["shadow_p99_with_vs_without_mirroring"] = result["shadow"]["p99_ratio"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(render_docs_table(result).split("```console")[0])
    for name, value in result["ratios"].items():
        print(f"{name:42s} {value}")
    print(f"wrote {args.out}")
    if args.docs:
        write_docs(args.docs, render_docs_table(result))
        print(f"updated {args.docs}")


if __name__ == "__main__":
    main()
