# The feature store's online store: Redis from Debian's own package, on the project's base image
# (Debian bookworm). Feast's Redis online store writes here on materialization and its feature
# server reads here. Build: make images (apt needs the Debian mirror, as the base image did).
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /usr/share/doc/* /usr/share/man/*
# The same non-root user as the project's other images (a numeric id, so Kubernetes can check
# runAsNonRoot); /data holds the append-only file and snapshots (a volume on the cluster).
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin mlops \
 && mkdir -p /data && chown 10001:10001 /data
WORKDIR /data
USER 10001:10001
EXPOSE 6379
# In the foreground, on every address, every write in the append-only file (fsync each second):
# a restart loses at most the last second's writes, and materialization can be rerun.
ENTRYPOINT ["redis-server"]
CMD ["--bind", "0.0.0.0", "--protected-mode", "no", "--dir", "/data", "--appendonly", "yes", "--appendfsync", "everysec"]
