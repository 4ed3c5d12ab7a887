"""`make lint`'s manifest check: every kustomization in hack/kubeconform/config.yaml, rendered with
`kubectl kustomize`, validated by kubeconform (hack/kubeconform/build.sh) against the schemas of
the pinned releases (hack/kubeconform/schemas.py, cached by version under
~/.cache/mlops-platform/kubeconform/schemas/).
Usage: python hack/kubeconform/lint.py KUBECONFORM_BINARY   (versions from the environment)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PINS = ("KUBERNETES_VERSION", "GATEWAY_API_VERSION", "PROMETHEUS_OPERATOR_VERSION")


def schemas() -> Path:
    """The schema directory for these versions, made once."""
    env = os.environ
    key = "-".join([*(env[p] for p in PINS), env["KSERVE_SOURCE_COMMIT"][:12]])
    cache = Path(env.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mlops-platform/kubeconform"
    out = cache / "schemas" / key
    if not (out / ".complete").exists():
        tmp = Path(tempfile.mkdtemp(dir=cache))
        subprocess.run([sys.executable, str(HERE / "schemas.py"), str(tmp)], check=True)
        (tmp / ".complete").touch()
        shutil.rmtree(out, ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(out)
    return out


def main() -> int:
    kubeconform = sys.argv[1]
    config = yaml.safe_load((HERE / "config.yaml").read_text())
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        print(
            "manifest lint skipped: kubectl (its kustomize renders the manifests) is not installed"
        )
        return 0
    schema_dir = schemas()
    skip = list(config["skip_kinds"])
    if (schema_dir / "KSERVE_MISSING").exists():
        skip += config["kserve_kinds"]
        print(f"manifest lint: no KServe source here; not validated: {', '.join(skip)}")
    args = [kubeconform, "-summary", "-output", "text"]
    if config["strict"]:
        args.append("-strict")
    if skip:
        args += ["-skip", ",".join(skip)]
    args += ["-schema-location", f"{schema_dir}/{{{{ .Group }}}}-{{{{ .ResourceKind }}}}-"
             "{{ .ResourceAPIVersion }}.json"]  # fmt: skip
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for kustomization in config["kustomizations"]:
            rendered = subprocess.run(
                [kubectl, "kustomize", str(ROOT / kustomization)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            path = Path(tmp) / (kustomization.replace("/", "_") + ".yaml")
            path.write_text(rendered)
            files.append(str(path))
        done = subprocess.run([*args, *files], capture_output=True, text=True)
        print((done.stdout + done.stderr).replace(tmp + "/", "").strip())
        failed = done.returncode
    return failed


if __name__ == "__main__":
    sys.exit(main())
