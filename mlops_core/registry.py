"""The model registry: versions, lineage and the champion pointer on any fsspec store.

Layout under the registry URI (a local folder locally, ``s3://bucket/prefix`` on the cluster):

    <model>/versions/<n>/model.skops       the whole scikit-learn Pipeline, skops format
    <model>/versions/<n>/schema.json       the feature schema it was trained on
    <model>/versions/<n>/reference.json    drift reference profile of its training data
    <model>/versions/<n>/version.json      metrics, data fingerprint, params, code version, run id,
                                           artifact sha256 (written last: a version exists once
                                           this file does)
    <model>/champion.json                  {"version": n, "history": [...]} (who, when, why)

The registry is also the lineage store (KFP is dropping ML Metadata): a version names the run that
made it and the fingerprint of its data; the champion history names every promotion and rollback.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec

from mlops_core.drift import ReferenceProfile
from mlops_core.errors import MlopsError
from mlops_core.schema import FeatureSchema

MODEL_FILE = "model.skops"
# Types a model artifact may contain. Anything else in a skops file is refused on load.
TRUSTED_TYPE_PREFIXES = ("sklearn.", "xgboost.", "numpy.", "scipy.", "builtins.", "components.")


class RegistryError(MlopsError):
    """The registry cannot do what was asked; the message says what to do next."""


class IntegrityError(RegistryError):
    """A model artifact does not match the sha256 recorded at registration."""


@dataclass(frozen=True)
class ModelVersion:
    model: str
    version: int
    artifact_sha256: str
    created_at: str
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    data_fingerprint: str = ""
    data_source: str = ""
    code_version: str = ""
    run_id: str = ""
    estimator: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with fsspec.open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def code_version() -> str:
    """The git revision of this checkout, or the installed package version in an image."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"mlops-platform=={version('mlops-platform')}"
        except PackageNotFoundError:
            return "unknown"


def load_artifact(path: str, expected_sha256: str | None = None) -> Any:
    """Load a skops model file after checking its digest and the types it contains."""
    with fsspec.open(path, "rb") as fh:
        blob = fh.read()
    digest = hashlib.sha256(blob).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256:
        raise IntegrityError(
            f"artifact {path} has sha256 {digest}, but the registry recorded {expected_sha256}; "
            "the file was modified after registration. Re-register the model or roll back."
        )
    import skops.io as sio  # here, not at the top: registering a model does not need it (~1s)

    untrusted = sio.get_untrusted_types(data=blob)
    refused = [t for t in untrusted if not t.startswith(TRUSTED_TYPE_PREFIXES)]
    if refused:
        raise IntegrityError(f"artifact {path} contains types outside the allow-list: {refused}")
    return sio.loads(blob, trusted=untrusted)


class ModelRegistry:
    def __init__(self, uri: str, **storage_options: Any) -> None:
        self.uri = uri.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.uri, **storage_options)

    # --- paths ---------------------------------------------------------------------------------
    def _path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def version_dir(self, model: str, version: int) -> str:
        return self._path(model, "versions", str(version))

    def version_uri(self, model: str, version: int) -> str:
        """The version's folder as a URI (what an InferenceService's storageUri points at)."""
        return self.fs.unstrip_protocol(self.version_dir(model, version))

    def _read_json(self, path: str) -> Any:
        with self.fs.open(path, "r") as fh:
            return json.load(fh)

    def _write_json(self, path: str, doc: Any) -> None:
        # Write then move, so a reader never sees half a document.
        tmp = path + ".tmp"
        with self.fs.open(tmp, "w") as fh:
            json.dump(doc, fh, indent=2, sort_keys=True)
        self.fs.mv(tmp, path)

    # --- reading -------------------------------------------------------------------------------
    def models(self) -> list[str]:
        if not self.fs.exists(self.root):
            return []
        return sorted(
            posixpath.basename(p.rstrip("/"))
            for p in self.fs.ls(self.root, detail=False)
            if self.fs.isdir(p)
        )

    def versions(self, model: str) -> list[ModelVersion]:
        base = self._path(model, "versions")
        if not self.fs.exists(base):
            return []
        found = []
        for p in self.fs.ls(base, detail=False):
            meta = posixpath.join(p, "version.json")
            if self.fs.exists(meta):
                found.append(ModelVersion(**self._read_json(meta)))
        return sorted(found, key=lambda v: v.version)

    def get(self, model: str, version: int | str = "champion") -> ModelVersion:
        n = self.resolve(model, version)
        meta = posixpath.join(self.version_dir(model, n), "version.json")
        if not self.fs.exists(meta):
            known = [v.version for v in self.versions(model)]
            raise RegistryError(f"model {model!r} has no version {n}; known versions: {known}")
        return ModelVersion(**self._read_json(meta))

    def resolve(self, model: str, version: int | str) -> int:
        """Turn 'champion', 'latest' or a number into a version number."""
        if isinstance(version, int):
            return version
        if version == "champion":
            champ = self.champion(model)
            if champ is None:
                raise RegistryError(
                    f"model {model!r} has no champion yet; run the training pipeline "
                    "(`mlops pipeline run --local`) or `mlops registry promote`"
                )
            return champ
        if version == "latest":
            versions = self.versions(model)
            if not versions:
                raise RegistryError(f"model {model!r} has no registered versions")
            return versions[-1].version
        try:
            return int(version)
        except ValueError as e:
            raise RegistryError(
                f"version must be a number, 'champion' or 'latest', got {version!r}"
            ) from e

    def champion_doc(self, model: str) -> dict[str, Any]:
        path = self._path(model, "champion.json")
        return self._read_json(path) if self.fs.exists(path) else {"version": None, "history": []}

    def champion(self, model: str) -> int | None:
        return self.champion_doc(model)["version"]

    def schema(self, model: str, version: int | str = "champion") -> FeatureSchema:
        n = self.resolve(model, version)
        return FeatureSchema.load(
            self.fs.unstrip_protocol(posixpath.join(self.version_dir(model, n), "schema.json"))
        )

    def reference(self, model: str, version: int | str = "champion") -> ReferenceProfile:
        n = self.resolve(model, version)
        return ReferenceProfile.from_dict(
            self._read_json(posixpath.join(self.version_dir(model, n), "reference.json"))
        )

    def artifact_path(self, model: str, version: int | str = "champion") -> str:
        n = self.resolve(model, version)
        return self.fs.unstrip_protocol(posixpath.join(self.version_dir(model, n), MODEL_FILE))

    def load_model(self, model: str, version: int | str = "champion") -> Any:
        """Load a version's Pipeline, refusing it if its sha256 differs from the record."""
        mv = self.get(model, version)
        return load_artifact(self.artifact_path(model, mv.version), mv.artifact_sha256)

    # --- writing -------------------------------------------------------------------------------
    def register(
        self,
        model: str,
        artifact_path: str,
        *,
        schema: FeatureSchema,
        reference: ReferenceProfile,
        metrics: dict[str, float] | None = None,
        params: dict[str, Any] | None = None,
        data_fingerprint: str = "",
        data_source: str = "",
        run_id: str = "",
        estimator: str = "",
        tags: dict[str, str] | None = None,
    ) -> ModelVersion:
        """Copy an artifact in as the next version and record its lineage."""
        existing = [v.version for v in self.versions(model)]
        base = self._path(model, "versions")
        if self.fs.exists(base):  # a folder without version.json is a half-written version
            existing += [
                int(posixpath.basename(p.rstrip("/")))
                for p in self.fs.ls(base, detail=False)
                if posixpath.basename(p.rstrip("/")).isdigit()
            ]
        n = max(existing, default=0) + 1
        vdir = self.version_dir(model, n)
        self.fs.makedirs(vdir, exist_ok=True)
        digest = sha256_file(artifact_path)
        with (
            fsspec.open(artifact_path, "rb") as src,
            self.fs.open(posixpath.join(vdir, MODEL_FILE), "wb") as dst,
        ):
            dst.write(src.read())
        with self.fs.open(posixpath.join(vdir, "schema.json"), "w") as fh:
            fh.write(schema.to_json())
        self._write_json(posixpath.join(vdir, "reference.json"), reference.to_dict())
        mv = ModelVersion(
            model=model,
            version=n,
            artifact_sha256=digest,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            metrics=dict(metrics or {}),
            params=dict(params or {}),
            data_fingerprint=data_fingerprint,
            data_source=data_source,
            code_version=code_version(),
            run_id=run_id,
            estimator=estimator,
            tags=dict(tags or {}),
        )
        self._write_json(posixpath.join(vdir, "version.json"), mv.to_dict())
        return mv

    def set_champion(self, model: str, version: int, *, reason: str, actor: str = "mlops") -> None:
        self.get(model, version)  # must exist
        doc = self.champion_doc(model)
        doc["history"].append(
            {
                "version": version,
                "previous": doc["version"],
                "reason": reason,
                "actor": actor,
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
        doc["version"] = version
        self._write_json(self._path(model, "champion.json"), doc)

    def rollback(self, model: str, to_version: int | None = None, *, reason: str = "") -> int:
        """Make an earlier version champion again: the given one, or the previous champion."""
        doc = self.champion_doc(model)
        current = doc["version"]
        if to_version is None:
            earlier = [
                h["previous"]
                for h in reversed(doc["history"])
                if h["version"] == current and h["previous"] is not None
            ]
            if not earlier:
                raise RegistryError(
                    f"model {model!r} has no earlier champion to roll back to; "
                    "name a version with --to"
                )
            to_version = earlier[0]
        if to_version == current:
            raise RegistryError(f"version {to_version} is already the champion of {model!r}")
        self.set_champion(model, to_version, reason=reason or f"rollback from {current}")
        return to_version
