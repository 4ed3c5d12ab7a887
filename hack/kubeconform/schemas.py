"""Writes the JSON schemas kubeconform validates the manifests against, for the pinned releases,
into a directory (argument 1), named as hack/kubeconform/lint.sh's -schema-location template
expects: <group or v1>-<kind>-<version>.json. kubeconform's default schemas are downloaded from
GitHub at lint time; these are made here, offline, from the same sources as the tests use:

- built-in kinds: the OpenAPI (swagger) document of k8s.io/kubernetes at KUBERNETES_VERSION (its
  Go module), each kind's definition with the definitions it references;
- custom resources: the CRDs' openAPIV3Schema of Gateway API (GATEWAY_API_VERSION) and the
  Prometheus operator (PROMETHEUS_OPERATOR_VERSION) from their Go modules, and KServe's from its
  source tarball at KSERVE_SOURCE_COMMIT (../shared/upstream/kserve; when it is absent, KServe's
  kinds are left out and lint.sh says so).

Strict, as kubeconform's -strict schemas are: an object with declared properties admits no
other (except where the schema preserves unknown fields). int-or-string and quantities accept
a number or a string, as the API server does.
Usage: python hack/kubeconform/schemas.py OUT_DIR   (versions from the environment: the Makefile)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


class _Loader(yaml.SafeLoader):
    """Reads YAML 1.1's `=` (value) tag as a plain string, as Go's YAML does (the Prometheus
    operator's CRDs list "=" among their enum values)."""


_Loader.add_constructor("tag:yaml.org,2002:value", _Loader.construct_yaml_str)
INT_OR_STRING = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
QUANTITY = {"oneOf": [{"type": "string"}, {"type": "number"}]}


def module_dir(module: str, version: str) -> Path:
    done = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        capture_output=True,
        text=True,
        cwd="/tmp",
        env={**os.environ, "GOFLAGS": "-mod=mod"},
    )
    info = json.loads(done.stdout or "{}")
    if done.returncode != 0 or "Dir" not in info:
        sys.exit(f"error: go mod download {module}@{version}: {info.get('Error') or done.stderr}")
    return Path(info["Dir"])


def strict(schema: Any) -> Any:
    """A copy in which objects with properties admit no others; int-or-string made explicit."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if schema.get("x-kubernetes-int-or-string") or schema.get("format") == "int-or-string":
        return INT_OR_STRING
    out = {k: strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def _refs(schema: Any) -> set[str]:
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        found = {ref.rsplit("/", 1)[-1]} if isinstance(ref, str) else set()
        return found.union(*(_refs(v) for v in schema.values()))
    if isinstance(schema, list):
        return set().union(*(_refs(v) for v in schema))
    return set()


def builtin_schemas(out: Path, version: str) -> int:
    k8s = module_dir("k8s.io/kubernetes", version)
    definitions = json.loads((k8s / "api/openapi-spec/swagger.json").read_text())["definitions"]
    definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = INT_OR_STRING
    definitions["io.k8s.apimachinery.pkg.api.resource.Quantity"] = QUANTITY
    written = 0
    for definition in definitions.values():
        for gvk in definition.get("x-kubernetes-group-version-kind") or []:
            if gvk["kind"].endswith("List") or gvk["version"] == "__internal":
                continue
            closure, todo = {}, _refs(definition)
            while todo:
                ref = todo.pop()
                if ref not in closure:
                    closure[ref] = definitions[ref]
                    todo |= _refs(definitions[ref])
            schema = strict({**definition, "definitions": closure})
            group = gvk["group"] or "v1"
            path = out / f"{group}-{gvk['kind'].lower()}-{gvk['version']}.json"
            path.write_text(json.dumps(schema))
            written += 1
    return written


def crd_schemas(out: Path, crds: list[dict[str, Any]]) -> int:
    written = 0
    for crd in crds:
        if not crd or crd.get("kind") != "CustomResourceDefinition":
            continue
        spec = crd.get("spec") or {}
        for version in spec.get("versions") or []:  # none: a kustomize patch, not a whole CRD
            if "schema" not in version:
                continue
            schema = strict(version["schema"]["openAPIV3Schema"])
            # apiVersion, kind and metadata as every object has them.
            schema.setdefault("properties", {}).setdefault("metadata", {"type": "object"})
            kind = spec["names"]["kind"].lower()
            (out / f"{spec['group']}-{kind}-{version['name']}.json").write_text(json.dumps(schema))
            written += 1
    return written


def _yaml_files(directory: Path) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.yaml")):
        docs += [d for d in yaml.load_all(path.read_text(), Loader=_Loader) if d]
    return docs


def kserve_crds(commit: str) -> list[dict[str, Any]] | None:
    tarball = ROOT.parent / "shared/upstream/kserve/kserve-src.tar.gz"
    if not tarball.exists():
        tarball = Path("/work/shared/upstream/kserve/kserve-src.tar.gz")
    if not tarball.exists() or commit not in (tarball.parent / "README.md").read_text():
        return None
    docs: list[dict[str, Any]] = []
    with tarfile.open(tarball) as tf:
        for member in tf.getmembers():
            name = member.name.lstrip("./")
            if name.startswith("config/crd/full/") and name.endswith(".yaml"):
                data = tf.extractfile(member)
                if data is not None and b"kind: CustomResourceDefinition" in (raw := data.read()):
                    docs += [d for d in yaml.load_all(raw, Loader=_Loader) if d]
    return docs


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    env = os.environ
    n = builtin_schemas(out, env["KUBERNETES_VERSION"])
    gateway = module_dir("sigs.k8s.io/gateway-api", env["GATEWAY_API_VERSION"])
    n += crd_schemas(out, _yaml_files(gateway / "config/crd/standard"))
    operator = module_dir(
        "github.com/prometheus-operator/prometheus-operator", env["PROMETHEUS_OPERATOR_VERSION"]
    )
    n += crd_schemas(out, _yaml_files(operator / "example/prometheus-operator-crd"))
    kserve = kserve_crds(env["KSERVE_SOURCE_COMMIT"])
    if kserve is None:
        (out / "KSERVE_MISSING").write_text("no KServe source at KSERVE_SOURCE_COMMIT\n")
    else:
        n += crd_schemas(out, kserve)
    print(f"kubeconform schemas: {n} written to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
