"""Register: record the candidate as a new version with its lineage; make it champion if the gate
passed.

Every candidate that reached this step is registered (a rejected candidate is still worth keeping
for comparison and audit); only the champion pointer depends on the gate. The returned decision
document is the run's answer: promoted or not, which version, why, and the metric deltas.
"""

from __future__ import annotations

import json
from typing import Any

from components.evaluate import Evaluation
from components.gate import GateDecision
from mlops_core.drift import ReferenceProfile
from mlops_core.registry import ChampionConflictError, ModelRegistry
from mlops_core.schema import FeatureSchema
from mlops_core.step_timing import timed_step


@timed_step("register")
def register_step(
    *,
    model_path: str,
    schema_path: str,
    reference_path: str,
    evaluation_path: str,
    decision_path: str,
    ingest_summary_path: str,
    train_summary_path: str,
    registry_uri: str,
    model_name: str,
    run_id: str = "",
    output_path: str = "",
) -> dict[str, Any]:
    """Register the candidate, move the champion pointer if the gate passed, return the decision."""
    if not registry_uri:
        raise ValueError(
            "registry_uri is empty: name the registry (a folder or s3://bucket/prefix)"
        )
    docs = {}
    for key, path in {
        "evaluation": evaluation_path,
        "decision": decision_path,
        "ingest": ingest_summary_path,
        "train": train_summary_path,
    }.items():
        with open(path) as fh:
            docs[key] = json.load(fh)
    evaluation = Evaluation.from_dict(docs["evaluation"])
    decision = GateDecision.from_dict(docs["decision"])
    ingest, train = docs["ingest"], docs["train"]
    with open(reference_path) as fh:
        reference = ReferenceProfile.from_dict(json.load(fh))
    registry = ModelRegistry(registry_uri)
    metrics = dict(evaluation.metrics)
    metrics["train_positive_rate"] = train["train_positive_rate"]
    schema = FeatureSchema.load(schema_path)
    # The label encoding travels in the version's schema.json and, for lineage, in its params.
    encoding = {"task": schema.task, "classes": list(schema.label_classes)}
    mv = registry.register(
        model_name,
        model_path,
        schema=schema,
        reference=reference,
        metrics=metrics,
        params=train["params"] | {"best_iteration": train["best_iteration"]} | encoding,
        data_fingerprint=ingest["fingerprint"],
        data_source=ingest["data_source"],
        run_id=run_id,
        estimator=train["params"]["estimator"],
        tags={"gate": "passed" if decision.promote else "rejected"},
        slices=evaluation.slice_record(),
        feature_lineage=ingest.get("feature_lineage") or {},
    )
    promoted, reasons = decision.promote, list(decision.reasons)
    if promoted:
        # Compare-and-swap: promote only if the champion is still the one the gate compared
        # with. A run that lost the race stays registered, unpromoted, and says why.
        try:
            registry.set_champion(
                model_name,
                mv.version,
                reason="; ".join(decision.reasons),
                actor=run_id or "pipeline",
                expected=decision.champion_version,
            )
        except ChampionConflictError as e:
            promoted = False
            reasons.append(
                f"not promoted: {e}. The gate compared with "
                f"{_named(decision.champion_version)}; run the pipeline again to compare with "
                "the current champion"
            )
    result = {
        "promoted": promoted,
        "version": mv.version,
        "model": model_name,
        "champion": registry.champion(model_name),
        "previous_champion": decision.champion_version,
        "primary_metric": decision.primary_metric,
        "candidate": decision.candidate,
        "champion_metric": decision.champion,
        "improvement": decision.improvement,
        "margin": decision.margin,
        "reasons": reasons,
        "metric_deltas": decision.metric_deltas,
        "tests": {t.name: t.status for t in evaluation.tests},
        "task": schema.task,
        "task_reason": ingest.get("task_reason", ""),
        "classes": list(schema.label_classes),
        "target_missing_dropped": ingest.get("target_missing_dropped", 0),
        "set_aside": ingest.get("set_aside", {}),
        "data_fingerprint": ingest["fingerprint"],
        "feature_lineage": ingest.get("feature_lineage") or {},
        "run_id": run_id,
        "uri": registry.version_uri(model_name, mv.version),
    }
    if output_path:
        with open(output_path, "w") as fh:
            json.dump(result, fh, indent=2)
    return result


def _named(version: int | None) -> str:
    return "no champion (an empty registry)" if version is None else f"champion v{version}"
