"""Load one registered model version into memory: the verified Pipeline, its schema and metadata.

The one place the predictor (and the benchmark) turns "a version's folder" into something that can
predict. The folder is either the registry's ``<model>/versions/<n>/`` (local path or any fsspec URI)
or ``/mnt/models``, where KServe's storage initializer copies that same folder. The sha256 check and
the skops type allow-list are `mlops_core.registry.load_artifact`'s; nothing is re-implemented here.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from typing import Any

import fsspec
from sklearn.pipeline import Pipeline

from mlops_core.drift import ReferenceProfile
from mlops_core.errors import MlopsError
from mlops_core.registry import MODEL_FILE, ModelRegistry, ModelVersion, load_artifact
from mlops_core.schema import FeatureSchema, SchemaError


class ModelBundleError(MlopsError):
    """A version folder is incomplete or does not hold a usable model."""


@dataclass(frozen=True)
class ModelBundle:
    """Everything the predictor needs from one registered version."""

    pipeline: Pipeline
    schema: FeatureSchema
    reference: ReferenceProfile | None
    record: ModelVersion
    source: str

    @property
    def version(self) -> str:
        return str(self.record.version)

    @property
    def model_name(self) -> str:
        return self.record.model


def _read_json(fs: fsspec.AbstractFileSystem, path: str) -> Any:
    try:
        return json.loads(fs.cat_file(path))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ModelBundleError(f"{fs.unstrip_protocol(path)} is corrupt: {e}") from e


def _parse(fs: fsspec.AbstractFileSystem, path: str, parse: Any) -> Any:
    """`parse(json of path)`, or one line naming the file and what is wrong with it."""
    doc = _read_json(fs, path)
    try:
        return parse(doc)
    except (KeyError, TypeError, ValueError, AttributeError, SchemaError) as e:
        raise ModelBundleError(
            f"{fs.unstrip_protocol(path)} is not what a model version holds: "
            f"{type(e).__name__}: {e}"
        ) from e


def load_bundle(folder: str) -> ModelBundle:
    """Load a version folder (``model.skops``, ``schema.json``, ``reference.json``, ``version.json``)."""
    fs, root = fsspec.core.url_to_fs(folder)
    needed = (MODEL_FILE, "schema.json", "version.json")
    absent = [n for n in needed if not fs.exists(posixpath.join(root, n))]
    if absent:
        raise ModelBundleError(
            f"{folder} is not a registered model version: it lacks {absent}. Point --model-dir at "
            "a registry version folder (<registry>/<model>/versions/<n>) or use --registry."
        )
    record = _parse(fs, posixpath.join(root, "version.json"), lambda d: ModelVersion(**d))
    schema = _parse(fs, posixpath.join(root, "schema.json"), FeatureSchema.from_dict)
    ref_path = posixpath.join(root, "reference.json")
    reference = _parse(fs, ref_path, ReferenceProfile.from_dict) if fs.exists(ref_path) else None
    pipeline = load_artifact(
        fs.unstrip_protocol(posixpath.join(root, MODEL_FILE)), record.artifact_sha256
    )
    needs = "predict_proba" if schema.is_classifier else "predict"
    if not hasattr(pipeline, needs):
        raise ModelBundleError(
            f"{folder}/{MODEL_FILE} holds a {type(pipeline).__name__} without {needs}, not a "
            f"{schema.task} model Pipeline"
        )
    return ModelBundle(
        pipeline=pipeline, schema=schema, reference=reference, record=record, source=folder
    )


def load_registered(registry_uri: str, model: str, version: int | str = "champion") -> ModelBundle:
    """Resolve `version` ('champion', 'latest' or a number) in the registry and load its folder."""
    registry = ModelRegistry(registry_uri)
    number = registry.get(model, version).version
    return load_bundle(registry.version_uri(model, number))
