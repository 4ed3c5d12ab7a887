#!/usr/bin/env bash
# Build every image KFP needs on a machine that reaches no container registry, tagged
# $KFP_IMAGE_PREFIX/<name>:<upstream version>. Cached twice: binaries under ~/.cache (build-go.sh,
# build-ui.sh) and each image by tag (an existing tag is kept; KFP_REBUILD=1 rebuilds the images).
# Usage: hack/kfp/build-images.sh [all|go|db|mlmd|tools|ui|list]
#   go   API server, persistence agent, scheduled-workflow controller, cache server, driver,
#        launcher (KFP_VERSION), Argo workflow-controller and argoexec (ARGO_WORKFLOWS_VERSION)
#   db   MariaDB (Debian bookworm's mariadb-server) in place of the manifest's mysql:8.4
#   mlmd the ML Metadata gRPC server over the PyPI ml-metadata store (ML_METADATA_VERSION)
#   ui   the KFP UI (frontend/ of KFP_VERSION, built with npm)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib.sh"

BIN=$KFP_CACHE/bin-kfp$KFP_VERSION-argo$ARGO_WORKFLOWS_VERSION
SUITE=${DEBIAN_SUITE:-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

# image NAME VERSION: the local tag of one image.
image() { echo "$KFP_IMAGE_PREFIX/$1:$2"; }

# wanted TAG: true when TAG must be (re)built.
wanted() { [[ ${KFP_REBUILD:-0} == 1 ]] || ! image_exists "$1"; }

# build_from_dir TAG DIR: docker build DIR (holding its Dockerfile), quietly.
build_from_dir() {
  $NICE docker build -q -t "$1" "$2" >/dev/null
  log "image $1 ($(docker image inspect "$1" --format '{{.Size}}') bytes)"
}

# go_image NAME BINARY... -- DOCKERFILE-LINES: an image of static binaries on the base image.
go_image() {
  local tag=$1 dir
  shift
  wanted "$tag" || return 0
  dir=$(mktemp -d)
  local -a bins=()
  while [[ $1 != -- ]]; do bins+=("$1") && shift; done
  shift
  cp "${bins[@]/#/$BIN/}" "$dir/"
  {
    echo "FROM $KFP_BASE_IMAGE"
    printf 'COPY %s /bin/\n' "${bins[@]}"
    printf '%s\n' "$@"
  } >"$dir/Dockerfile"
  build_from_dir "$tag" "$dir"
  rm -rf "$dir"
}

# KFP_GO_STAGES=kfp|argo|all (default all): which Go images (the two builds can run apart).
build_go_images() {
  local stages=${KFP_GO_STAGES:-all}
  "$HERE/build-go.sh" "$stages"
  bash "$HERE/../build-base-image.sh" "$KFP_BASE_IMAGE"
  [[ $stages == argo ]] || kfp_go_images
  [[ $stages == kfp ]] || argo_go_images
}

kfp_go_images() {
  local v=$KFP_VERSION
  # Entrypoints and commands as in the upstream Dockerfiles (backend/Dockerfile*), which the
  # manifests rely on; the API server runs without --sampleconfig, so it loads no samples.
  mkdir -p "$KFP_CACHE/apiserver-config-$v"
  cp -r "$(kfp_src)/backend/src/apiserver/config/." "$KFP_CACHE/apiserver-config-$v/"
  local tag dir
  tag=$(image api-server "$v")
  if wanted "$tag"; then
    dir=$(mktemp -d)
    cp "$BIN/apiserver" "$dir/" && cp -r "$KFP_CACHE/apiserver-config-$v" "$dir/config"
    cat >"$dir/Dockerfile" <<EOF
FROM $KFP_BASE_IMAGE
COPY apiserver /bin/apiserver
COPY config /config
ENV LOG_LEVEL=info
EXPOSE 8888
CMD ["/bin/sh", "-c", "/bin/apiserver --config=/config -logtostderr=true --logLevel=\${LOG_LEVEL}"]
EOF
    build_from_dir "$tag" "$dir" && rm -rf "$dir"
  fi
  go_image "$(image persistence-agent "$v")" persistence_agent -- \
    'ENV NAMESPACE="" TTL_SECONDS_AFTER_WORKFLOW_FINISH=86400 NUM_WORKERS=2 LOG_LEVEL=info EXECUTIONTYPE=Workflow' \
    'CMD ["/bin/sh", "-c", "persistence_agent --logtostderr=true --namespace=${NAMESPACE} --ttlSecondsAfterWorkflowFinish=${TTL_SECONDS_AFTER_WORKFLOW_FINISH} --numWorker ${NUM_WORKERS} --executionType ${EXECUTIONTYPE} --logLevel=${LOG_LEVEL}"]'
  go_image "$(image scheduled-workflow-controller "$v")" controller -- \
    'ENV NAMESPACE="" LOG_LEVEL=info' \
    'CMD ["/bin/sh", "-c", "/bin/controller --logtostderr=true --namespace=${NAMESPACE} --logLevel=${LOG_LEVEL} --clientQPS=${CLIENT_QPS:-5} --clientBurst=${CLIENT_BURST:-10} --recurringRunResyncIntervalSeconds=${RESYNC_INTERVAL_SECONDS:-30} --metricsPort=${METRICS_PORT:-9090} --userIdentityHeader=\"${USER_IDENTITY_HEADER:-}\" --userIdentityValue=\"${USER_IDENTITY_VALUE:-}\""]'
  go_image "$(image cache-server "$v")" cache_server -- 'ENTRYPOINT ["/bin/cache_server"]'
  go_image "$(image driver "$v")" driver -- 'USER 65532' 'ENTRYPOINT ["/bin/driver"]'
  go_image "$(image launcher "$v")" launcher-v2 -- 'USER 65532' 'ENTRYPOINT ["/bin/launcher-v2"]'
}

argo_go_images() {
  # Argo's manifests run `workflow-controller` by name and the executor as its entrypoint.
  go_image "$(image workflow-controller "$ARGO_WORKFLOWS_VERSION")" workflow-controller -- \
    'USER 8737' 'ENTRYPOINT ["/bin/workflow-controller"]'
  go_image "$(image argoexec "$ARGO_WORKFLOWS_VERSION")" argoexec -- 'USER 8737' 'ENTRYPOINT ["/bin/argoexec"]'
}

# MariaDB from Debian, on its own debootstrap'd rootfs. KFP's Deployment passes MySQL 8.4 flags
# (--authentication-policy, --mysql-native-password; MariaDB's native password plugin is its
# default) that mariadbd refuses, and --disable-log-bin, which MariaDB spells --skip-log-bin: the
# entrypoint maps them. It creates the datadir on first start and lets root in from the pods
# without a password, as MYSQL_ALLOW_EMPTY_PASSWORD does for the mysql image.
build_db_image() {
  local tag root
  tag=$(image mariadb "$(db_version)")
  wanted "$tag" || return 0
  root=$(mktemp -d /tmp/kfp-mariadb.XXXXXX)
  $NICE debootstrap --variant=minbase --include=mariadb-server,ca-certificates "$SUITE" "$root" "$MIRROR" \
    >"$root.log" 2>&1 || { tail -n 30 "$root.log" >&2; exit 1; }
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
    "$root"/var/lib/mysql/* "$root.log"
  install -m 0755 "$HERE/mariadb-entrypoint.sh" "$root/usr/local/bin/mariadb-entrypoint"
  tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
    --change 'USER 999' \
    --change 'ENTRYPOINT ["/usr/local/bin/mariadb-entrypoint"]' - "$tag" >/dev/null
  rm -rf "$root"
  log "image $tag"
}
# The MariaDB version Debian ships for $SUITE (10.11 on bookworm), so the tag says what it is.
db_version() { echo "${MARIADB_VERSION:-10.11-$SUITE}"; }

# The MLMD server: the PyPI wheel's store behind hack/kfp/mlmd/metadata_store_server.py.
build_mlmd_image() {
  local tag dir wheels=$KFP_CACHE/wheels-ml-metadata-$ML_METADATA_VERSION
  tag=$(image metadata-server "$ML_METADATA_VERSION")
  wanted "$tag" || return 0
  bash "$HERE/../build-base-image.sh" "$KFP_BASE_IMAGE"
  if [[ ! -f $wheels/.complete ]]; then
    python3 -m pip download --quiet --only-binary=:all: --python-version 3.11 --platform manylinux2014_x86_64 \
      -d "$wheels" "ml-metadata==$ML_METADATA_VERSION"
    touch "$wheels/.complete"
  fi
  dir=$(mktemp -d)
  cp -r "$wheels" "$dir/wheels" && cp "$HERE/mlmd/metadata_store_server.py" "$HERE/mlmd/grpc_web_proxy.py" "$dir/"
  cat >"$dir/Dockerfile" <<EOF
FROM $KFP_BASE_IMAGE
COPY wheels /tmp/wheels
RUN python3 -m venv /opt/mlmd && /opt/mlmd/bin/pip install --no-cache-dir --no-index \
      --find-links /tmp/wheels ml-metadata==$ML_METADATA_VERSION && rm -rf /tmp/wheels
COPY metadata_store_server.py grpc_web_proxy.py /opt/mlmd/
RUN for cmd in metadata_store_server:metadata_store_server metadata_grpc_web:grpc_web_proxy; do \
      printf '#!/bin/sh\nexec /opt/mlmd/bin/python /opt/mlmd/%s.py "\$@"\n' "\${cmd#*:}" >"/bin/\${cmd%%:*}"; \
      chmod +x "/bin/\${cmd%%:*}"; done
USER 65534
ENTRYPOINT ["/bin/metadata_store_server"]
EOF
  build_from_dir "$tag" "$dir" && rm -rf "$dir"
}

# sh, nc and wget for the manifests' wait-for-port init containers (alpine upstream), from Debian.
build_tools_image() {
  local tag dir
  tag=$(image tools "$SUITE")
  wanted "$tag" || return 0
  bash "$HERE/../build-base-image.sh" "$KFP_BASE_IMAGE"
  dir=$(mktemp -d)
  cat >"$dir/Dockerfile" <<EOF
FROM $KFP_BASE_IMAGE
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends netcat-openbsd wget \\
 && rm -rf /var/lib/apt/lists/*
EOF
  $NICE docker build -q --network host -t "$tag" "$dir" >/dev/null
  rm -rf "$dir"
  log "image $tag"
}

# The UI: the client bundle and the Node server from build-ui.sh, run by the node that built them
# (no node image can be pulled; Debian bookworm's nodejs is 18, older than the UI's build needs).
build_ui_image() {
  local tag dir ui=$KFP_CACHE/frontend-$KFP_VERSION/frontend
  tag=$(image frontend "$KFP_VERSION")
  wanted "$tag" || return 0
  "$HERE/build-ui.sh"
  bash "$HERE/../build-base-image.sh" "$KFP_BASE_IMAGE"
  dir=$(mktemp -d)
  mkdir -p "$dir/server/src/third_party/mlmd"
  cp "$(command -v node)" "$dir/node"
  cp -r "$ui/build" "$dir/client"
  cp -r "$ui/server/dist" "$ui/server/node_modules" "$ui/server/package.json" "$dir/server/"
  cp -r "$ui/src/third_party/mlmd/generated" "$dir/server/src/third_party/mlmd/"
  printf '{"type":"commonjs"}\n' >"$dir/server/src/third_party/mlmd/generated/package.json"
  cat >"$dir/Dockerfile" <<EOF
FROM $KFP_BASE_IMAGE
COPY node /usr/local/bin/node
COPY server /server
COPY client /client
WORKDIR /server
ENV API_SERVER_ADDRESS=http://localhost:3001
EXPOSE 3000
CMD ["node", "dist/server.js", "../client/", "3000"]
EOF
  build_from_dir "$tag" "$dir" && rm -rf "$dir"
}

list_images() {
  image api-server "$KFP_VERSION"
  image persistence-agent "$KFP_VERSION"
  image scheduled-workflow-controller "$KFP_VERSION"
  image cache-server "$KFP_VERSION"
  image driver "$KFP_VERSION"
  image launcher "$KFP_VERSION"
  image workflow-controller "$ARGO_WORKFLOWS_VERSION"
  image argoexec "$ARGO_WORKFLOWS_VERSION"
  image mariadb "$(db_version)"
  image tools "$SUITE"
  image metadata-server "$ML_METADATA_VERSION"
  image frontend "$KFP_VERSION"
}

case ${1:-all} in
  all)
    stage "images: go" build_go_images
    stage "images: db" build_db_image
    stage "images: mlmd" build_mlmd_image
    stage "images: tools" build_tools_image
    stage "images: ui" build_ui_image
    ;;
  tools) stage "images: tools" build_tools_image ;;
  go) stage "images: go" build_go_images ;;
  db) stage "images: db" build_db_image ;;
  mlmd) stage "images: mlmd" build_mlmd_image ;;
  ui) stage "images: ui" build_ui_image ;;
  list) list_images; exit 0 ;;
  *) echo "usage: $0 [all|go|db|mlmd|tools|ui|list]" >&2; exit 2 ;;
esac
print_stage_times
