"""Typed settings shared by the CLI and the components, read from flags and environment variables.

Every setting has one environment variable (``MLOPS_<FIELD>``); a CLI flag overrides it. Modules take
a `Settings` (or the few fields they need) as an argument instead of reading constants.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import Any

# Declared here, read by the pipeline's parameters (pipelines/params.py) and by Settings.
DEFAULT_MODEL_NAME = "churn"
DEFAULT_NAMESPACE = "mlops"
DEFAULT_BATCH_CHUNK_ROWS = 100_000  # rows per chunk in batch scoring (memory bound)
# Seconds between two passes of the in-cluster controller at most (it also wakes on every change).
DEFAULT_CONTROLLER_RESYNC_S = 5.0
# The registry in the cluster's object store (the bucket KFP uses).
DEFAULT_CLUSTER_REGISTRY_URI = "s3://mlpipeline/registry"
# The feature store `make deploy` runs (manifests/base/feature-store), as pipeline steps and model
# servers reach it: the repository in that bucket, Redis and Feast's feature server in `mlops`.
DEFAULT_CLUSTER_FEATURE_REPO = "s3://mlpipeline/features/churn"
DEFAULT_CLUSTER_ONLINE_STORE = "redis://mlops-online-store.mlops:6379"
DEFAULT_CLUSTER_FEATURE_SERVER_URL = "http://mlops-feature-server.mlops:6566"
# Serving: rows in one request and bytes in one body at most.
DEFAULT_MAX_BATCH_ROWS = 1000
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
# The positive-class probability at or above which a prediction is the positive class.
DEFAULT_DECISION_THRESHOLD = 0.5
# Experiments: the chance of declaring a winner among equal versions (a bandit's false winner).
DEFAULT_WINNER_ALPHA = 0.01
# Drift: a feature drifted when its PSI, or its test's effect size at significance alpha, is past
# these (mlops_core/drift.py's DriftThresholds, the live monitor's settings).
DEFAULT_DRIFT_PSI = 0.2
DEFAULT_DRIFT_ALPHA = 0.01
DEFAULT_DRIFT_KS_STATISTIC = 0.1
DEFAULT_DRIFT_CRAMERS_V = 0.1
# The retraining trigger (mlops_control/retraining/trigger.py's TriggerPolicy): fire when this
# share of features drifted, sustained this long over this many evaluations, at most once a
# cool-down.
DEFAULT_TRIGGER_SHARE_DRIFTED = 0.1
DEFAULT_TRIGGER_SUSTAIN_S = 300.0
DEFAULT_TRIGGER_MIN_EVALUATIONS = 3
DEFAULT_TRIGGER_COOLDOWN_S = 3600.0
# The canary's traffic steps (percent); the first is where a new version starts.
DEFAULT_CANARY_STEPS = (10, 25, 50, 100)
DEFAULT_FIRST_CANARY_PERCENT = DEFAULT_CANARY_STEPS[0]
# Seconds `mlops canary` waits for KServe's status to show a new traffic split (0: do not wait).
DEFAULT_CONFIRM_TIMEOUT_S = 120.0
# A staged promotion/rollback stage not served by the gateway in this time is reported (and still
# waited on: moving on would drop the requests the stage exists to keep).
DEFAULT_RELEASE_STAGE_TIMEOUT_S = 300.0
# Classes a classifier may be trained on. Training memory grows with classes x rows (a 70k-row,
# 10k-label run reached 6.4 GB); past this a target is refused before training starts.
DEFAULT_MAX_CLASSES = 1000
# Compute for training and batch scoring: "local" (one process) or "dask" (a LocalCluster locally,
# a DaskCluster through the dask-kubernetes operator in a pod); worker count, memory and CPU each.
COMPUTE_CHOICES = ("local", "dask")
DEFAULT_COMPUTE = "local"
DEFAULT_DASK_WORKERS = 2
DEFAULT_DASK_WORKER_MEMORY = "2GiB"
DEFAULT_DASK_WORKER_CPU = 1.0
# Seconds a step waits for the operator's DaskCluster scheduler to answer before it gives up.
DEFAULT_DASK_START_TIMEOUT_S = 300.0
# The feature store (components/feature_store.py): its repository folder locally (feature_store.yaml,
# the registry, the Parquet offline store and the SQLite online store inside it).
DEFAULT_FEATURE_REPO = ".mlops/features"
# `mlops features init`: customers in the generated churn tables. `mlops features serve`: the port
# of Feast's feature server (Feast's own default), the URL a model server's MLOPS_FEATURE_SERVER_URL
# names.
DEFAULT_FEATURE_TABLE_ROWS = 2000
DEFAULT_FEATURE_SERVER_PORT = 6566


def _env(name: str, default: str) -> str:
    return os.environ.get(f"MLOPS_{name.upper()}", default)


@dataclass(frozen=True, kw_only=True)
class Settings:
    registry_uri: str = field(default_factory=lambda: _env("registry_uri", ".mlops/registry"))
    work_dir: str = field(default_factory=lambda: _env("work_dir", ".mlops"))
    model_name: str = field(default_factory=lambda: _env("model_name", DEFAULT_MODEL_NAME))
    # --- serving (`mlops serve`; the serving container sets these through the environment) ---
    model_version: str = field(default_factory=lambda: _env("model_version", "champion"))
    model_dir: str = field(default_factory=lambda: _env("model_dir", ""))
    serve_port: int = field(default_factory=lambda: int(_env("serve_port", "8080")))
    # Loopback by default; the serving container sets MLOPS_SERVE_HOST=0.0.0.0.
    serve_host: str = field(default_factory=lambda: _env("serve_host", "127.0.0.1"))
    # Bearer token for every state-changing endpoint (label feedback, model repository); the
    # manifests fill it from a Secret. Empty: those endpoints are open (local use on loopback).
    api_token: str = field(default_factory=lambda: _env("api_token", ""), repr=False)
    repository_api: bool = field(
        default_factory=lambda: _env("repository_api", "false").lower() in ("1", "true", "yes")
    )
    max_batch_rows: int = field(
        default_factory=lambda: int(_env("max_batch_rows", str(DEFAULT_MAX_BATCH_ROWS)))
    )
    max_body_bytes: int = field(
        default_factory=lambda: int(_env("max_body_bytes", str(DEFAULT_MAX_BODY_BYTES)))
    )
    unknown_category: str = field(default_factory=lambda: _env("unknown_category", "reject"))
    decision_threshold: float = field(
        default_factory=lambda: float(_env("decision_threshold", str(DEFAULT_DECISION_THRESHOLD)))
    )
    access_log: bool = field(
        default_factory=lambda: _env("access_log", "false").lower() in ("1", "true", "yes")
    )
    batch_rows: int = field(default_factory=lambda: int(_env("batch_rows", "256")))
    # The compiled inference path (components.fast_inference); false: the scikit-learn Pipeline.
    fast_path: bool = field(
        default_factory=lambda: _env("fast_path", "true").lower() in ("1", "true", "yes")
    )
    # Feast's feature server: a request carrying only the entity key gets the rest from it
    # (serving/feature_lookup.py). Empty: no lookup, every request carries every feature.
    feature_server_url: str = field(default_factory=lambda: _env("feature_server_url", ""))
    # --- feature store (training sets, materialization) ---
    feature_repo: str = field(default_factory=lambda: _env("feature_repo", DEFAULT_FEATURE_REPO))
    # The online store materialization writes and the feature server reads: redis://host:port.
    # Empty: SQLite in the repository folder (a repository in the object store needs Redis).
    feature_online_store: str = field(default_factory=lambda: _env("feature_online_store", ""))
    # --- monitoring: live drift monitor, label feedback, retraining trigger, audit logs ---
    audit_dir: str = field(default_factory=lambda: _env("audit_dir", ".mlops/audit"))
    # The prediction log rotates at this size (~130 bytes a request: 32 MiB is ~250k requests),
    # keeping this many older files; 0 bytes: never rotate.
    prediction_log_max_bytes: int = field(
        default_factory=lambda: int(_env("prediction_log_max_bytes", str(32 * 1024 * 1024)))
    )
    prediction_log_backups: int = field(
        default_factory=lambda: int(_env("prediction_log_backups", "5"))
    )
    # Scored rows kept for a label to arrive (oldest evicted); about 1 kB of memory each.
    feedback_max_pending: int = field(
        default_factory=lambda: int(_env("feedback_max_pending", "200000"))
    )
    monitor_pane_rows: int = field(default_factory=lambda: int(_env("monitor_pane_rows", "500")))
    monitor_panes: int = field(default_factory=lambda: int(_env("monitor_panes", "10")))
    monitor_min_rows: int = field(default_factory=lambda: int(_env("monitor_min_rows", "1000")))
    monitor_interval_s: float = field(
        default_factory=lambda: float(_env("monitor_interval_s", "5"))
    )
    drift_psi: float = field(
        default_factory=lambda: float(_env("drift_psi", str(DEFAULT_DRIFT_PSI)))
    )
    drift_alpha: float = field(
        default_factory=lambda: float(_env("drift_alpha", str(DEFAULT_DRIFT_ALPHA)))
    )
    drift_ks_statistic: float = field(
        default_factory=lambda: float(_env("drift_ks_statistic", str(DEFAULT_DRIFT_KS_STATISTIC)))
    )
    drift_cramers_v: float = field(
        default_factory=lambda: float(_env("drift_cramers_v", str(DEFAULT_DRIFT_CRAMERS_V)))
    )
    trigger_share_drifted: float = field(
        default_factory=lambda: float(
            _env("trigger_share_drifted", str(DEFAULT_TRIGGER_SHARE_DRIFTED))
        )
    )
    trigger_sustain_s: float = field(
        default_factory=lambda: float(_env("trigger_sustain_s", str(DEFAULT_TRIGGER_SUSTAIN_S)))
    )
    trigger_min_evaluations: int = field(
        default_factory=lambda: int(
            _env("trigger_min_evaluations", str(DEFAULT_TRIGGER_MIN_EVALUATIONS))
        )
    )
    trigger_cooldown_s: float = field(
        default_factory=lambda: float(_env("trigger_cooldown_s", str(DEFAULT_TRIGGER_COOLDOWN_S)))
    )
    kfp_host: str = field(default_factory=lambda: _env("kfp_host", ""))
    max_classes: int = field(
        default_factory=lambda: int(_env("max_classes", str(DEFAULT_MAX_CLASSES)))
    )
    # Local pipeline runs fork each task from one pre-warmed process (pipelines.task_forkserver).
    task_fork_server: bool = field(
        default_factory=lambda: _env("task_fork_server", "true").lower() in ("1", "true", "yes")
    )
    # --- canary rollout (`mlops canary`) ---
    canary_router_url: str = field(
        default_factory=lambda: _env("canary_router_url", "http://127.0.0.1:8090")
    )
    canary_policy: str = field(default_factory=lambda: _env("canary_policy", ""))
    prometheus_url: str = field(
        default_factory=lambda: _env("prometheus_url", "http://127.0.0.1:9090")
    )
    prometheus_selector: str = field(default_factory=lambda: _env("prometheus_selector", ""))
    namespace: str = field(default_factory=lambda: _env("namespace", DEFAULT_NAMESPACE))
    # --- dashboard (`mlops dashboard`; the in-cluster Deployment sets host 0.0.0.0) ---
    dashboard_host: str = field(default_factory=lambda: _env("dashboard_host", "127.0.0.1"))
    dashboard_http_port: int = field(
        default_factory=lambda: int(_env("dashboard_http_port", "8095"))
    )
    dashboard_poll_s: float = field(default_factory=lambda: float(_env("dashboard_poll_s", "5")))

    def with_overrides(self, **overrides: Any) -> Settings:
        """Apply CLI flags; a flag left at None keeps the environment's value."""
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown settings {sorted(unknown)}")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def load_settings(**overrides: Any) -> Settings:
    return Settings().with_overrides(**overrides)
