#!/usr/bin/env bash
# Build SeaweedFS, the in-cluster S3 store (KFP's object store since 2.15, and the model store),
# from its Go module (SEAWEEDFS_GO_MODULE), for machines that cannot pull
# ghcr.io/chrislusf/seaweedfs:<SEAWEEDFS_IMAGE_TAG>. The image matches what KFP's manifests expect
# of the upstream one: `weed` at /usr/bin/weed as the entry point, and /bin/sh + wget for the
# Deployment's postStart hook and probes (busybox, from Debian's busybox-static). Built in a copy
# of the module: its go.mod has replace directives, which `go install` refuses.
# Prints SEAWEEDFS_IMAGE=<tag>. Reused by hack/kfp/ (the KFP install needs the same image).
# Usage: hack/images/seaweedfs.sh
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
LOG_PREFIX=seaweedfs
lock_step seaweedfs
version=$(version_of SEAWEEDFS_GO_MODULE)
tag="mlops-platform/seaweedfs:${version##*-}"
start=$SECONDS
if have_image "$tag"; then
  stage_done seaweedfs "$start" cached
else
  must_build "SeaweedFS $tag"
  bin="$CACHE/seaweedfs/$version"
  if [[ ! -x $bin/weed ]]; then
    src="$CACHE/upstream/seaweedfs-$version"
    go_module_copy "github.com/seaweedfs/seaweedfs@$version" "$src"
    log "go build ./weed (several minutes on 2 cores)"
    (cd "$src" && CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false -mod=mod" nice -n 10 go build \
      -ldflags '-s -w' -o "$bin/weed.tmp" ./weed)
    mv "$bin/weed.tmp" "$bin/weed"
  fi
  if [[ ! -x /bin/busybox ]]; then
    log "installing busybox-static from Debian (the image's shell and wget)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static >/dev/null
  fi
  dir=$(mktemp -d /tmp/seaweedfs-img.XXXXXX)
  install -D -m 0755 "$bin/weed" "$dir/usr/bin/weed"
  install -D -m 0755 /bin/busybox "$dir/bin/busybox"
  for applet in sh wget cat echo grep test sleep seq touch ls mkdir rm; do ln -s busybox "$dir/bin/$applet"; done
  static_image "$tag" "$dir" --change 'ENV PATH=/usr/bin:/bin' --change 'ENTRYPOINT ["/usr/bin/weed"]'
  rm -rf "$dir"
  stage_done seaweedfs "$start"
fi
echo "SEAWEEDFS_IMAGE=$tag"
