"""Typed settings shared by the CLI and the components, read from flags and environment variables.

Every setting has one environment variable (``MLOPS_<FIELD>``); a CLI flag overrides it. Modules take
a `Settings` (or the few fields they need) as an argument instead of reading constants.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import Any


def _env(name: str, default: str) -> str:
    return os.environ.get(f"MLOPS_{name.upper()}", default)


@dataclass(frozen=True, kw_only=True)
class Settings:
    registry_uri: str = field(default_factory=lambda: _env("registry_uri", ".mlops/registry"))
    work_dir: str = field(default_factory=lambda: _env("work_dir", ".mlops"))
    model_name: str = field(default_factory=lambda: _env("model_name", "churn"))
    # --- serving (`mlops serve`; the serving container sets these through the environment) ---
    model_version: str = field(default_factory=lambda: _env("model_version", "champion"))
    model_dir: str = field(default_factory=lambda: _env("model_dir", ""))
    serve_port: int = field(default_factory=lambda: int(_env("serve_port", "8080")))
    max_batch_rows: int = field(default_factory=lambda: int(_env("max_batch_rows", "1000")))
    max_body_bytes: int = field(default_factory=lambda: int(_env("max_body_bytes", "4194304")))
    unknown_category: str = field(default_factory=lambda: _env("unknown_category", "reject"))
    decision_threshold: float = field(
        default_factory=lambda: float(_env("decision_threshold", "0.5"))
    )

    def with_overrides(self, **overrides: Any) -> Settings:
        """Apply CLI flags; a flag left at None keeps the environment's value."""
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown settings {sorted(unknown)}")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def load_settings(**overrides: Any) -> Settings:
    return Settings().with_overrides(**overrides)
