"""Canary rollout: the analysis engine (pure), its metrics sources and its traffic actuators.

- `policy`: the typed, serialisable `RolloutPolicy` (steps, minimum traffic, thresholds).
- `window`: cumulative counters read from a source and the per-window deltas the engine uses.
- `sequential`: the statistics (mixture sequential probability ratio test, divergence test).
- `analysis`: `analyze(policy, state, observation) -> (CanaryDecision, state)`.
- `source`, `prometheus_source`, `scrape_source`: where the numbers come from.
- `actuator`, `kubernetes_actuator`, `local_actuator`, `router`: how traffic is moved.
- `rollout`: the loop that ties them together (`mlops canary run`).
"""
