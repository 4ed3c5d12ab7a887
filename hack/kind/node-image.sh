#!/usr/bin/env bash
# Build a kind node image locally, for machines that reach no container registry (a laptop uses
# the pinned kindest/node release image instead: KIND_NODE_IMAGE in versions.mk). What
# `kind build node-image` would pull is made from Debian packages and Go modules:
#   base    debootstrap'd bookworm (containerd, runc, CNI plugins from Debian) + kind's base files
#           from the sigs.k8s.io/kind module zip (entrypoint, containerd config, systemd units), with
#           the systemd clean-up of kind's base Dockerfile and containerd's CRI
#           `restrict_oom_score_adj = true` (the kubelet's oom_score_adj -998 needs CAP_SYS_RESOURCE)
#   images  the images kubeadm asks for, each a static binary built from its Go module:
#           kube-apiserver, -controller-manager, -scheduler, kube-proxy (on the base: iptables),
#           etcd, coredns, pause
#   node    the base + kubelet/kubeadm/kubectl + those images imported into the node's containerd
# Each stage is cached (a Docker image tagged by its inputs). Prints the node image's tag.
# Usage: hack/kind/node-image.sh
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
LOG_PREFIX=node-image
total=$SECONDS

kind_version=$(version_of KIND_VERSION)
kube_version=$(version_of KUBERNETES_VERSION)
etcd_version=$(version_of ETCD_VERSION)
coredns_version=$(version_of COREDNS_VERSION)
suite=${DEBIAN_SUITE:-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Inputs that change the result key the tags, so an edit to this script rebuilds the node. The
# base (minutes of debootstrap) is keyed by BASE_REVISION: bump it when the base stage changes.
BASE_REVISION=1
key=$(cat "$0" "$ROOT/hack/kind/pause/main.go" | sha256sum | cut -c1-10)
base_tag="mlops-platform/kind-base:${kind_version}-${suite}-r${BASE_REVISION}"
node_tag="mlops-platform/kind-node:${kube_version}-${key}"

if have_image "$node_tag"; then
  log "$node_tag is cached"
  echo "$node_tag"
  exit 0
fi
must_build "node image $node_tag"
exec 9>"$CACHE/logs/.node-image.lock"
flock 9

# --- base ----------------------------------------------------------------------------------------
start=$SECONDS
if have_image "$base_tag"; then
  stage_done node-base "$start" cached
else
  kind_dir=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/kind@$kind_version" | jq -r .Dir)
  files="$kind_dir/images/base/files"
  [[ -d $files ]] || { log "no images/base/files in sigs.k8s.io/kind@$kind_version"; exit 1; }
  rootfs=$(mktemp -d /tmp/kind-base.XXXXXX)
  trap 'rm -rf "$rootfs" "$rootfs.log"' EXIT
  log "debootstrap $suite (a few minutes)"
  debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,conntrack,iptables,nftables,iproute2,ethtool,socat,util-linux,mount,kmod,ca-certificates,curl,jq,procps,pigz,containerd,runc,containernetworking-plugins \
    "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || { tail -n 30 "$rootfs.log" >&2; exit 1; }
  # kind's base image Dockerfile (images/base/Dockerfile) COPYs these with the same modes.
  install -d -m 0755 "$rootfs/kind/bin" "$rootfs/LICENSES" "$rootfs/etc/kubernetes/manifests"
  install -m 0755 "$files"/usr/local/bin/* "$rootfs/usr/local/bin/"
  install -m 0644 "$files"/kind/README.txt "$rootfs/kind/"
  install -m 0755 "$files"/kind/bin/* "$rootfs/kind/bin/"
  cp -r "$files"/etc/. "$rootfs/etc/"
  find "$rootfs/etc/systemd/system" "$rootfs/etc/containerd" "$rootfs/etc/default" "$rootfs/etc/sysctl.d" \
    -type f -exec chmod 0644 {} +
  # Debian puts containerd/runc in /usr/bin and the CNI plugins in /usr/lib/cni; kind's units and
  # CNI config expect /usr/local/bin and /opt/cni/bin.
  ln -sf /usr/bin/containerd "$rootfs/usr/local/bin/containerd"
  mkdir -p "$rootfs/opt/cni" && rm -rf "$rootfs/opt/cni/bin" && ln -s /usr/lib/cni "$rootfs/opt/cni/bin"
  # This machine's quirk (see hack/ensure-docker.sh): no CAP_SYS_RESOURCE, so containerd must not
  # try to set the oom_score_adj the kubelet asks for below its own.
  sed -i 's/^\(\s*restrict_oom_score_adj\s*=\s*\).*/\1true/' "$rootfs/etc/containerd/config.toml"
  grep -q 'restrict_oom_score_adj = true' "$rootfs/etc/containerd/config.toml"
  # The systemd clean-up of kind's base Dockerfile.
  find "$rootfs/lib/systemd/system/sysinit.target.wants/" -name systemd-tmpfiles-setup.service -delete
  rm -f "$rootfs"/lib/systemd/system/multi-user.target.wants/* "$rootfs"/etc/systemd/system/*.wants/* \
    "$rootfs"/lib/systemd/system/local-fs.target.wants/* "$rootfs"/lib/systemd/system/sockets.target.wants/*udev* \
    "$rootfs"/lib/systemd/system/sockets.target.wants/*initctl* "$rootfs"/lib/systemd/system/basic.target.wants/*
  echo "ReadKMsg=no" >>"$rootfs/etc/systemd/journald.conf"
  ln -sf /usr/lib/systemd/systemd "$rootfs/sbin/init"
  for unit in kubelet.service containerd.service undo-mount-hacks.service; do
    mkdir -p "$rootfs/etc/systemd/system/multi-user.target.wants"
    ln -sf "/etc/systemd/system/$unit" "$rootfs/etc/systemd/system/multi-user.target.wants/$unit"
  done
  ln -sf /dev/null "$rootfs/etc/systemd/system/systemd-binfmt.service"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
  tar -C "$rootfs" -c . | docker import \
    --change 'ENV container=docker' \
    --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' - "$base_tag" >/dev/null
  rm -rf "$rootfs" "$rootfs.log"
  trap - EXIT
  stage_done node-base "$start"
fi

# --- binaries ------------------------------------------------------------------------------------
start=$SECONDS
assets=$(bash "$ROOT/hack/kube-apiserver/build.sh" --node)
bin="$CACHE/kind-images/bin-${kube_version}-${key}"
mkdir -p "$bin"
export CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false"
[[ -x $bin/pause ]] || (cd "$ROOT/hack/kind/pause" && nice -n 10 go build -ldflags '-s -w' -o "$bin/pause" .)
if [[ ! -x $CACHE/coredns/$coredns_version/coredns ]]; then
  log "building coredns $coredns_version"
  GOBIN="$CACHE/coredns/$coredns_version" nice -n 10 go install -ldflags '-s -w' "github.com/coredns/coredns@$coredns_version"
fi
stage_done node-binaries "$start"

# --- images kubeadm asks for ---------------------------------------------------------------------
start=$SECONDS
images_dir="$CACHE/kind-images/${kube_version}-${key}"
mkdir -p "$images_dir"
# The names come from kubeadm itself, so they match what `kubeadm init` will look for.
mapfile -t wanted < <("$assets/kubeadm" config images list --kubernetes-version "$kube_version" 2>/dev/null)
log "kubeadm $kube_version wants: ${wanted[*]}"
# containerd's sandbox image (kind's config.toml) may differ from kubeadm's pause tag.
sandbox=$(docker run --rm --entrypoint cat "$base_tag" /etc/containerd/config.toml |
  sed -nE 's/^\s*sandbox_image\s*=\s*"([^"]+)".*/\1/p')
wanted+=("$sandbox")
one_image() { # one_image NAME:TAG -> $images_dir/<file>.tar
  local ref=$1 name file dir
  name=${ref##*/}
  name=${name%%:*}
  file="$images_dir/${ref//[\/:]/_}.tar"
  [[ -s $file ]] && return 0
  dir=$(mktemp -d /tmp/kind-img.XXXXXX)
  case $name in
    kube-apiserver | kube-controller-manager | kube-scheduler)
      install -D -m 0755 "$assets/$name" "$dir/usr/local/bin/$name"
      static_image "$ref" "$dir" --change "ENTRYPOINT [\"/usr/local/bin/$name\"]" ;;
    etcd)
      # kubeadm names etcd by its own default tag; the binary is ETCD_VERSION (>= that, same minor).
      install -D -m 0755 "$assets/etcd" "$dir/usr/local/bin/etcd"
      static_image "$ref" "$dir" --change 'ENTRYPOINT ["/usr/local/bin/etcd"]' ;;
    coredns)
      install -D -m 0755 "$CACHE/coredns/$coredns_version/coredns" "$dir/coredns"
      static_image "$ref" "$dir" --change 'ENTRYPOINT ["/coredns"]' ;;
    pause)
      install -D -m 0755 "$bin/pause" "$dir/pause"
      static_image "$ref" "$dir" --change 'ENTRYPOINT ["/pause"]' ;;
    kube-proxy)
      # kube-proxy programs iptables/nftables: build on the base (it has both).
      local cid
      cid=$(docker create "$base_tag")
      docker cp "$assets/kube-proxy" "$cid:/usr/local/bin/kube-proxy"
      docker export "$cid" | docker import --change 'ENTRYPOINT ["/usr/local/bin/kube-proxy"]' - "$ref" >/dev/null
      docker rm "$cid" >/dev/null ;;
    *) log "no local build for image $ref"; rm -rf "$dir"; return 1 ;;
  esac
  rm -rf "$dir"
  docker save -o "$file.tmp" "$ref" && mv "$file.tmp" "$file"
}
for ref in "${wanted[@]}"; do one_image "$ref"; done
stage_done node-images "$start"

# --- node ----------------------------------------------------------------------------------------
start=$SECONDS
cid=$(docker run -d --privileged --entrypoint sleep "$base_tag" infinity)
trap 'docker rm -f "$cid" >/dev/null 2>&1 || true' EXIT
for b in kubelet kubeadm kubectl; do docker cp "$assets/$b" "$cid:/usr/bin/$b"; done
docker exec "$cid" mkdir -p /kind/images /kind/manifests
docker cp "$images_dir/." "$cid:/kind/images/"
printf '%s' "$kube_version" | docker exec -i "$cid" sh -c 'cat >/kind/version'
# No kindnetd image here: kind-config.yaml's test overlay disables the default CNI and this
# bridge + host-local config serves the single node's pods.
docker exec -i "$cid" sh -c 'mkdir -p /etc/cni/net.d && cat >/etc/cni/net.d/10-bridge.conflist' <<'CNI'
{"cniVersion": "1.0.0", "name": "kind-bridge", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/16"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
CNI
# No local-path-provisioner image here either: the default StorageClass has no provisioner and
# hostPath PersistentVolumes are pre-made (kind applies this file when it creates the cluster).
docker exec -i "$cid" sh -c 'cat >/kind/manifests/default-storage.yaml' <<'STORAGE'
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
STORAGE
for i in 1 2 3 4; do
  docker exec -i "$cid" sh -c 'cat >>/kind/manifests/default-storage.yaml' <<PV
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: kind-hostpath-$i
spec:
  storageClassName: standard
  capacity: {storage: 50Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: /var/local-pv/$i, type: Directory}
PV
done
# hostPath volumes get no fsGroup ownership: let any pod user write (SeaweedFS runs as uid 1000).
docker exec "$cid" sh -c 'mkdir -p /var/local-pv/1 /var/local-pv/2 /var/local-pv/3 /var/local-pv/4 && chmod 1777 /var/local-pv/*'

# containerd's base OCI spec, as kind's base Dockerfile makes it.
docker exec "$cid" sh -c 'ctr oci spec | jq ".hooks.createContainer[.hooks.createContainer|length] |= . + {\"path\": \"/kind/bin/mount-product-files.sh\"}" | jq "del(.process.rlimits)" >/etc/containerd/cri-base.json'
# Import the images into the node's containerd, as `kind build node-image` does.
docker exec "$cid" sh -c '
  (containerd >/tmp/containerd.log 2>&1 &)
  for _ in $(seq 1 30); do ctr version >/dev/null 2>&1 && break; sleep 1; done
  for f in /kind/images/*.tar; do ctr -n k8s.io images import --no-unpack --all-platforms "$f" >/dev/null; done
  ctr -n k8s.io images ls -q >&2
  pkill containerd; sleep 2; rm -rf /kind/images /tmp/containerd.log'
docker commit \
  --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' --change 'CMD []' \
  --change 'ENV container=docker' "$cid" "$node_tag" >/dev/null
stage_done node-assemble "$start"
log "built $node_tag in $((SECONDS - total)) s"
echo "$node_tag"
