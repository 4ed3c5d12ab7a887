"""Canary analysis on simulated rollouts: false rollbacks and requests to detection.

Compares the engine (mlops_control/rollout/analysis.py: mixture SPRT + divergence test) with the
fixed-threshold baseline on the same simulated traffic: roll back when, over one analysis interval,
the canary's error rate exceeds 1%. A fixed threshold is as fast as it is trigger-happy, so the
table also shows the same rule with its threshold calibrated (on separate simulated rollouts) to
the engine's false-rollback budget of 1%: the fair comparison. The baseline has no latency or
prediction check, so it never catches those canaries (counted at the cap).

- false rollbacks: complete rollouts through the policy's steps with canary == stable;
- requests to detection: the canary held at the first step (10%) until a rollback or a cap, for
  each kind of bad canary; reported as canary requests (users exposed) at the median and p90, and
  the share detected within the cap;
- caught before promotion: the same bad canaries through the full default rollout;
- evidence before promotion: the power policy (`detect_error_ratio` 2, power 0.9) against two
  oracle thresholds held at 10%. The calibrated threshold above keeps its budget over the default
  rollout (about six looks), not over the many looks it is held for here; the fair oracle's
  threshold is computed exactly (binomial) to keep the 1% budget over as many looks as the power
  policy's rollouts take, and it is held for that many.

The calibrated threshold's budget also holds only over the default rollout in the requests-to-
detection table, where it is held until it fires.

Run: `make bench-canary` (or python benchmarks/bench_canary.py --rollouts 2000).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from rich.console import Console
from rich.table import Table

from benchmarks.canary_simulation import TrafficModel, draw_window
from mlops_control.rollout.analysis import CanaryState, analyze
from mlops_control.rollout.policy import RolloutPolicy
from mlops_control.rollout.window import Window

BASELINE_ERROR_RATE = 0.01


def interval_error_rate(w: Window) -> float:
    return w.canary.errors / w.canary.requests if w.canary.requests else 0.0


@dataclass
class Outcome:
    rolled_back: bool
    canary_requests: int
    total_requests: int
    intervals: int  # analysis intervals (looks) the rollout took


Decider = Callable[[RolloutPolicy, object, Window], tuple[str, object]]


def engine_decider(policy: RolloutPolicy, state: object, w: Window) -> tuple[str, object]:
    d, st = analyze(policy, state if isinstance(state, CanaryState) else CanaryState(), w)
    return d.action, st


def baseline_decider(threshold: float) -> Decider:
    def decide(policy: RolloutPolicy, state: object, w: Window) -> tuple[str, object]:
        # Steps up on the engine's schedule (min requests per step); only the check differs.
        step, served = state if isinstance(state, tuple) else (0, 0)
        if interval_error_rate(w) > threshold:
            return "rollback", (step, served)
        served += w.canary.requests
        if served < policy.min_requests_per_step:
            return "hold", (step, served)
        if policy.steps[step + 1] >= 100:
            return "promote", (step, served)
        return "step_up", (step + 1, 0)

    return decide


def calibrate_threshold(
    policy: RolloutPolicy, stable: TrafficModel, requests: int, rollouts: int, budget: float
) -> float:
    """The smallest interval error-rate threshold that rolls back at most `budget` of rollouts
    of an equal canary: the (1 - budget) quantile of each rollout's worst interval."""
    worst = []
    for s in range(rollouts):
        rng = np.random.default_rng(50_000 + s)
        served_by_step = [0] * len(policy.steps)
        step, peak = 0, 0.0
        while policy.steps[step] < 100:
            w = draw_window(stable, stable, requests, policy.steps[step], rng)
            peak = max(peak, interval_error_rate(w))
            served_by_step[step] += w.canary.requests
            if served_by_step[step] >= policy.min_requests_per_step:
                step += 1
        worst.append(peak)
    return float(np.quantile(worst, 1.0 - budget, method="higher"))


def interval_rollback_probability(
    threshold: float, error_rate: float, requests: int, canary_percent: int
) -> float:
    """Exactly (binomial, no simulation) the probability that one analysis interval of a canary
    with `error_rate` errors exceeds `threshold`, with the canary's requests split from
    `requests` at `canary_percent` as draw_window splits them (n ~ Bin(requests, share),
    errors ~ Bin(n, error_rate)). The comparison is the decider's, in floating point."""
    from scipy import stats

    n = np.arange(requests + 1)
    weights = stats.binom.pmf(n, requests, canary_percent / 100.0)
    d = np.maximum(n, 1)
    k = np.floor(threshold * n).astype(int)  # the most errors that do not exceed the threshold
    k = np.where((k + 1) / d <= threshold, k + 1, k)
    k = np.where(k / d > threshold, k - 1, k)
    exceed = np.where(n > 0, stats.binom.sf(k, n, error_rate), 0.0)  # 0 requests: rate 0
    return float(weights @ exceed)


def rollback_probability(
    threshold: float, looks: int, error_rate: float, requests: int, canary_percent: int
) -> float:
    """Exactly: the probability that a canary held at `canary_percent` for `looks` independent
    analysis intervals is rolled back by the threshold rule at least once."""
    q = interval_rollback_probability(threshold, error_rate, requests, canary_percent)
    return 1.0 - (1.0 - q) ** looks


def calibrate_threshold_for_looks(
    looks: int, error_rate: float, requests: int, canary_percent: int, budget: float
) -> float:
    """The smallest interval error-rate threshold that rolls back at most `budget` of equal
    canaries (the oracle's known `error_rate`) held at `canary_percent` for `looks` intervals,
    computed exactly with the binomial. The rule only changes at attainable rates errors/n, so
    the search runs over those: the result is the fastest threshold rule within the budget."""
    from scipy import stats

    share = canary_percent / 100.0
    lo, hi = (int(v) for v in stats.binom.ppf([1e-12, 1 - 1e-12], requests, share))
    rates = np.unique(
        np.concatenate([np.arange(n + 1) / n for n in range(max(lo, 1), max(hi, 1) + 1)])
    )
    first, last = 0, len(rates) - 1  # rates[-1] == 1.0: never exceeded, within any budget
    while first < last:
        mid = (first + last) // 2
        if rollback_probability(rates[mid], looks, error_rate, requests, canary_percent) <= budget:
            last = mid
        else:
            first = mid + 1
    return float(rates[first])


def simulate(
    decider: Decider,
    policy: RolloutPolicy,
    stable: TrafficModel,
    canary: TrafficModel,
    *,
    requests_per_interval: int,
    seed: int,
    hold_first_step: bool,
    cap_canary_requests: int,
    max_intervals: int | None = None,
) -> Outcome:
    rng = np.random.default_rng(seed)
    state: object = None
    step, c_total, total, looks = 0, 0, 0, 0
    held = (
        RolloutPolicy(**(policy.to_dict() | {"min_requests_per_step": 10**12}))
        if hold_first_step
        else policy
    )
    while c_total < cap_canary_requests and (max_intervals is None or looks < max_intervals):
        w = draw_window(stable, canary, requests_per_interval, held.steps[step], rng)
        c_total += w.canary.requests
        total += w.canary.requests + w.stable.requests
        looks += 1
        action, state = decider(held, state, w)
        if action == "rollback":
            return Outcome(True, c_total, total, looks)
        if action == "promote":
            return Outcome(False, c_total, total, looks)
        if action == "step_up":
            step += 1
    return Outcome(False, c_total, total, looks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rollouts", type=int, default=2000, help="rollouts with equal versions")
    ap.add_argument("--bad-rollouts", type=int, default=300, help="rollouts per bad scenario")
    ap.add_argument("--requests-per-interval", type=int, default=1000)
    ap.add_argument("--error-rate", type=float, default=0.005, help="the stable's 5xx rate")
    ap.add_argument("--cap", type=int, default=20000, help="canary requests before giving up")
    ap.add_argument(
        "--power-rollouts", type=int, default=300, help="rollouts per row of the evidence table"
    )
    ap.add_argument("--only-evidence", action="store_true", help="print the evidence table only")
    args = ap.parse_args()

    policy = RolloutPolicy()
    stable = TrafficModel(error_rate=args.error_rate)
    bad = {
        "2x error rate": TrafficModel(error_rate=2 * args.error_rate),
        "5x error rate": TrafficModel(error_rate=5 * args.error_rate),
        "1.5x latency": stable.slower(1.5),
        "shifted predictions (+1 logit)": TrafficModel(error_rate=args.error_rate, score_shift=1.0),
    }
    calibrated = calibrate_threshold(
        policy, stable, args.requests_per_interval, args.rollouts, policy.false_rollback_rate
    )
    if args.only_evidence:
        Console().print(evidence_before_promotion(args, stable, calibrated))
        return
    deciders = {
        "engine": engine_decider,
        "fixed 1%": baseline_decider(BASELINE_ERROR_RATE),
        f"fixed {calibrated:.2%} (calibrated)": baseline_decider(calibrated),
    }
    console = Console()
    console.print(
        f"policy: steps {list(policy.steps)}, min {policy.min_requests_per_step} canary requests "
        f"per step, false_rollback_rate {policy.false_rollback_rate}; traffic "
        f"{args.requests_per_interval} requests per analysis interval; stable: "
        f"{args.error_rate:.2%} errors, median latency {stable.latency_median_s * 1000:.0f} ms"
    )
    t0 = time.perf_counter()

    table = Table(title="false rollbacks, canary == stable (full rollouts)")
    for col in ("analysis", "rollouts", "false rollbacks", "rate", "95% upper bound"):
        table.add_column(col, justify="right")
    for name, decider in deciders.items():
        outs = [
            simulate(decider, policy, stable, stable,
                     requests_per_interval=args.requests_per_interval, seed=s,
                     hold_first_step=False, cap_canary_requests=10**9)
            for s in range(args.rollouts)
        ]  # fmt: skip
        k = sum(o.rolled_back for o in outs)
        upper = _upper_bound(k, len(outs))
        table.add_row(name, str(len(outs)), str(k), f"{k / len(outs):.2%}", f"{upper:.2%}")
    console.print(table)

    # A fixed threshold is tuned to one stable error rate; the engine compares the two versions.
    table = Table(
        title="false rollbacks when the stable's own error rate differs (canary == stable)"
    )
    table.add_column("stable error rate", justify="right")
    for name in deciders:
        table.add_column(name, justify="right")
    for rate in (0.001, 0.02):
        other = TrafficModel(error_rate=rate)
        row = [f"{rate:.1%}"]
        for decider in deciders.values():
            outs = [
                simulate(decider, policy, other, other,
                         requests_per_interval=args.requests_per_interval, seed=30_000 + s,
                         hold_first_step=False, cap_canary_requests=10**9)
                for s in range(args.bad_rollouts)
            ]  # fmt: skip
            row.append(f"{sum(o.rolled_back for o in outs) / len(outs):.1%}")
        table.add_row(*row)
    console.print(table)

    table = Table(title="requests to detection, canary held at 10% (canary requests)")
    for col in ("bad canary", "analysis", "detected", "median", "p90", "engine speed-up"):
        table.add_column(col, justify="right")
    caught = Table(title="bad canaries caught before promotion (default policy)")
    caught.add_column("bad canary", justify="right")
    for name in deciders:
        caught.add_column(name, justify="right")
    for scen, canary in bad.items():
        medians: dict[str, float] = {}
        rows = []
        for name, decider in deciders.items():
            outs = [
                simulate(decider, policy, stable, canary,
                         requests_per_interval=args.requests_per_interval, seed=10_000 + s,
                         hold_first_step=True, cap_canary_requests=args.cap)
                for s in range(args.bad_rollouts)
            ]  # fmt: skip
            n = np.array([o.canary_requests for o in outs if o.rolled_back])
            det = len(n) / len(outs)
            # Undetected runs count as the cap, so a detector that misses cannot look fast.
            all_n = np.array([o.canary_requests if o.rolled_back else args.cap for o in outs])
            medians[name] = float(np.median(all_n))
            rows.append(
                [
                    scen,
                    name,
                    f"{det:.0%}",
                    f"{np.median(all_n):.0f}",
                    f"{np.quantile(all_n, 0.9):.0f}",
                ]
            )
        for r in rows:
            # How many times fewer canary requests the engine needs than this analysis.
            r.append("" if r[1] == "engine" else f"{medians[r[1]] / medians['engine']:.2f}x")
            table.add_row(*r)
        row = [scen]
        for decider in deciders.values():
            outs = [
                simulate(decider, policy, stable, canary,
                         requests_per_interval=args.requests_per_interval, seed=20_000 + s,
                         hold_first_step=False, cap_canary_requests=10**9)
                for s in range(args.bad_rollouts)
            ]  # fmt: skip
            row.append(f"{sum(o.rolled_back for o in outs) / len(outs):.0%}")
        caught.add_row(*row)
    console.print(table)
    console.print(caught)
    console.print(evidence_before_promotion(args, stable, calibrated))
    console.print(f"simulated in {time.perf_counter() - t0:.0f} s")


def evidence_before_promotion(
    args: argparse.Namespace, stable: TrafficModel, calibrated: float
) -> Table:
    """The default policy against the power-based one (`detect_error_ratio` 2, power 0.9: half
    the false-rollback budget for the error test, its mixture aimed at 2x and 4x): share of 2x
    and 5x error canaries caught before promotion, canary requests each spends, what an oracle
    threshold (it knows the stable's error rate) needs to catch the same canaries held at the
    first step, and the engine's best case at the same guarantee (told the ratio; see
    _told_the_ratio).

    Two oracles. The old one, `calibrated`, keeps the 1% false-rollback budget over the default
    policy's short rollout (about six looks) and is held until it fires, so held as long as the
    power policy's rollouts it breaks that budget (its false-rollback row measures by how much).
    The fair one is calibrated exactly (binomial) to the budget over the looks it is held for:
    the median number of analysis intervals of the power policy's rollouts of an equal canary in
    this run, at the first step's traffic share and this interval size; a bad canary it has not
    caught by then counts the requests it was served, as a promoted one does for the engine."""
    policies = {
        "default policy": RolloutPolicy(),
        "detect 2x at 90% power": RolloutPolicy(detect_error_ratio=2.0, power=0.9),
    }
    budget = RolloutPolicy().false_rollback_rate
    percent = RolloutPolicy().first_step
    table = Table(
        title=f"evidence before promotion ({args.power_rollouts} rollouts each unless named; "
        f"stable {args.error_rate:.2%} errors)"
    )
    for col in ("canary", "analysis", "rolled back", "canary requests (median)", "(p90)"):
        table.add_column(col, justify="right")
    ratios = {"equal (false rollbacks)": 1.0, "2x error rate": 2.0, "5x error rate": 5.0}
    oracle_lines: list[str] = []
    verdicts: list[str] = []
    looks, fair = 0, 1.0
    old_label = fair_label = ""
    exact_false_rollbacks: dict[str, float] = {}
    for scen, ratio in ratios.items():
        canary = TrafficModel(error_rate=ratio * args.error_rate)
        figures = {}
        for name, policy in policies.items():
            outs = [
                simulate(engine_decider, policy, stable, canary,
                         requests_per_interval=args.requests_per_interval, seed=40_000 + s,
                         hold_first_step=False, cap_canary_requests=10**9)
                for s in range(args.power_rollouts)
            ]  # fmt: skip
            figures[name] = _evidence_row(table, scen, name, outs)
            if ratio == 1.0 and policy.detect_error_ratio is not None:
                lengths = [o.intervals for o in outs]
                looks = int(np.median(lengths))
                fair = calibrate_threshold_for_looks(
                    looks, args.error_rate, args.requests_per_interval, percent, budget
                )
                longest = calibrate_threshold_for_looks(
                    max(lengths), args.error_rate, args.requests_per_interval, percent, budget
                )
                oracle_lines.append(
                    f"the power policy's rollouts of an equal canary take a median {looks} "
                    f"analysis intervals (looks; {min(lengths)}-{max(lengths)}); the fair oracle's "
                    f"threshold {fair:.2%} keeps the {budget:.0%} budget over {looks} looks at "
                    f"{percent}% (exact, binomial; for the longest rollout it would be "
                    f"{longest:.2%})"
                )
                old_label = f"oracle {calibrated:.2%} (default-rollout budget), held at {percent}%"
                fair_label = (
                    f"fair oracle {fair:.2%} (budget over {looks} looks), held at {percent}% for "
                    f"{looks} looks"
                )
        if ratio == 1.0:
            for name, threshold in (("old", calibrated), ("fair", fair)):
                outs = [
                    simulate(baseline_decider(threshold), RolloutPolicy(), stable, canary,
                             requests_per_interval=args.requests_per_interval, seed=40_000 + s,
                             hold_first_step=True, cap_canary_requests=10**9,
                             max_intervals=looks)
                    for s in range(args.rollouts)
                ]  # fmt: skip
                share, _, _ = _evidence_row(
                    table,
                    scen,
                    f"{name} oracle {threshold:.2%}, held at {percent}% for {looks} looks "
                    f"({args.rollouts} rollouts)",
                    outs,
                )
                k = sum(o.rolled_back for o in outs)
                exact = rollback_probability(
                    threshold, looks, args.error_rate, args.requests_per_interval, percent
                )
                exact_false_rollbacks[name] = exact
                oracle_lines.append(
                    f"{name} oracle {threshold:.2%} held for {looks} looks: false rollbacks "
                    f"{share:.2%} measured ({k}/{len(outs)}, 95% upper bound "
                    f"{_upper_bound(k, len(outs)):.2%}), {exact:.2%} exact; budget {budget:.0%} "
                    f"{'kept' if exact <= budget else 'BROKEN'}"
                )
            continue
        outs = [
            simulate(baseline_decider(calibrated), RolloutPolicy(), stable, canary,
                     requests_per_interval=args.requests_per_interval, seed=40_000 + s,
                     hold_first_step=True, cap_canary_requests=10**6)
            for s in range(args.power_rollouts)
        ]  # fmt: skip
        old = _evidence_row(table, scen, f"{old_label} until caught", outs)
        outs = [
            simulate(baseline_decider(fair), RolloutPolicy(), stable, canary,
                     requests_per_interval=args.requests_per_interval, seed=40_000 + s,
                     hold_first_step=True, cap_canary_requests=10**9, max_intervals=looks)
            for s in range(args.power_rollouts)
        ]  # fmt: skip
        oracle = _evidence_row(table, scen, fair_label, outs)
        told = _told_the_ratio(args, stable, canary, ratio, table, scen)
        caught, median, p90 = figures["detect 2x at 90% power"]
        verdicts.append(
            f"{scen}: power policy caught {caught:.1%}, median {median:.0f}, p90 {p90:.0f}; "
            f"fair oracle caught {oracle[0]:.1%}, median {oracle[1]:.0f} "
            f"({'met' if median <= oracle[1] else 'NOT met'}), p90 {oracle[2]:.0f} "
            f"({'met' if p90 <= oracle[2] else 'NOT met'}); old oracle "
            f"({'over' if exact_false_rollbacks['old'] > budget else 'within'} budget held this "
            f"long) median {old[1]:.0f} ({'met' if median <= old[1] else 'NOT met'}), p90 "
            f"{old[2]:.0f} ({'met' if p90 <= old[2] else 'NOT met'}); the engine told the "
            f"ratio: median {told[1]:.0f}, p90 {told[2]:.0f}"
        )
    table.caption = "\n".join(
        [
            *oracle_lines,
            "target (power policy's canary requests <= the fair oracle's; a canary not caught "
            "counts the requests it was served):",
            *verdicts,
        ]
    )
    return table


def _told_the_ratio(
    args: argparse.Namespace,
    stable: TrafficModel,
    canary: TrafficModel,
    ratio: float,
    table: Table,
    scen: str,
) -> tuple[float, float, float]:
    """The engine's best case at the same guarantee: its error test told the canary's true ratio
    (one alternative, exactly that) and given 98% of the false-rollback budget, held at 10%. No
    policy can know either; the row shows how much of the gap to the oracle is the price of an
    anytime bound that compares the canary with the stable's errors rather than a known rate."""
    told = RolloutPolicy(sequential_alternatives=(ratio,), error_budget_share=0.98)
    outs = [
        simulate(engine_decider, told, stable, canary,
                 requests_per_interval=args.requests_per_interval, seed=40_000 + s,
                 hold_first_step=True, cap_canary_requests=10**6)
        for s in range(args.power_rollouts)
    ]  # fmt: skip
    return _evidence_row(
        table, scen, f"engine told the ratio ({ratio:g}x, 98% of budget), held at 10%", outs
    )


def _evidence_row(
    table: Table, scen: str, name: str, outs: list[Outcome]
) -> tuple[float, float, float]:
    n = np.array([o.canary_requests for o in outs])
    share = sum(o.rolled_back for o in outs) / len(outs)
    median, p90 = float(np.median(n)), float(np.quantile(n, 0.9))
    table.add_row(scen, name, f"{share:.1%}", f"{median:.0f}", f"{p90:.0f}")
    return share, median, p90


def _upper_bound(k: int, n: int) -> float:
    """One-sided 95% Clopper-Pearson upper bound on a rate from k events in n trials."""
    from scipy import stats

    return 1.0 if k == n else float(stats.beta.ppf(0.95, k + 1, n - k))


if __name__ == "__main__":
    main()
