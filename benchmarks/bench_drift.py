"""Benchmark the drift statistics and the live monitor; compare with Evidently's data drift preset.

`make bench-drift` runs it. Three parts, all in one run so the ratios compare like with like:

1. Drift computation: a 1M-row x 20-feature current window against a stored reference profile
   (`mlops_core.drift.compare`: bucketing + PSI/KS/chi-square), and the same rows through the live
   monitor's path (observe in request-sized batches, fold into panes, evaluate). Target: < 2 s.
2. The monitor's added latency per request: the predictor's p50 over HTTP (`mlops serve`, 1-row
   requests, monitoring on) and in-process (`predict_rows`), against the p50 of the monitoring
   observers' `observe` (drift monitor + label store + prediction log) on the same rows.
   Target: observers' p50 < 5% of the predictor's p50.
3. Evidently (Apache-2.0, `DataDriftPreset`, in `.venv-evidently/`, run as a subprocess) on the
   same reference and current data: per-feature verdicts side by side with ours, and the time ratio.

Figures are printed and written to `--out` (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.train import TrainParams, model_input, predict_proba, save_model, train_model
from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from mlops_core.drift import DriftReport, compare, profile_reference
from mlops_core.registry import ModelRegistry
from mlops_core.schema import Feature, FeatureSchema
from serving.v1_instances import v1_instances

ROOT = Path(__file__).resolve().parent.parent
EVIDENTLY_PYTHON = ROOT / ".venv-evidently" / "bin" / "python"

# The features the current window changes, and how (ground truth for the verdict table).
CHANGES = {
    "n00": "mean +0.25 sd",
    "n01": "scale x1.3",
    "n02": "mean +0.03 sd (negligible)",
    "n03": "lognormal tail heavier",
    "c00": "new category at 10%",
    "c01": "shares shifted",
}


def synthetic(rows: int, *, drifted: bool, seed: int) -> tuple[pd.DataFrame, FeatureSchema]:
    """15 numeric and 5 categorical features with some missing values."""
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {}
    for i in range(15):
        kind = i % 5
        if kind == 0:
            x = rng.normal(50, 10, rows)
        elif kind == 1:
            x = rng.normal(0, 1, rows)
        elif kind == 2:
            x = rng.exponential(3.0, rows)
        elif kind == 3:
            x = rng.lognormal(2.0, 0.5, rows)
        else:
            x = rng.poisson(3.0, rows).astype(float)
        cols[f"n{i:02d}"] = x
    if drifted:
        cols["n00"] = cols["n00"] + 2.5
        cols["n01"] = cols["n01"] * 1.3
        cols["n02"] = cols["n02"] + 0.03 * 3.0
        cols["n03"] = rng.lognormal(2.0, 0.65, rows)
    for name in cols:
        cols[name][rng.random(rows) < 0.02] = np.nan
    base = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
    for j in range(5):
        cats = base[: 3 + j % 4]
        p = np.linspace(1.0, 2.0, len(cats))
        if drifted and j == 1:
            p = p[::-1]
        c = rng.choice(cats, size=rows, p=p / p.sum()).astype(object)
        if drifted and j == 0:
            c[rng.random(rows) < 0.10] = "omega"
        cols[f"c{j:02d}"] = c
    frame = pd.DataFrame(cols)
    schema = FeatureSchema(
        features=tuple(
            Feature(n, "numeric")
            if n.startswith("n")
            else Feature(n, "categorical", "str", categories=tuple(base[: 3 + int(n[1:]) % 4]))
            for n in frame.columns
        ),
        target="y",
        name="bench",
    )
    return frame, schema


def timed(fn: Any, repeat: int = 3) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


# --- 1. drift computation ----------------------------------------------------------------------


def bench_compute(rows: int, workdir: Path, evidently_rows: int) -> dict[str, Any]:
    from serving.monitoring.drift_monitor import DriftMonitor, WindowConfig

    reference_df, schema = synthetic(rows, drifted=False, seed=1)
    current_df, _ = synthetic(rows, drifted=True, seed=2)
    profile_s, reference = timed(lambda: profile_reference(reference_df, schema), repeat=1)
    compare_s, report = timed(lambda: compare(reference, current_df))

    X = model_input(current_df, schema)
    probs = np.zeros(rows)
    batch = 100

    def through_monitor() -> DriftReport:
        monitor = DriftMonitor(
            model="bench",
            feature_names=schema.feature_names,
            references=lambda v: reference,
            window=WindowConfig(pane_rows=rows // 10, panes=10, min_rows=1, pane_seconds=1e9),
        )
        for i in range(0, rows, batch):
            monitor.observe(X[i : i + batch], probs[i : i + batch], "r", "1")
        return monitor.evaluate()["1"]

    monitor_s, live = timed(through_monitor, repeat=1)
    # Evidently gets the first `evidently_rows` rows of the same frames (at 1M rows it needs
    # minutes); ours is timed again on exactly those rows for the ratio.
    n = min(evidently_rows, rows)
    ref_path, cur_path = workdir / "reference.parquet", workdir / "current.parquet"
    reference_df.iloc[:n].to_parquet(ref_path)
    current_df.iloc[:n].to_parquet(cur_path)
    sub_ref, sub_cur = reference_df.iloc[:n], current_df.iloc[:n]
    sub_profile_s, sub_reference = timed(lambda: profile_reference(sub_ref, schema), repeat=1)
    sub_compare_s, sub_report = timed(lambda: compare(sub_reference, sub_cur))
    return {
        "evidently_rows": n,
        "subsample_profile_s": sub_profile_s,
        "subsample_compare_s": sub_compare_s,
        "subsample_report": sub_report,
        "rows": rows,
        "features": len(schema.features),
        "profile_reference_s": profile_s,
        "compare_s": compare_s,
        "monitor_observe_fold_evaluate_s": monitor_s,
        "monitor_agrees_with_compare": [f.drifted for f in live.features]
        == [f.drifted for f in report.features],
        "report": report,
        "reference_path": str(ref_path),
        "current_path": str(cur_path),
        "schema": schema,
    }


# --- 2. the monitor's added latency ------------------------------------------------------------


def register_model(root: Path) -> tuple[str, Any]:
    registry = ModelRegistry(str(root / "registry"))
    train = generate_churn(5000, seed=0)
    result = train_model(train, CHURN_SCHEMA, TrainParams(estimator="xgboost"))
    path = root / "model.skops"
    save_model(result.pipeline, str(path))
    reference = profile_reference(
        train, CHURN_SCHEMA, predictions=predict_proba(result.pipeline, train, CHURN_SCHEMA)
    )
    mv = registry.register(
        "churn", str(path), schema=CHURN_SCHEMA, reference=reference, estimator="xgboost"
    )
    registry.set_champion("churn", mv.version, reason="benchmark")
    return str(root / "registry"), result.pipeline


def http_p50(registry_uri: str, root: Path, requests: int) -> float:
    import httpx

    port = free_port()
    env = os.environ | {
        "MLOPS_SERVE_PORT": str(port),
        "MLOPS_AUDIT_DIR": str(root / "audit"),
        "MLOPS_MONITOR_INTERVAL_S": "1",
    }
    mlops = str(Path(sys.executable).with_name("mlops"))
    log = open(root / "server.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [mlops, "serve", "--registry", registry_uri, "--model", "churn"],
        env=env,
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {(root / 'server.log').read_text()}")
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        rows = v1_instances(generate_churn(requests, seed=3).drop(columns=["churned"]))
        times = []
        with httpx.Client(base_url=url, timeout=10) as client:
            for i, row in enumerate(rows):
                start = time.perf_counter()
                r = client.post("/v1/models/churn:predict", json={"instances": [row]})
                elapsed = time.perf_counter() - start
                r.raise_for_status()
                if i >= 50:  # warm-up
                    times.append(elapsed)
        return statistics.median(times)
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_latency(root: Path, requests: int) -> dict[str, Any]:
    from prometheus_client import CollectorRegistry

    from mlops_core.settings import load_settings
    from serving.model_bundle import load_registered
    from serving.monitoring.endpoints import build_monitoring

    registry_uri, _ = register_model(root)
    bundle = load_registered(registry_uri, "churn", "champion")
    settings = load_settings(audit_dir=str(root / "audit-inproc"))
    monitoring = build_monitoring(bundle, settings, registry=CollectorRegistry(), start=True)
    X = model_input(generate_churn(requests, seed=4), CHURN_SCHEMA)
    pipeline = bundle.pipeline
    predict_times, observe_times = [], []
    each: dict[str, list[float]] = {type(o).__name__: [] for o in monitoring.observers}
    for i in range(requests):
        row = X[i : i + 1]
        start = time.perf_counter()
        p = pipeline.predict_proba(row)[:, 1]
        mid = time.perf_counter()
        for observer in monitoring.observers:
            t0 = time.perf_counter()
            observer.observe(row, p, f"req-{i}", bundle.version)
            if i >= 50:
                each[type(observer).__name__].append(time.perf_counter() - t0)
        end = time.perf_counter()
        if i >= 50:
            predict_times.append(mid - start)
            observe_times.append(end - mid)
    monitoring.close()
    http = http_p50(registry_uri, root, requests)
    observe_p50 = statistics.median(observe_times)
    return {
        "requests": requests,
        "predictor_http_p50_ms": http * 1e3,
        "predictor_inprocess_p50_ms": statistics.median(predict_times) * 1e3,
        "observers_p50_us": observe_p50 * 1e6,
        "observers_p99_us": float(np.percentile(observe_times, 99)) * 1e6,
        "each_observer_p50_us": {k: statistics.median(v) * 1e6 for k, v in each.items()},
        "added_share_of_http_p50": observe_p50 / http,
        "added_share_of_inprocess_p50": observe_p50 / statistics.median(predict_times),
    }


# --- 3. Evidently ------------------------------------------------------------------------------


def bench_evidently(compute: dict[str, Any]) -> dict[str, Any] | None:
    if not EVIDENTLY_PYTHON.exists():
        print(f"(skipping Evidently: {EVIDENTLY_PYTHON} not found; `make bench-drift` creates it)")
        return None
    schema: FeatureSchema = compute["schema"]
    numeric = ",".join(f.name for f in schema.numeric_features)
    categorical = ",".join(f.name for f in schema.categorical_features)
    start = time.perf_counter()
    out = subprocess.run(
        [
            str(EVIDENTLY_PYTHON),
            str(Path(__file__).with_name("evidently_drift.py")),
            compute["reference_path"],
            compute["current_path"],
            numeric,
            categorical,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"Evidently failed:\n{out.stderr[-3000:]}")
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    doc["subprocess_wall_s"] = wall
    return doc


# --- report ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--evidently-rows", type=int, default=100_000)
    parser.add_argument("--out", default="build/bench_drift.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        root = Path(tmp)
        print(f"1. drift computation: {args.rows:,} rows x 20 features")
        compute = bench_compute(args.rows, root, args.evidently_rows)
        print(
            f"   profile the reference (once per model version): {compute['profile_reference_s']:.2f} s"
        )
        print(
            f"   compare the current window (stored profile):    {compute['compare_s']:.2f} s  (target < 2 s)"
        )
        print(
            f"   the monitor's path (observe 100-row batches, fold, evaluate): "
            f"{compute['monitor_observe_fold_evaluate_s']:.2f} s; same verdicts as compare: "
            f"{compute['monitor_agrees_with_compare']}"
        )
        print(f"2. the monitor's added latency per request ({args.requests} 1-row requests)")
        latency = bench_latency(root, args.requests)
        print(
            f"   predictor p50 over HTTP: {latency['predictor_http_p50_ms']:.3f} ms; in-process predict_proba p50: {latency['predictor_inprocess_p50_ms']:.3f} ms"
        )
        print(
            f"   monitoring observers p50: {latency['observers_p50_us']:.1f} us "
            f"(p99 {latency['observers_p99_us']:.1f} us); each: "
            + ", ".join(f"{k} {v:.1f} us" for k, v in latency["each_observer_p50_us"].items())
        )
        print(
            f"   added: {latency['added_share_of_http_p50']:.2%} of the HTTP p50, "
            f"{latency['added_share_of_inprocess_p50']:.2%} of the in-process p50 (target < 5%)"
        )
        n = compute["evidently_rows"]
        print(
            f"3. Evidently DataDriftPreset vs ours on the same reference and current ({n:,} rows each)"
        )
        evidently = bench_evidently(compute)
        report: DriftReport = compute["subsample_report"]
        rows_out = []
        header = f"   {'feature':8} {'changed':28} {'ours: PSI  effect  drift':26} evidently: method / value / drift"
        print(header)
        for f in report.features:
            ev = (evidently or {}).get("columns", {}).get(f.feature, {})
            rows_out.append(
                {
                    "feature": f.feature,
                    "changed": CHANGES.get(f.feature, ""),
                    "ours_psi": f.psi,
                    "ours_effect": f.effect,
                    "ours_drifted": f.drifted,
                    "evidently": ev,
                }
            )
            ev_text = f"{ev['method']} / {ev['value']:.4g} / {ev['drifted']}" if ev else "(not run)"
            print(
                f"   {f.feature:8} {CHANGES.get(f.feature, '-'):28} "
                f"{f.psi:6.3f} {f.effect:7.3f}  {f.drifted!s:5}     {ev_text}"
            )
        summary: dict[str, Any] = {
            "compute": {
                k: v
                for k, v in compute.items()
                if k not in ("report", "subsample_report", "schema")
            },
            "latency": latency,
            "verdicts": rows_out,
        }
        if evidently:
            agree = sum(r["ours_drifted"] == r["evidently"].get("drifted") for r in rows_out)
            ratio = evidently["seconds"] / compute["subsample_compare_s"]
            ratio_incl = evidently["seconds"] / (
                compute["subsample_compare_s"] + compute["subsample_profile_s"]
            )
            summary["evidently"] = {
                "seconds": evidently["seconds"],
                "subprocess_wall_s": evidently["subprocess_wall_s"],
                "verdicts_agree": agree,
                "features": len(rows_out),
                "time_ratio_vs_compare": ratio,
                "time_ratio_vs_profile_plus_compare": ratio_incl,
            }
            print(
                f"   verdicts agree on {agree}/{len(rows_out)} features; Evidently took "
                f"{evidently['seconds']:.2f} s = {ratio:.1f}x our compare "
                f"({ratio_incl:.1f}x profile + compare)"
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, default=str))
    print(f"figures written to {out}")


if __name__ == "__main__":
    main()
