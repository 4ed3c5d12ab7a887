"""The model registry: versions, lineage and the champion pointer on any fsspec store.

Layout under the registry URI (a local folder locally, ``s3://bucket/prefix`` on the cluster):

    <model>/versions/<n>/claim.json        who took version number n (created if absent: of many
                                           concurrent registrations exactly one gets each n)
    <model>/versions/<n>/model.skops       the whole scikit-learn Pipeline, skops format
    <model>/versions/<n>/schema.json       the feature schema it was trained on
    <model>/versions/<n>/reference.json    drift reference profile of its training data
    <model>/versions/<n>/slices.json       its holdout metrics per category of the slice column
                                           (absent: none recorded, or registered before they
                                           were kept)
    <model>/versions/<n>/version.json      metrics, data fingerprint, params, code version, run id,
                                           artifact sha256 (written last: a version exists once
                                           this file does)
    <model>/champion/<seq>.json            the champion log: one entry per promotion or rollback
                                           (who, when, why); the last entry names the champion.
                                           Entry seq+1 is created only if absent, so appending
                                           after reading entry seq is a compare-and-swap.

Every file is written whole and never edited; `mlops_core.registry_store` says which store gives
which guarantee. The registry is also the lineage store (KFP is dropping ML Metadata): a version
names the run that made it and the fingerprint of its data; the champion log names every
promotion and rollback.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import fsspec

from mlops_core.drift import ReferenceProfile
from mlops_core.errors import ConflictError, InvalidInputError, MlopsError, NotFoundError
from mlops_core.model_artifact import IntegrityError, load_artifact, sha256_file
from mlops_core.registry_store import AtomicStore
from mlops_core.schema import FeatureSchema, SchemaError
from mlops_core.slices import SliceMetrics

__all__ = [
    "MODEL_FILE",
    "ChampionConflictError",
    "CorruptRegistryFileError",
    "IntegrityError",
    "ModelRegistry",
    "ModelVersion",
    "RegistryError",
    "RegistryNotFoundError",
    "SliceMetrics",
    "UnreadableVersion",
    "code_version",
    "load_artifact",
    "sha256_file",
]

_Record = TypeVar("_Record")  # a dataclass a registry JSON file is read into

MODEL_FILE = "model.skops"
SLICES_FILE = "slices.json"
_LEGACY_CHAMPION = "champion.json"  # the single rewritten pointer of earlier releases (read only)
_ANY = object()  # set_champion's `expected` when the caller does not care who is champion now
_MAX_APPEND_TRIES = 100


class RegistryError(MlopsError):
    """The registry cannot do what was asked; the message says what to do next."""


class RegistryNotFoundError(RegistryError, NotFoundError):
    """The registry, model, version or champion named does not exist."""


class ChampionConflictError(RegistryError, ConflictError):
    """The champion is not what the caller expected (another writer moved it, or it is already
    the version asked for)."""


class CorruptRegistryFileError(RegistryError):
    """A registry file is not the JSON document it should be."""


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
    # Trained from a feature store: the training set's fingerprint, the label rows dropped and
    # each feature view's definition sha and max age (components/feature_store.py).
    feature_lineage: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class UnreadableVersion:
    """A version whose record (version.json) is corrupt: listed, with the reason, not loaded."""

    version: int
    problem: str


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


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, indent=2, sort_keys=True).encode()


def promotion_stack(history: list[dict[str, Any]]) -> list[int]:
    """The champions a rollback can return to, oldest first; the last one is the champion.

    A promotion pushes its version (moving it to the top if it was already there). A rollback
    drops the version it rolls back from, then pops back to its target, or pushes a target that
    was never champion. So repeated rollbacks walk the history backwards, never toggle, and never
    return to a version that was rolled back from (until someone promotes it again).
    """
    stack: list[int] = []
    for entry in history:
        version = entry["version"]
        if entry.get("action") == "rollback":
            rolled_from = stack[-1] if stack else entry.get("previous")
            stack = [v for v in stack if v != rolled_from]
            if version in stack:
                del stack[stack.index(version) + 1 :]
                continue
        elif version in stack:
            stack.remove(version)
        stack.append(version)
    return stack


class ModelRegistry:
    def __init__(self, uri: str, **storage_options: Any) -> None:
        self.uri = uri.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.uri, **storage_options)
        self.store = AtomicStore(self.fs)

    # --- paths ---------------------------------------------------------------------------------
    def _path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def version_dir(self, model: str, version: int) -> str:
        return self._path(model, "versions", str(version))

    def version_uri(self, model: str, version: int) -> str:
        """The version's folder as a URI (what an InferenceService's storageUri points at)."""
        uri: str = self.fs.unstrip_protocol(self.version_dir(model, version))  # fsspec: untyped
        return uri

    def _read_json(self, path: str) -> Any:
        """A registry JSON file, or one line naming the file and what is wrong with it."""
        shown = self.fs.unstrip_protocol(path)
        try:
            raw = self.store.read(path)
        except FileNotFoundError as e:
            raise RegistryNotFoundError(f"registry file {shown} does not exist") from e
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise CorruptRegistryFileError(
                f"registry file {shown} is corrupt ({e}); restore it from a backup, or remove "
                "the version folder it belongs to"
            ) from e

    def _read_record(self, path: str, kind: type[_Record], required: tuple[str, ...]) -> _Record:
        doc = self._read_json(path)
        shown = self.fs.unstrip_protocol(path)
        missing = [k for k in required if not isinstance(doc, dict) or k not in doc]
        if missing:
            raise CorruptRegistryFileError(
                f"registry file {shown} is not a {kind.__name__} record: missing {missing}"
            )
        try:
            return kind(**doc)
        except TypeError as e:
            raise CorruptRegistryFileError(
                f"registry file {shown} is not a {kind.__name__} record: {e}"
            ) from e

    # --- reading -------------------------------------------------------------------------------
    def models(self) -> list[str]:
        return [
            name
            for name in self.store.names(self.root)
            if self.fs.isdir(self._path(name)) and not name.startswith(".")
        ]

    def _version_numbers(self, model: str) -> list[int]:
        """Every number taken (claimed, half-written or complete), ascending."""
        names = self.store.names(self._path(model, "versions"))
        return sorted(int(n) for n in names if n.isdigit())

    def versions(self, model: str) -> list[ModelVersion]:
        found = []
        for n in self._version_numbers(model):
            meta = posixpath.join(self.version_dir(model, n), "version.json")
            if self.fs.exists(meta):
                found.append(self._read_version(meta))
        return found

    def version_listing(self, model: str) -> list[ModelVersion | UnreadableVersion]:
        """Every complete version, with a version whose record cannot be read listed as
        unreadable (and why) instead of failing the whole listing."""
        found: list[ModelVersion | UnreadableVersion] = []
        for n in self._version_numbers(model):
            meta = posixpath.join(self.version_dir(model, n), "version.json")
            if not self.fs.exists(meta):
                continue  # claimed, still being written
            try:
                found.append(self._read_version(meta))
            except CorruptRegistryFileError as e:
                found.append(UnreadableVersion(version=n, problem=str(e)))
        return found

    def _read_version(self, meta: str) -> ModelVersion:
        mv = self._read_record(meta, ModelVersion, ("model", "version", "artifact_sha256"))
        if not isinstance(mv.version, int) or not isinstance(mv.artifact_sha256, str):
            raise CorruptRegistryFileError(
                f"registry file {self.fs.unstrip_protocol(meta)} has a version that is not a "
                f"number ({mv.version!r}) or a digest that is not text"
            )
        return mv

    def get(self, model: str, version: int | str = "champion") -> ModelVersion:
        n = self.resolve(model, version)
        meta = posixpath.join(self.version_dir(model, n), "version.json")
        if not self.fs.exists(meta):
            self.require_exists()  # a mistyped registry path is not "no such version"
            known = [v.version for v in self.versions(model)]
            raise RegistryNotFoundError(
                f"model {model!r} has no version {n}; known versions: {known}"
            )
        return self._read_version(meta)

    def _no_registry_hint(self) -> str | None:
        if not self.fs.exists(self.root):
            return (
                f"the registry {self.uri} does not exist; check --registry / MLOPS_REGISTRY_URI, "
                "or run the training pipeline (`mlops pipeline run --local`) to create it"
            )
        if not self.fs.isdir(self.root):
            return (
                f"the registry {self.uri} is a file, not a registry folder; check --registry / "
                "MLOPS_REGISTRY_URI"
            )
        return None

    def require_exists(self) -> None:
        """Refuse a registry path that does not exist, naming it: read as an empty registry, a
        mistyped --registry would be reported as "no champion yet" or "no versions"."""
        hint = self._no_registry_hint()
        if hint:
            raise RegistryNotFoundError(hint)

    def resolve(self, model: str, version: int | str) -> int:
        """Turn 'champion', 'latest' or a number into a version number."""
        if isinstance(version, int):
            return version
        if version in ("champion", "latest"):
            self.require_exists()
        if version == "champion":
            champ = self.champion(model)
            if champ is None:
                raise RegistryNotFoundError(
                    f"model {model!r} has no champion yet; run the training pipeline "
                    "(`mlops pipeline run --local`) or `mlops registry promote`"
                )
            return champ
        if version == "latest":
            versions = self.versions(model)
            if not versions:
                raise RegistryNotFoundError(f"model {model!r} has no registered versions")
            return versions[-1].version
        try:
            return int(version)
        except ValueError as e:
            raise InvalidInputError(
                f"version must be a number, 'champion' or 'latest', got {version!r}"
            ) from e

    def _champion_log(self, model: str) -> tuple[list[dict[str, Any]], int]:
        """(history, seq of the last log entry); legacy champion.json history comes first."""
        history: list[dict[str, Any]] = []
        legacy = self._path(model, _LEGACY_CHAMPION)
        if self.fs.exists(legacy):
            doc = self._read_json(legacy)
            if not isinstance(doc, dict) or not isinstance(doc.get("history"), list):
                raise CorruptRegistryFileError(
                    f"registry file {self.fs.unstrip_protocol(legacy)} has no history list"
                )
            history += doc["history"]
        seqs = sorted(
            int(n[:-5])
            for n in self.store.names(self._path(model, "champion"))
            if n.endswith(".json") and n[:-5].isdigit()
        )
        for seq in seqs:
            path = self._champion_entry_path(model, seq)
            entry = self._read_json(path)
            if not isinstance(entry, dict) or not isinstance(entry.get("version"), int):
                raise CorruptRegistryFileError(
                    f"registry file {self.fs.unstrip_protocol(path)} is not a champion entry "
                    '(expected {"version": <int>, ...})'
                )
            history.append(entry)
        return history, (seqs[-1] if seqs else 0)

    def _champion_entry_path(self, model: str, seq: int) -> str:
        return self._path(model, "champion", f"{seq:08d}.json")

    def champion_doc(self, model: str) -> dict[str, Any]:
        history, _ = self._champion_log(model)
        return {"version": history[-1]["version"] if history else None, "history": history}

    def champion(self, model: str) -> int | None:
        version: int | None = self.champion_doc(model)["version"]  # JSON
        return version

    def schema(self, model: str, version: int | str = "champion") -> FeatureSchema:
        n = self.resolve(model, version)
        path = posixpath.join(self.version_dir(model, n), "schema.json")
        try:
            return FeatureSchema.from_dict(self._read_json(path))
        except SchemaError as e:
            raise CorruptRegistryFileError(
                f"registry file {self.fs.unstrip_protocol(path)} is corrupt: {e}"
            ) from e

    def reference(self, model: str, version: int | str = "champion") -> ReferenceProfile:
        n = self.resolve(model, version)
        path = posixpath.join(self.version_dir(model, n), "reference.json")
        doc = self._read_json(path)
        try:
            return ReferenceProfile.from_dict(doc)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CorruptRegistryFileError(
                f"registry file {self.fs.unstrip_protocol(path)} is not a reference profile: "
                f"{type(e).__name__}: {e}"
            ) from e

    def slices(self, model: str, version: int | str = "champion") -> SliceMetrics | None:
        """The version's holdout metrics per slice, or None where it has none recorded (no slice
        column, or registered before the registry kept them)."""
        n = self.resolve(model, version)
        path = posixpath.join(self.version_dir(model, n), SLICES_FILE)
        try:
            doc = self._read_json(path)
        except RegistryNotFoundError:
            return None
        try:
            return SliceMetrics.from_dict(doc)
        except ValueError as e:
            raise CorruptRegistryFileError(
                f"registry file {self.fs.unstrip_protocol(path)} is not a slice metrics record: {e}"
            ) from e

    def artifact_path(self, model: str, version: int | str = "champion") -> str:
        n = self.resolve(model, version)
        uri: str = self.fs.unstrip_protocol(posixpath.join(self.version_dir(model, n), MODEL_FILE))
        return uri

    def load_model(self, model: str, version: int | str = "champion") -> Any:
        """Load a version's Pipeline, refusing it if its sha256 differs from the record."""
        mv = self.get(model, version)
        return load_artifact(self.artifact_path(model, mv.version), mv.artifact_sha256)

    # --- writing -------------------------------------------------------------------------------
    def _claim_version(self, model: str, run_id: str) -> int:
        """Take the next free version number: create-if-absent on its claim file."""
        n = max(self._version_numbers(model), default=0) + 1
        claim = _dumps({"run_id": run_id, "at": _now()})
        while not self.store.create_if_absent(
            posixpath.join(self.version_dir(model, n), "claim.json"), claim
        ):
            n += 1  # a rival took n between our listing and our claim: try the next one
        return n

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
        slices: SliceMetrics | None = None,
        feature_lineage: dict[str, Any] | None = None,
    ) -> ModelVersion:
        """Copy an artifact in as the next version and record its lineage (with `slices`, its
        holdout metrics per slice)."""
        with fsspec.open(artifact_path, "rb") as src:
            blob = src.read()  # read once: the digest recorded is the digest of what is stored
        n = self._claim_version(model, run_id)
        vdir = self.version_dir(model, n)
        self.store.put_whole(posixpath.join(vdir, MODEL_FILE), blob)
        self.store.put_whole(posixpath.join(vdir, "schema.json"), schema.to_json().encode())
        self.store.put_whole(posixpath.join(vdir, "reference.json"), _dumps(reference.to_dict()))
        if slices is not None:
            self.store.put_whole(posixpath.join(vdir, SLICES_FILE), _dumps(slices.to_dict()))
        mv = ModelVersion(
            model=model,
            version=n,
            artifact_sha256=hashlib.sha256(blob).hexdigest(),
            created_at=_now(),
            metrics=dict(metrics or {}),
            params=dict(params or {}),
            data_fingerprint=data_fingerprint,
            data_source=data_source,
            code_version=code_version(),
            run_id=run_id,
            estimator=estimator,
            tags=dict(tags or {}),
            feature_lineage=dict(feature_lineage or {}),
        )
        self.store.put_whole(posixpath.join(vdir, "version.json"), _dumps(mv.to_dict()))
        return mv

    def set_champion(
        self,
        model: str,
        version: int,
        *,
        reason: str,
        actor: str = "mlops",
        expected: int | object | None = _ANY,
        action: str = "promote",
    ) -> dict[str, Any]:
        """Make `version` champion by appending to the champion log; returns the new entry.

        With `expected`, this is a compare-and-swap: it fails with `ChampionConflictError` unless
        the champion is `expected` (None: no champion yet) at the moment the entry is created.
        """
        self.get(model, version)  # must exist
        for _ in range(_MAX_APPEND_TRIES):
            history, seq = self._champion_log(model)
            current = history[-1]["version"] if history else None
            if expected is not _ANY and current != expected:
                raise ChampionConflictError(
                    f"the champion of {model!r} is {_named(current)}, not {_named(expected)} as "
                    f"expected: another writer moved it; v{version} was not made champion"
                )
            if current == version:
                raise ChampionConflictError(
                    f"version {version} is already the champion of {model!r}"
                )
            entry = {
                "seq": seq + 1,
                "version": version,
                "previous": current,
                "action": action,
                "reason": reason,
                "actor": actor,
                "at": _now(),
            }
            if self.store.create_if_absent(
                self._champion_entry_path(model, seq + 1), _dumps(entry)
            ):
                return entry
        raise ChampionConflictError(
            f"the champion of {model!r} kept moving under {_MAX_APPEND_TRIES} attempts; try again"
        )

    def rollback(self, model: str, to_version: int | None = None, *, reason: str = "") -> int:
        """Make an earlier version champion again: the given one, or the one before the current
        champion in the promotion history (repeated rollbacks keep walking backwards)."""
        history, _ = self._champion_log(model)
        stack = promotion_stack(history)
        current = stack[-1] if stack else None
        if to_version is None:
            if len(stack) < 2:
                raise ChampionConflictError(
                    f"model {model!r} has no earlier champion to roll back to; "
                    "name a version with --to"
                )
            to_version = stack[-2]
        self.set_champion(
            model,
            to_version,
            reason=reason or f"rollback from {current}",
            expected=current,
            action="rollback",
        )
        return to_version


def _named(version: object) -> str:
    return "no champion" if version is None else f"v{version}"
