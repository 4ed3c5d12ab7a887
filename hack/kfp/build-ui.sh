#!/usr/bin/env bash
# Build the KFP UI (frontend/ of the pinned release, from ../shared/upstream/kfp) with npm into
# $KFP_CACHE/frontend-<version>/frontend: the client bundle (vite) and the Node server that serves it
# and proxies the API. Cached: does nothing once server/dist/server.js and build/index.html exist.
# Two changes to the upstream tree, made in the cache copy only:
#   - its .npmrc sets engine-strict and package.json wants node 24: npm runs with
#     --engine-strict=false on the node this machine has;
#   - its devDependencies name the placeholder package fs@0.0.1-security, which the npm registry
#     here does not serve: it is removed from package.json and the lock (nothing imports it).
# `npm run build` also runs lint and typecheck; only the steps that produce files run here.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

UI=$KFP_CACHE/frontend-$KFP_VERSION/frontend
NPM=(npm --engine-strict=false --no-audit --no-fund --loglevel=error)

extract() {
  [[ -f $UI/.extracted ]] && return 0
  rm -rf "${UI%/frontend}" && mkdir -p "${UI%/frontend}"
  tar -xzf "$KFP_UPSTREAM/kfp-frontend.tar.gz" -C "${UI%/frontend}"
  (cd "$UI" && node -e '
    const fs = require("fs");
    const edit = (f, fn) => { const j = JSON.parse(fs.readFileSync(f)); fn(j); fs.writeFileSync(f, JSON.stringify(j, null, 2) + "\n"); };
    edit("package.json", (p) => { delete p.devDependencies.fs; delete (p.dependencies || {}).fs; });
    edit("package-lock.json", (l) => { delete l.packages[""].devDependencies.fs; delete l.packages["node_modules/fs"]; });
  ')
  touch "$UI/.extracted"
}

client() {
  [[ -f $UI/build/index.html ]] && return 0
  # --ignore-scripts: the postinstall would also install the mock backend; the server is below.
  (cd "$UI" && $NICE "${NPM[@]}" ci --ignore-scripts)
  (cd "$UI" && $NICE npx tailwindcss build -i src/tailwind.css -o src/build/tailwind.output.css)
  (cd "$UI" && $NICE npx vite build)
}

server() {
  [[ -f $UI/server/dist/server.js ]] && return 0
  (cd "$UI/server" && $NICE "${NPM[@]}" ci && $NICE npm run build)
}

cd "$(dirname "$0")"
stage "ui: extract" extract
stage "ui: client (npm ci, vite)" client
stage "ui: server (npm ci, tsc)" server
print_stage_times
