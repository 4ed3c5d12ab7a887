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
    max_batch_rows: int = field(default_factory=lambda: int(_env("max_batch_rows", "1000")))
    max_body_bytes: int = field(default_factory=lambda: int(_env("max_body_bytes", "4194304")))
    unknown_category: str = field(default_factory=lambda: _env("unknown_category", "reject"))
    decision_threshold: float = field(
        default_factory=lambda: float(_env("decision_threshold", "0.5"))
    )
    access_log: bool = field(
        default_factory=lambda: _env("access_log", "false").lower() in ("1", "true", "yes")
    )
    batch_rows: int = field(default_factory=lambda: int(_env("batch_rows", "256")))
    # The compiled inference path (components.fast_inference); false: the scikit-learn Pipeline.
    fast_path: bool = field(
        default_factory=lambda: _env("fast_path", "true").lower() in ("1", "true", "yes")
    )
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
    drift_psi: float = field(default_factory=lambda: float(_env("drift_psi", "0.2")))
    drift_alpha: float = field(default_factory=lambda: float(_env("drift_alpha", "0.01")))
    drift_ks_statistic: float = field(
        default_factory=lambda: float(_env("drift_ks_statistic", "0.1"))
    )
    drift_cramers_v: float = field(default_factory=lambda: float(_env("drift_cramers_v", "0.1")))
    trigger_share_drifted: float = field(
        default_factory=lambda: float(_env("trigger_share_drifted", "0.1"))
    )
    trigger_sustain_s: float = field(
        default_factory=lambda: float(_env("trigger_sustain_s", "300"))
    )
    trigger_min_evaluations: int = field(
        default_factory=lambda: int(_env("trigger_min_evaluations", "3"))
    )
    trigger_cooldown_s: float = field(
        default_factory=lambda: float(_env("trigger_cooldown_s", "3600"))
    )
    kfp_host: str = field(default_factory=lambda: _env("kfp_host", ""))
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

    def with_overrides(self, **overrides: Any) -> Settings:
        """Apply CLI flags; a flag left at None keeps the environment's value."""
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown settings {sorted(unknown)}")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def load_settings(**overrides: Any) -> Settings:
    return Settings().with_overrides(**overrides)
