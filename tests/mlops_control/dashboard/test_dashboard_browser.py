"""The dashboard in headless Chromium during a live local canary rollout: every page shows the
numbers the API gives (traffic share, last decision, each check's evidence and bound, drift, the
slice column's shares and holdout metrics per category), and its screenshot is kept under
docs/images/ (docs/dashboard.md shows them).

Everything is real: the local router and its `mlops serve` children (which write the monitoring
log), generated HTTP traffic, the rollout loop of `mlops canary run` (held after its third
decision, so the rollout is in progress while the pages are read; the servers are stopped then,
so the monitoring log holds still), and `mlops dashboard`.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlops_control.rollout.factory import new_actuator, new_source
from mlops_control.rollout.loop import run_rollout
from mlops_control.rollout.policy import RolloutPolicy
from mlops_control.traffic.actuator import Target
from mlops_control.traffic.router_process import RouterProcess
from mlops_core.jsonl_log import DecisionLog, read_json_lines
from mlops_demo.canary_traffic import TrafficGenerator
from tests.mlops_control.dashboard.harness import (
    register_models,
    start_dashboard,
    write_monitoring,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
SCREENSHOTS = ROOT / "docs" / "images"
MODEL, FEATURE = "churn", "monthly_charges"
# The churn schema's first categorical feature: the evaluate step's default slice column.
SLICE_COLUMN = "contract"
# The pages are under test, not the rollout's verdict: latency under 1 s and any predictions pass,
# so a loaded machine (a slow cold canary) cannot end the rollout before it is held.
POLICY = RolloutPolicy(
    analysis_interval_s=2.0,
    min_requests_per_step=100,
    warmup_requests=20,
    latency_floor_s=1.0,
    max_prediction_divergence=10.0,
)
HOLD_AFTER = 3  # decisions before the loop is held (a rollout in progress)


class Stopped(Exception):
    """Ends the held rollout loop when the test is done."""


class HeldSleep:
    """The loop's sleep: real sleeps until `HOLD_AFTER` decisions, then it waits to be released."""

    def __init__(self, log: Path) -> None:
        self.log, self.release, self.held = log, threading.Event(), threading.Event()

    def __call__(self, seconds: float) -> None:
        if len(list(read_json_lines(self.log))) >= HOLD_AFTER:
            self.held.set()
            self.release.wait()
            raise Stopped
        time.sleep(seconds)


@pytest.fixture(scope="module")
def ui_python() -> str:
    result = subprocess.run(
        ["bash", str(ROOT / "hack" / "kfp" / "ensure-browser.sh")], capture_output=True, text=True
    )
    if result.returncode == 3:
        pytest.skip(f"no headless Chromium and cannot install it here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def live_rollout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("dashboard")
    registry_uri, audit, work = str(root / "registry"), root / "audit", root / "work"
    register_models(registry_uri, [MODEL, "fraud", "upsell"])
    (canary,) = register_models(registry_uri, [MODEL], seed=21, champion=False)
    write_monitoring(audit, registry_uri, "fraud", scenario="covariate_shift")
    write_monitoring(audit, registry_uri, "upsell")
    env = {
        "MLOPS_AUDIT_DIR": str(audit),
        "MLOPS_MONITOR_INTERVAL_S": "1",
        "MLOPS_MONITOR_PANE_ROWS": "100",
        "MLOPS_MONITOR_MIN_ROWS": "200",
    }
    mp = pytest.MonkeyPatch()
    for k, v in env.items():
        mp.setenv(k, v)  # the router's model servers inherit it
    log = work / "canary" / f"{MODEL}.jsonl"
    sleep = HeldSleep(log)
    router = RouterProcess.start(MODEL, "1", registry_uri, work / "router")
    try:
        with TrafficGenerator(router.url, MODEL, workers=2):
            actuator = new_actuator(Target.local, model=MODEL, router_url=router.url)
            actuator.start(str(canary), POLICY.first_step)

            ended: list[object] = []

            def loop() -> None:
                try:
                    ended.append(
                        run_rollout(
                            model=MODEL,
                            actuator=actuator,
                            source_for=lambda st: new_source(Target.local, status=st),
                            policy=POLICY,
                            log=DecisionLog(log),
                            sleep=sleep,
                        )
                    )
                except Stopped:
                    pass
                except Exception as e:  # reported by the fixture below
                    ended.append(e)
                    raise

            thread = threading.Thread(target=loop, daemon=True)
            thread.start()
            deadline = time.monotonic() + 600
            while not sleep.held.wait(1) and thread.is_alive() and time.monotonic() < deadline:
                pass
            decisions = list(read_json_lines(log)) if log.exists() else []
            assert sleep.held.is_set(), (
                f"the rollout was not held after {HOLD_AFTER} decisions; it ended with {ended}; "
                f"its decisions: {decisions}"
            )
        # The model servers write a drift evaluation every second, traffic or not; stopped, their
        # monitoring log holds still while the pages and the API are read.
        router.stop()
        dashboard = start_dashboard(
            ["--registry", registry_uri, "--audit-dir", str(audit), "--work-dir", str(work)],
            root / "dashboard.log",
        )
        try:
            yield dashboard.url, root
        finally:
            dashboard.stop()
            sleep.release.set()
            thread.join(30)
    finally:
        router.stop()
        mp.undo()


def test_pages_show_the_apis_numbers(live_rollout: tuple[str, Path], ui_python: str) -> None:
    url, root = live_rollout
    shots = root / "screenshots"
    result = subprocess.run(
        [ui_python, str(Path(__file__).with_name("browser_flow.py")), url, MODEL, FEATURE, str(shots)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    frames = [line for line in result.stderr.splitlines() if not line.startswith("#")]
    assert result.returncode == 0, "\n".join(frames)[-4000:]  # without chromedriver's frames
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    portfolio = httpx.get(f"{url}/api/portfolio").json()
    model = httpx.get(f"{url}/api/models/{MODEL}").json()
    feature = httpx.get(f"{url}/api/models/{MODEL}/features/{FEATURE}").json()
    assert not seen["errors"], seen["errors"]

    # Portfolio: every model; the rollout's share and the last decision as the API says.
    row = next(m for m in portfolio["models"] if m["name"] == MODEL)
    assert sorted(seen["portfolio"]["models"]) == sorted(m["name"] for m in portfolio["models"])
    assert row["rollout"]["in_progress"]
    assert seen["portfolio"]["rollout_percent"] == str(row["rollout"]["canary_percent"])
    assert seen["portfolio"]["decision"] == row["last_decision"]["action"]
    fraud = next(m for m in portfolio["models"] if m["name"] == "fraud")
    assert fraud["drift"]["drifted"], "covariate shift should drift some features"

    # Model page: traffic share, decision, each check against its bound, drift per feature.
    rollout = model["rollout"]
    assert seen["model"]["canary_percent"] == f"{rollout['canary_percent']}%"
    assert seen["model"]["last_action"] == rollout["decisions"][-1]["action"]
    assert set(seen["model"]["checks"]) == set(rollout["checks"])
    for name, points in rollout["checks"].items():
        _, evidence, bound, _ = points[-1]
        shown = seen["model"]["checks"][name]
        assert shown["evidence"] == _fmt(evidence) and shown["bound"] == _fmt(bound), name
    assert seen["model"]["psi"], "the drift table is empty: no monitoring log from the servers?"
    for name, shown in seen["model"]["psi"].items():
        assert shown == _fmt(model["drift"]["series"][name][-1][1]), name
    assert seen["model"]["charts"] >= 3  # traffic share, drift, checks

    # Feature page: the drift statistic, against the same window the API reads; not the slice
    # column, so one line links to the slice column's page.
    assert seen["feature"]["psi"] == _fmt(feature["latest"]["psi"])
    assert seen["feature"]["charts"] == 2  # distribution vs reference, PSI over time
    assert feature["slices"] is None and feature["slice_column"] == SLICE_COLUMN
    assert seen["feature"]["slice_column"] == SLICE_COLUMN
    assert seen["feature"]["slice_link"] == f"{url}/models/{MODEL}/features/{SLICE_COLUMN}"

    # The slice column's page: each category's shares and holdout metrics as the API gives them.
    sliced = httpx.get(f"{url}/api/models/{MODEL}/features/{SLICE_COLUMN}").json()["slices"]
    page = seen["slice_page"]
    assert page["charts"] == 2
    assert page["header"] == [SLICE_COLUMN, "Training share", "Live share", "Holdout rows",
                              *sliced["shown_metrics"]]  # fmt: skip
    assert sliced["shown_metrics"] == ["roc_auc", "accuracy"]
    categories = [c["category"] or "" for c in sliced["categories"]]  # "": missing values
    assert [r["category"] for r in page["rows"]] == categories
    for row, want in zip(page["rows"], sliced["categories"], strict=True):
        assert _shown(row["training_share"], want["training_share"], percent=True), row
        assert _shown(row["live_share"], want["live_share"], percent=True), row
        assert row["holdout_rows"] == str(want["holdout_rows"]), row
        for m in sliced["shown_metrics"]:
            assert _shown(row["metrics"][m], want["metrics"][m]), (m, row)
    assert all(c["live_share"] is not None for c in sliced["categories"]), "no live window?"

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for png in sorted(shots.glob("*.png")):
        assert png.stat().st_size > 10_000, png
        (SCREENSHOTS / png.name).write_bytes(png.read_bytes())


def _shown(text: str, x: float | None, *, percent: bool = False) -> bool:
    """`text` is `x` as the page prints it (share(): a percentage to one decimal; num(): three
    decimals; a dash for none), within the rounding of its last digit."""
    if x is None:
        return text == "—"
    value, digits = (100 * x, 1) if percent else (x, 3)
    return abs(float(text.removesuffix("%")) - value) <= 0.5 * 10**-digits + 1e-9


def _fmt(x: float | None) -> str:
    """As the page prints a number (num() in src/app.js: three decimals, a dash for none)."""
    return "—" if x is None else f"{x:.3f}"
