"""Concurrency soak of the registry: N real processes x M registrations into one registry.

Each registration does what a pipeline run does: read the champion (the gate's comparison), register
a candidate, then try to promote it by compare-and-swap against the champion it compared with.
Then every invariant the registry promises is checked and counted:

- versions lost: registrations whose returned number is missing, duplicated or holds another's data
- files corrupted: stored artifacts whose sha256 differs from the record or from what was sent, and
  registry JSON files that do not parse
- champions uncompared: champion log entries whose predecessor is not the champion their writer
  compared with
- raw errors: any exception other than a lost compare-and-swap

Run: `python -m tests.mlops_core.registry_soak --processes 8 --registrations 25 [--registry URI]`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import posixpath
import re
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from typing import Any

MODEL = "churn"


@dataclass(frozen=True)
class SoakResult:
    processes: int
    registrations: int
    seconds: float
    versions_registered: int
    versions_lost: int
    files_corrupted: int
    champions_uncompared: int
    promotions: int
    lost_races: int
    raw_errors: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _worker(
    args: tuple[str, int, int, dict[str, Any], dict[str, Any], Any],
) -> dict[str, Any]:
    uri, worker, registrations, schema_doc, reference_doc, barrier = args
    from mlops_core.drift import ReferenceProfile
    from mlops_core.registry import ChampionConflictError, ModelRegistry
    from mlops_core.schema import FeatureSchema

    reg = ModelRegistry(uri)
    schema, reference = (
        FeatureSchema.from_dict(schema_doc),
        ReferenceProfile.from_dict(reference_doc),
    )
    done: list[dict[str, Any]] = []
    errors: list[str] = []
    scratch = tempfile.mkdtemp(prefix=f"soak-{worker}-")
    barrier.wait()  # every process starts registering at the same moment
    for j in range(registrations):
        try:
            blob = f"artifact of worker {worker} registration {j} ".encode() + os.urandom(4096)
            path = os.path.join(scratch, f"{j}.bin")
            with open(path, "wb") as fh:
                fh.write(blob)
            compared = reg.champion(MODEL)  # what the gate compares with
            mv = reg.register(
                MODEL, path, schema=schema, reference=reference, run_id=f"w{worker}-r{j}",
                metrics={"roc_auc": 0.5 + worker / 100 + j / 10_000},
            )  # fmt: skip
            promoted = True
            try:
                reg.set_champion(
                    MODEL, mv.version, reason=f"compared with {compared}", expected=compared
                )
            except ChampionConflictError:
                promoted = False
            done.append(
                {
                    "version": mv.version,
                    "run_id": f"w{worker}-r{j}",
                    "sha256": hashlib.sha256(blob).hexdigest(),
                    "promoted": promoted,
                }
            )
        except Exception:  # counted, not raised: the soak reports every kind of failure
            errors.append(traceback.format_exc(limit=3))
    return {"done": done, "errors": errors}


def soak(uri: str, processes: int, registrations: int) -> SoakResult:
    from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
    from mlops_core.drift import profile_reference
    from mlops_core.registry import ModelRegistry

    reference = profile_reference(generate_churn(300, seed=3), CHURN_SCHEMA).to_dict()
    ctx = mp.get_context("spawn")  # fresh interpreters: no state shared through fork
    barrier = ctx.Manager().Barrier(processes)
    started = time.perf_counter()
    with ctx.Pool(processes) as pool:
        outs = pool.map(
            _worker,
            [(uri, w, registrations, CHURN_SCHEMA.to_dict(), reference, barrier) for w in range(processes)],
        )  # fmt: skip
    seconds = time.perf_counter() - started
    done = [d for o in outs for d in o["done"]]
    errors = [e for o in outs for e in o["errors"]]
    reg = ModelRegistry(uri)
    return _check(reg, processes, registrations, done, errors, seconds)


def _check(
    reg: Any, processes: int, registrations: int, done: list[dict[str, Any]], errors: list[str],
    seconds: float,
) -> SoakResult:  # fmt: skip
    from mlops_core.errors import MlopsError

    expected = processes * registrations
    by_version: dict[int, list[dict[str, Any]]] = {}
    for d in done:
        by_version.setdefault(d["version"], []).append(d)
    stored = {}
    corrupted = 0
    for v in reg._version_numbers(MODEL):
        vdir = reg.version_dir(MODEL, v)
        try:
            mv = reg.get(MODEL, v)
            reg.reference(MODEL, v)
            reg.schema(MODEL, v)
            blob = reg.fs.cat_file(posixpath.join(vdir, "model.skops"))
        except (MlopsError, OSError):
            corrupted += 1
            continue
        stored[v] = mv
        if hashlib.sha256(blob).hexdigest() != mv.artifact_sha256:
            corrupted += 1
    lost = expected - len(done)  # registrations that raised
    for v, claims in by_version.items():
        mv = stored.get(v)
        if len(claims) > 1 or mv is None or mv.run_id != claims[0]["run_id"]:
            lost += len(claims)
        elif mv.artifact_sha256 != claims[0]["sha256"]:
            corrupted += 1
    history = reg.champion_doc(MODEL)["history"]
    uncompared = 0
    previous = None
    for entry in history:
        compared = re.fullmatch(r"compared with (None|\d+)", entry["reason"])
        said = None if compared is None or compared.group(1) == "None" else int(compared.group(1))
        if entry["previous"] != previous or compared is None or said != previous:
            uncompared += 1
        previous = entry["version"]
    promotions = sum(d["promoted"] for d in done)
    return SoakResult(
        processes=processes,
        registrations=registrations,
        seconds=round(seconds, 2),
        versions_registered=len(stored),
        versions_lost=lost,
        files_corrupted=corrupted,
        champions_uncompared=uncompared + abs(promotions - len(history)),
        promotions=promotions,
        lost_races=len(done) - promotions,
        raw_errors=errors,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--registrations", type=int, default=25)
    parser.add_argument(
        "--registry", default="", help="registry URI (default: a fresh temp folder)"
    )
    args = parser.parse_args()
    uri = args.registry or tempfile.mkdtemp(prefix="registry-soak-")
    result = soak(uri, args.processes, args.registrations)
    print(json.dumps(result.to_dict() | {"registry": uri}, indent=2))
    sys.exit(
        0
        if not (
            result.versions_lost
            or result.files_corrupted
            or result.champions_uncompared
            or result.raw_errors
        )
        else 1
    )


if __name__ == "__main__":
    main()
