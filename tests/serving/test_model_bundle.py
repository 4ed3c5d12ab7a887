"""Loading a version folder: verified artifact, schema, reference, version record."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mlops_core.churn_data import CHURN_SCHEMA
from mlops_core.registry import IntegrityError, ModelRegistry
from serving.model_bundle import ModelBundleError, load_bundle, load_registered
from tests.serving.harness import MODEL, RegisteredModels


def test_load_registered_champion(registered: RegisteredModels) -> None:
    bundle = load_registered(registered.registry_uri, MODEL, "champion")
    assert bundle.version == str(registered.xgboost_version)
    assert bundle.schema == CHURN_SCHEMA
    assert bundle.reference is not None
    assert bundle.record.estimator == "xgboost"


def test_tampered_artifact_is_refused(registered: RegisteredModels, tmp_path: Path) -> None:
    src = ModelRegistry(registered.registry_uri).version_dir(MODEL, registered.xgboost_version)
    copy = tmp_path / "models"
    shutil.copytree(src, copy)
    with (copy / "model.skops").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(IntegrityError, match="sha256"):
        load_bundle(str(copy))


def test_incomplete_folder_names_what_is_missing(
    registered: RegisteredModels, tmp_path: Path
) -> None:
    src = ModelRegistry(registered.registry_uri).version_dir(MODEL, registered.xgboost_version)
    copy = tmp_path / "models"
    shutil.copytree(src, copy)
    (copy / "version.json").unlink()
    with pytest.raises(ModelBundleError, match=r"version\.json"):
        load_bundle(str(copy))
