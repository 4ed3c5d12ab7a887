"""Render and adjust upstream manifests for `hack/deploy.sh`, the one install path of `make deploy`.

Reads a release file (URL or path) or a kustomize directory, then, in order:
  --drop-kind KIND            leave out every object of KIND (cert-manager's Certificate/Issuer:
                              the deploy signs the webhook certificates itself)
  --part crds|rest            only the CustomResourceDefinitions, or everything else (a CRD must be
                              established before objects of its kind are applied)
  --image REPO=REF            replace every image REPO[:tag|@digest] with REF, also inside strings
                              such as KServe's inferenceservice-config JSON (local builds)
  --configmap-json NS/NAME:KEY.FIELD=VALUE
                              set FIELD of the JSON document in a ConfigMap's data KEY
  --set KIND/NAME:PATH=VALUE  set a field (dotted PATH; VALUE is YAML)
  --ca-bundle FILE            put the CA into caBundle of every webhook client config that
                              cert-manager would have injected (annotation inject-ca-from)
  --subject-namespace NS      namespace of ServiceAccount subjects of (Cluster)RoleBindings that
                              name the `default` namespace (Traefik's RBAC reference file)
  --namespaced-rbac NS        (repeatable) keep a ClusterRole's rules on cluster-scoped resources
                              only; its rules on namespaced ones become a Role, bound like the
                              ClusterRole, in each NS (Traefik reads Secrets and ConfigMaps only
                              where it watches routes, not in the whole cluster)
and writes the multi-document YAML to stdout. `--certificates` prints, instead, the cert-manager
Certificates as JSON lines (secret, namespace, DNS names): what the deploy must sign.
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

INJECT_CA = "cert-manager.io/inject-ca-from"
# The cluster-scoped resources (and their subresources) the RBAC files we narrow name: core
# Namespaces and Gateway API's GatewayClass (scope: Cluster in its CRD; tests pin both).
CLUSTER_SCOPED = frozenset({"namespaces", "gatewayclasses", "gatewayclasses/status"})


def read_source(source: str) -> str:
    if re.match(r"^https?://", source):
        with urllib.request.urlopen(source, timeout=60) as response:  # a pinned release URL
            return response.read().decode()
    path = Path(source)
    if path.is_dir():
        return subprocess.run(
            ["kubectl", "kustomize", str(path)], check=True, capture_output=True, text=True
        ).stdout
    return path.read_text()


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads YAML 1.1's `=` (value) tag as a plain string, as Go's YAML does:
    prometheus-operator's bundle lists "=" among a CRD's enum values."""


_Loader.add_constructor("tag:yaml.org,2002:value", _Loader.construct_yaml_str)


def documents(text: str) -> Iterator[dict[str, Any]]:
    for doc in yaml.load_all(text, Loader=_Loader):
        if isinstance(doc, dict) and doc.get("kind"):
            if doc["kind"].endswith("List") and "items" in doc:
                yield from doc["items"]
            else:
                yield doc


def image_patterns(repo: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """(an `image:` field's whole value, a reference inside any other string). Inside other
    strings (flags, JSON in a ConfigMap) only a reference with a tag or digest counts, so that a
    bare name such as `traefik` in `--service.name=traefik` is left alone."""
    ref = rf"{re.escape(repo)}(?::[\w.-]+)?(?:@sha256:[0-9a-f]+)?"
    tagged = rf"{re.escape(repo)}(?::[\w.-]+(?:@sha256:[0-9a-f]+)?|@sha256:[0-9a-f]+)"
    return re.compile(rf"^{ref}$"), re.compile(rf"(?<![\w./-]){tagged}(?![\w./@:-])")


Patterns = list[tuple[tuple[re.Pattern[str], re.Pattern[str]], str]]


def replace_strings(node: Any, patterns: Patterns, key: str = "") -> Any:
    if isinstance(node, dict):
        out = {k: replace_strings(v, patterns, k) for k, v in node.items()}
        # A local build exists only in the node's image store: `Always` would try a registry.
        if out.get("image") != node.get("image") and out.get("imagePullPolicy") == "Always":
            out["imagePullPolicy"] = "IfNotPresent"
        return out
    if isinstance(node, list):
        return [replace_strings(v, patterns, key) for v in node]
    if isinstance(node, str):
        for (whole, inside), ref in patterns:
            node = whole.sub(ref, node) if key == "image" else inside.sub(ref, node)
    return node


def set_path(obj: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    for key in keys[:-1]:
        obj = obj.setdefault(key, {})
    obj[keys[-1]] = value


def inject_ca(obj: dict[str, Any], ca_b64: str) -> None:
    annotations = obj.get("metadata", {}).get("annotations") or {}
    if INJECT_CA not in annotations:
        return
    if obj["kind"] in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        for webhook in obj.get("webhooks", []):
            webhook.setdefault("clientConfig", {})["caBundle"] = ca_b64
    elif obj["kind"] == "CustomResourceDefinition":
        webhook = obj.get("spec", {}).get("conversion", {}).get("webhook")
        if webhook:
            webhook.setdefault("clientConfig", {})["caBundle"] = ca_b64
    # Nothing will inject it: the annotation would only mislead a reader of the live object.
    del annotations[INJECT_CA]


def namespaced_rbac(objs: list[dict[str, Any]], namespaces: list[str]) -> list[dict[str, Any]]:
    """Split each ClusterRole: cluster-scoped rules stay; the rest go to a Role per namespace,
    and each ClusterRoleBinding of it gets a RoleBinding per namespace with the same subjects."""
    split: dict[str, list[dict[str, Any]]] = {}
    out: list[dict[str, Any]] = []
    for obj in objs:
        if obj["kind"] != "ClusterRole":
            continue
        cluster, local = [], []
        for rule in obj.get("rules", []):
            resources = rule.get("resources", [])
            if kept := [r for r in resources if r in CLUSTER_SCOPED]:
                cluster.append({**rule, "resources": kept})
            if moved := [r for r in resources if r not in CLUSTER_SCOPED]:
                local.append({**rule, "resources": moved})
        split[obj["metadata"]["name"]] = local
        obj["rules"] = cluster
    for obj in objs:
        out.append(obj)
        name = obj["metadata"]["name"]
        if obj["kind"] == "ClusterRole":
            out += [
                {
                    "apiVersion": obj["apiVersion"],
                    "kind": "Role",
                    "metadata": {"name": name, "namespace": ns},
                    "rules": copy.deepcopy(split[name]),
                }
                for ns in namespaces
            ]
        elif obj["kind"] == "ClusterRoleBinding" and obj["roleRef"]["name"] in split:
            out += [
                {
                    "apiVersion": obj["apiVersion"],
                    "kind": "RoleBinding",
                    "metadata": {"name": name, "namespace": ns},
                    "roleRef": {**obj["roleRef"], "kind": "Role"},
                    "subjects": copy.deepcopy(obj["subjects"]),
                }
                for ns in namespaces
            ]
    return out


def parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source")
    parser.add_argument("--drop-kind", action="append", default=[])
    parser.add_argument("--part", choices=("crds", "rest", "all"), default="all")
    parser.add_argument("--image", action="append", default=[])
    parser.add_argument("--configmap-json", action="append", default=[])
    parser.add_argument("--set", action="append", default=[], dest="sets")
    parser.add_argument("--ca-bundle")
    parser.add_argument("--subject-namespace")
    parser.add_argument("--namespaced-rbac", action="append", default=[])
    parser.add_argument("--certificates", action="store_true")
    args = parser.parse_args(argv)

    objs = list(documents(read_source(args.source)))
    if args.certificates:
        for obj in objs:
            if obj["kind"] == "Certificate":
                spec = obj["spec"]
                print(
                    json.dumps(
                        {
                            "secret": spec["secretName"],
                            "namespace": obj["metadata"].get("namespace", "default"),
                            "dns_names": spec.get("dnsNames") or [spec["commonName"]],
                        }
                    )
                )
        return 0

    objs = [o for o in objs if o["kind"] not in args.drop_kind]
    if args.part == "crds":
        objs = [o for o in objs if o["kind"] == "CustomResourceDefinition"]
    elif args.part == "rest":
        objs = [o for o in objs if o["kind"] != "CustomResourceDefinition"]

    patterns = []
    for mapping in args.image:
        repo, _, ref = mapping.partition("=")
        if ref:  # an empty REF means "no local build": keep the release image
            patterns.append((image_patterns(repo), ref))
    ca_b64 = (
        base64.b64encode(Path(args.ca_bundle).read_bytes()).decode() if args.ca_bundle else None
    )

    out = []
    for obj in objs:
        obj = replace_strings(obj, patterns)
        meta = obj.get("metadata", {})
        ident = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        for spec in args.configmap_json:
            target, _, assignment = spec.partition(":")
            key_field, _, value = assignment.partition("=")
            key, _, field = key_field.partition(".")
            if obj["kind"] == "ConfigMap" and ident == target and key in obj.get("data", {}):
                data = json.loads(obj["data"][key])
                set_path(data, field, parse_value(value))
                obj["data"][key] = json.dumps(data, indent=2)
        for spec in args.sets:
            target, _, assignment = spec.partition(":")
            path, _, value = assignment.partition("=")
            if f"{obj['kind']}/{meta.get('name', '')}" == target:
                set_path(obj, path, yaml.safe_load(value))
        if ca_b64:
            inject_ca(obj, ca_b64)
        if args.subject_namespace and obj["kind"] in ("ClusterRoleBinding", "RoleBinding"):
            for subject in obj.get("subjects", []):
                if (
                    subject.get("kind") == "ServiceAccount"
                    and subject.get("namespace") == "default"
                ):
                    subject["namespace"] = args.subject_namespace
        out.append(obj)
    if args.namespaced_rbac:
        out = namespaced_rbac(out, args.namespaced_rbac)
    yaml.safe_dump_all(out, sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
