#!/usr/bin/env bash
# Build the offline inputs of docker/*.Dockerfile under build/ on the host, where PyPI is reachable:
#   build/requirements-image.txt  the runtime requirements (pyproject's dependencies + the s3 and
#                                 dask-operator extras: the component image runs the Dask operator)
#   build/requirements-features.txt  the features extra (Feast with Redis): the component image
#                                 only, which runs the feature server; the model server talks HTTP
#   build/wheelhouse/             their wheels, at requirements.lock's versions
#   build/project/                the project's own wheel (its own layer: code changes rebuild only it)
# The image build then installs with --no-index, so it needs no network.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON_BIN:-.venv/bin/python}
mkdir -p build/wheelhouse
"$PY" - <<'PYEOF' >build/requirements-image.txt.new
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
extras = project["optional-dependencies"]
print("\n".join(project["dependencies"] + extras["s3"] + extras["dask-operator"]))
PYEOF
mv build/requirements-image.txt.new build/requirements-image.txt
"$PY" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["features"]))' \
  >build/requirements-features.txt
# pip wheel reuses wheels already in build/wheelhouse (find-links) and the pip cache.
"$PY" -m pip wheel --quiet --disable-pip-version-check -r build/requirements-image.txt \
  -r build/requirements-features.txt -c requirements.lock --find-links build/wheelhouse -w build/wheelhouse
rm -rf build/project && mkdir -p build/project
"$PY" -m pip wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation . -w build/project
echo "wheelhouse: $(ls build/wheelhouse | wc -l) wheels, $(du -sh build/wheelhouse | cut -f1); project: $(ls build/project)"
