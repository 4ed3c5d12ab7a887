"""compute=local vs compute=dask on 1 and 2 workers: training and batch scoring on the same data.

One run measures, on this machine: rows/s of training (XGBoost, the project's Pipeline) and of
batch scoring (a registered model over partitioned Parquet) for the local path and for a
LocalCluster of 1 and of 2 worker processes; the speed-up and efficiency of the second worker;
the fixed cost of starting a cluster (timed apart from the work); and each worker's peak memory.
From these it derives the break-even size: the rows below which `local` finishes first once the
cluster's start is counted. The numbers are written as JSON (docs/figures/scale.json by default),
which docs/scale.md quotes.

    $ make bench-scale                       # default sizes, about 2-3 minutes on 2 cores
    $ .venv/bin/python benchmarks/bench_scale.py --train-rows 200000 --score-rows 2000000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from components.batch_score import BatchScoreParams, peak_rss_mb, score_batch
from components.batch_score_dask import score_batch_dask
from components.dask_compute import ComputeSpec, local_dask_client
from components.train import TrainParams, predict_proba, save_model, train_model
from components.train_dask import read_dataset, train_on_dask
from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from mlops_core.drift import profile_reference
from mlops_core.registry import ModelRegistry

ROOT = Path(__file__).resolve().parents[1]
MODEL = "churn"
OUT = "docs/figures/scale.json"
DOCS = ROOT / "docs" / "scale.md"
DOCS_BEGIN, DOCS_END = "<!-- bench-scale:begin -->", "<!-- bench-scale:end -->"


def _write_parts(df: pd.DataFrame, folder: Path, parts: int, row_group: int) -> None:
    folder.mkdir(parents=True)
    step = -(-len(df) // parts)
    for i in range(parts):
        df.iloc[i * step : (i + 1) * step].to_parquet(
            folder / f"part-{i:03d}.parquet", row_group_size=row_group
        )


def _register(root: Path) -> str:
    train = generate_churn(5000, seed=11)
    pipeline = train_model(train, CHURN_SCHEMA, TrainParams("xgboost", n_estimators=100)).pipeline
    ref = profile_reference(
        train, CHURN_SCHEMA, predictions=predict_proba(pipeline, train, CHURN_SCHEMA)
    )
    save_model(pipeline, str(root / "m.skops"))
    reg = ModelRegistry(str(root / "registry"))
    mv = reg.register(MODEL, str(root / "m.skops"), schema=CHURN_SCHEMA, reference=ref)
    reg.set_champion(MODEL, mv.version, reason="bench-scale")
    return str(root / "registry")


def _batch_params(registry: str, src: Path, out: Path, chunk_rows: int) -> BatchScoreParams:
    return BatchScoreParams(
        registry_uri=registry,
        model_name=MODEL,
        input_uri=str(src),
        output_uri=str(out),
        run_id="bench",
        chunk_rows=chunk_rows,
    )


def _worker_peaks(client: Any) -> list[float]:
    return [round(mb, 1) for mb in client.run(peak_rss_mb).values()]


def cpu_seconds() -> float:
    """CPU seconds (user + system) this process has used, all its threads included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_split(client: Any, run: Any) -> tuple[float, float]:
    """CPU seconds of one `run()` in this process (the step's) and in the workers, summed."""
    workers_before = sum(client.run(cpu_seconds).values())
    mine = cpu_seconds()
    run()
    mine = cpu_seconds() - mine
    return mine, sum(client.run(cpu_seconds).values()) - workers_before


def _best(run: Any, repeats: int) -> float:
    """The fastest of `repeats` runs, in seconds: a shared machine's noise only ever adds time."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return min(times)


def measure(
    train_rows: int, score_rows: int, parts: int, n_estimators: int, repeats: int
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        train_df = generate_churn(train_rows, seed=3).reset_index(drop=True)
        score_df = generate_churn(score_rows, seed=5).reset_index(drop=True)
        _write_parts(train_df, work / "train", parts, row_group=max(1, train_rows // parts))
        chunk = max(1, score_rows // (parts * 2))
        _write_parts(score_df, work / "score", parts, row_group=chunk)
        score_df.to_parquet(work / "score.parquet", row_group_size=chunk)
        registry = _register(work)
        params = TrainParams("xgboost", n_estimators=n_estimators, early_stopping_rounds=1000)

        train_local = _best(
            lambda: train_model(pd.read_parquet(work / "train"), CHURN_SCHEMA, params), repeats
        )
        local_params = _batch_params(
            registry, work / "score.parquet", work / "local.parquet", chunk
        )
        score_local = _best(lambda: score_batch(local_params), repeats)
        results: dict[str, Any] = {
            "local": {
                "train_s": train_local,
                "train_rows_per_s": train_rows / train_local,
                "score_s": score_local,
                "score_rows_per_s": score_rows / score_local,
                "peak_mb": round(peak_rss_mb(), 1),
            }
        }
        for workers in (1, 2):
            spec = ComputeSpec(compute="dask", workers=workers, worker_memory="1500MiB")
            t = time.perf_counter()
            with local_dask_client(spec) as client:
                start = time.perf_counter() - t
                train_s = _best(
                    lambda: train_on_dask(
                        client, read_dataset(str(work / "train")), CHURN_SCHEMA, params
                    ),
                    repeats,
                )
                dask_params = _batch_params(
                    registry, work / "score", work / f"dask{workers}.parquet", chunk
                )
                score_s = _best(
                    lambda: score_batch_dask(dask_params, spec, client=client),  # noqa: B023
                    repeats,
                )
                step_cpu, workers_cpu = _cpu_split(
                    client,
                    lambda: score_batch_dask(dask_params, spec, client=client),  # noqa: B023
                )
                peaks = _worker_peaks(client)
            results[f"dask_{workers}"] = {
                "start_s": start,
                "train_s": train_s,
                "train_rows_per_s": train_rows / train_s,
                "score_s": score_s,
                "score_rows_per_s": score_rows / score_s,
                "score_step_cpu_s": step_cpu,
                "score_workers_cpu_s": workers_cpu,
                "worker_peak_mb": peaks,
            }
            print(f"dask, {workers} worker(s): {json.dumps(results[f'dask_{workers}'])}")
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def break_even_rows(start_s: float, local_rate: float, dask_rate: float) -> float | None:
    """Rows at which local time (rows / local_rate) equals start + rows / dask_rate; None when
    Dask is not faster per row here (local wins at every size on this machine)."""
    saved_per_row = 1 / local_rate - 1 / dask_rate
    return start_s / saved_per_row if saved_per_row > 0 else None


def derive(results: dict[str, Any]) -> dict[str, Any]:
    one, two, local = results["dask_1"], results["dask_2"], results["local"]
    out: dict[str, Any] = {"start_s": (one["start_s"] + two["start_s"]) / 2}
    for job in ("train", "score"):
        rate = f"{job}_rows_per_s"
        speedup = two[rate] / one[rate]
        out[job] = {
            "speedup_2_vs_1_workers": speedup,
            "efficiency_per_added_worker": speedup - 1,  # 1.0: the added worker doubled the rate
            "parallel_efficiency_2_workers": speedup / 2,
            "dask_2_vs_local": two[rate] / local[rate],
            "break_even_rows_2_workers": break_even_rows(two["start_s"], local[rate], two[rate]),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-rows", type=int, default=200_000)
    ap.add_argument("--score-rows", type=int, default=1_000_000)
    ap.add_argument("--parts", type=int, default=8, help="Parquet files per data set")
    ap.add_argument("--n-estimators", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=2, help="best of this many runs per phase")
    ap.add_argument("--out", default=str(ROOT / OUT))
    args = ap.parse_args()
    t = time.perf_counter()
    load_before = os.getloadavg()[0]
    results = measure(args.train_rows, args.score_rows, args.parts, args.n_estimators, args.repeats)
    doc = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            # Other work on the machine: a load past the CPU count makes every figure noisier.
            "load_average_1m": [load_before, os.getloadavg()[0]],
        },
        "sizes": {
            "train_rows": args.train_rows,
            "score_rows": args.score_rows,
            "parts": args.parts,
            "n_estimators": args.n_estimators,
            "repeats": args.repeats,
        },
        "results": results,
        "derived": derive(results),
        "bench_seconds": time.perf_counter() - t,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    _print(doc)
    print(f"wrote {args.out}")
    if Path(args.out).resolve() == (ROOT / OUT).resolve() and DOCS.exists():
        text = DOCS.read_text()
        head, _, rest = text.partition(DOCS_BEGIN + "\n")
        _, _, tail = rest.partition(DOCS_END)
        DOCS.write_text(head + DOCS_BEGIN + "\n" + render_docs_table(doc) + "\n" + DOCS_END + tail)
        print(f"updated {DOCS.relative_to(ROOT)}")


def _rows(n: float | None) -> str:
    return f"{n:,.0f} rows" if n else "none: local is faster per row here"


def render_docs_table(doc: dict[str, Any]) -> str:
    """The figures block of docs/scale.md, from the benchmark's JSON."""
    r, d, m, z = doc["results"], doc["derived"], doc["machine"], doc["sizes"]
    load = m["load_average_1m"]
    # the load after includes the benchmark's own: only the load before says another job ran
    shared = ": the machine was shared" if load[0] > 0.5 * m["cpus"] else ""
    lines = [
        f"Measured by `make bench-scale` on {m['cpus']} CPUs (load average "
        f"{load[0]:.1f} before, {load[1]:.1f} after{shared}), {z['train_rows']:,} training rows "
        f"and {z['score_rows']:,} rows scored, in "
        f"{z['parts']} Parquet files; best of {z['repeats']} runs per phase.",
        "",
        "| compute | training rows/s | scoring rows/s | cluster start | peak memory per worker |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, label in (
        ("local", "local"),
        ("dask_1", "dask, 1 worker"),
        ("dask_2", "dask, 2 workers"),
    ):
        row = r[name]
        peak = max(row.get("worker_peak_mb", [row.get("peak_mb", 0)]))
        start = f"{row['start_s']:.1f} s" if "start_s" in row else "-"
        lines.append(
            f"| {label} | {row['train_rows_per_s']:,.0f} | {row['score_rows_per_s']:,.0f} | "
            f"{start} | {peak:,.0f} MB |"
        )
    lines += ["", "| | training | batch scoring |", "|---|---:|---:|"]
    t, sc = d["train"], d["score"]
    lines += [
        f"| 2 workers vs 1 | x{t['speedup_2_vs_1_workers']:.2f} | x{sc['speedup_2_vs_1_workers']:.2f} |",
        f"| efficiency per added worker | {t['efficiency_per_added_worker']:.2f} | "
        f"{sc['efficiency_per_added_worker']:.2f} |",
        f"| 2 workers vs local | x{t['dask_2_vs_local']:.2f} | x{sc['dask_2_vs_local']:.2f} |",
        f"| break-even (2 workers) | {_rows(t['break_even_rows_2_workers'])} | "
        f"{_rows(sc['break_even_rows_2_workers'])} |",
        "",
        f"Fixed cost of starting a cluster: {d['start_s']:.1f} s (the mean of the two starts).",
    ]
    two = r["dask_2"]
    if "score_step_cpu_s" in two:
        step, workers = two["score_step_cpu_s"], two["score_workers_cpu_s"]
        lines += [
            "",
            f"Batch scoring on 2 workers: the step's own process used {step:.2f} s of CPU and the "
            f"workers {workers:.2f} s, so {step / (step + workers):.0%} of the work ran in the one "
            "process that receives every scored row group and writes the output file.",
        ]
    return "\n".join(lines)


def _print(doc: dict[str, Any]) -> None:
    r, d = doc["results"], doc["derived"]
    print(
        f"{'':10} {'train rows/s':>14} {'score rows/s':>14} {'start s':>8} {'peak MB/worker':>16}"
    )
    for name in ("local", "dask_1", "dask_2"):
        row = r[name]
        peak = row.get("worker_peak_mb", [row.get("peak_mb")])
        print(
            f"{name:10} {row['train_rows_per_s']:>14,.0f} {row['score_rows_per_s']:>14,.0f} "
            f"{row.get('start_s', 0):>8.1f} {max(peak):>16,.0f}"
        )
    for job in ("train", "score"):
        j = d[job]
        be = j["break_even_rows_2_workers"]
        print(
            f"{job}: 2 vs 1 workers x{j['speedup_2_vs_1_workers']:.2f} (efficiency per added "
            f"worker {j['efficiency_per_added_worker']:.2f}); 2 workers vs local "
            f"x{j['dask_2_vs_local']:.2f}; break-even "
            + (f"{be:,.0f} rows" if be else "none here (local is faster per row)")
        )
    print(f"fixed cost of starting a cluster: {d['start_s']:.1f} s")
    load = doc["machine"]["load_average_1m"]
    print(
        f"load average (1 min) before/after: {load[0]:.1f}/{load[1]:.1f} on {doc['machine']['cpus']} CPUs"
    )


if __name__ == "__main__":
    main()
