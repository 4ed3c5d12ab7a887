#!/usr/bin/env bash
# Build the Prometheus operator, its config reloader (PROMETHEUS_OPERATOR_VERSION) and a Prometheus
# server with Kubernetes service discovery (PROMETHEUS_GO_MODULE, through hack/prometheus's wrapper
# module) from Go modules, for machines that cannot pull them from quay.io. Prints
# PROMETHEUS_OPERATOR_IMAGE=, PROMETHEUS_CONFIG_RELOADER_IMAGE=, PROMETHEUS_IMAGE= and
# PROMETHEUS_OPERATOR_BUNDLE= (the release bundle.yaml, from the same module).
# Usage: hack/images/prometheus.sh
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
LOG_PREFIX=prometheus
lock_step prometheus
op_version=$(version_of PROMETHEUS_OPERATOR_VERSION)
server_module=$(version_of PROMETHEUS_GO_MODULE)
export CGO_ENABLED=0
start=$SECONDS
src="$CACHE/upstream/prometheus-operator-$op_version"
go_module_copy "github.com/prometheus-operator/prometheus-operator@$op_version" "$src"
for cmd in operator prometheus-config-reloader; do
  name=$cmd
  [[ $cmd == operator ]] && name=prometheus-operator
  tag="mlops-platform/$name:$op_version"
  have_image "$tag" && continue
  must_build "$tag"
  bin="$CACHE/prometheus-operator/$op_version"
  if [[ ! -x $bin/$cmd ]]; then
    log "go build ./cmd/$cmd"
    (cd "$src" && GOFLAGS="-trimpath -buildvcs=false -mod=mod" nice -n 10 go build -ldflags \
      "-s -w -X github.com/prometheus/common/version.Version=${op_version#v}" -o "$bin/$cmd" "./cmd/$cmd")
  fi
  dir=$(mktemp -d /tmp/prom-img.XXXXXX)
  install -D -m 0755 "$bin/$cmd" "$dir/bin/$cmd"
  static_image "$tag" "$dir" --change 'USER 65534:65534' --change "ENTRYPOINT [\"/bin/$cmd\"]"
  rm -rf "$dir"
done
stage_done prometheus-operator "$start"

start=$SECONDS
server_tag="mlops-platform/prometheus:$server_module"
if ! have_image "$server_tag"; then
  must_build "$server_tag"
  out="$CACHE/prometheus/$server_module"
  if [[ ! -x $out/prometheus-kubernetes-sd ]]; then
    log "go build prometheus $server_module with Kubernetes service discovery"
    # remove_all_sd + enable_kubernetes_sd: only the discovery the operator's config uses.
    (cd "$ROOT/hack/prometheus" && GOFLAGS="-trimpath -mod=readonly -buildvcs=false" nice -n 10 go build \
      -tags remove_all_sd,enable_kubernetes_sd \
      -ldflags "-s -w -X github.com/prometheus/common/version.Version=$server_module" \
      -o "$out/prometheus-kubernetes-sd" github.com/prometheus/prometheus/cmd/prometheus)
  fi
  dir=$(mktemp -d /tmp/prom-img.XXXXXX)
  install -D -m 0755 "$out/prometheus-kubernetes-sd" "$dir/bin/prometheus"
  mkdir -p "$dir/prometheus" && chmod 0777 "$dir/prometheus"
  static_image "$server_tag" "$dir" --change 'USER 65534:65534' --change 'WORKDIR /prometheus' \
    --change 'ENTRYPOINT ["/bin/prometheus"]'
  rm -rf "$dir"
fi
stage_done prometheus-server "$start"
echo "PROMETHEUS_OPERATOR_IMAGE=mlops-platform/prometheus-operator:$op_version"
echo "PROMETHEUS_CONFIG_RELOADER_IMAGE=mlops-platform/prometheus-config-reloader:$op_version"
echo "PROMETHEUS_IMAGE=$server_tag"
echo "PROMETHEUS_OPERATOR_BUNDLE=$src/bundle.yaml"
