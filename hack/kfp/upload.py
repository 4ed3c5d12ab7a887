"""Register a compiled pipeline in KFP, as a user does in the UI's "Upload pipeline" (`make upload`).

The pipeline is named by the YAML's pipelineInfo.name; each distinct YAML becomes one version,
named by its content hash, so uploading an unchanged file adds nothing and a changed one adds a
version. Prints the pipeline and version ids.
Usage: python hack/kfp/upload.py --host http://localhost:8887 pipelines/training.yaml
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import yaml


def version_name(name: str, package: Path) -> str:
    return f"{name}-{hashlib.sha256(package.read_bytes()).hexdigest()[:12]}"


def upload(host: str, package: Path) -> tuple[str, str]:
    import kfp

    spec = next(
        doc for doc in yaml.safe_load_all(package.read_text()) if doc and "pipelineInfo" in doc
    )
    name = spec["pipelineInfo"]["name"]
    description = spec["pipelineInfo"].get("description", "")
    client = kfp.Client(host=host)
    wanted = version_name(name, package)
    pipeline_id = client.get_pipeline_id(name)
    if pipeline_id is None:
        pipeline = client.upload_pipeline(str(package), pipeline_name=name, description=description)
        pipeline_id = pipeline.pipeline_id
    versions = client.list_pipeline_versions(pipeline_id, page_size=200).pipeline_versions or []
    for version in versions:
        if version.display_name == wanted:
            return pipeline_id, version.pipeline_version_id
    version = client.upload_pipeline_version(
        str(package), pipeline_version_name=wanted, pipeline_id=pipeline_id, description=description
    )
    return pipeline_id, version.pipeline_version_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True, help="the KFP API, e.g. http://localhost:8887")
    parser.add_argument("package", type=Path)
    args = parser.parse_args()
    try:
        pipeline_id, version_id = upload(args.host, args.package)
    except Exception as e:  # kfp raises urllib3/ApiException variants: one line for the user
        sys.exit(f"error: cannot upload {args.package} to {args.host}: {e}")
    print(f"pipeline {pipeline_id} version {version_id}")


if __name__ == "__main__":
    main()
