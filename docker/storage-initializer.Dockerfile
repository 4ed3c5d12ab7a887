# KServe's storage initializer for machines that cannot pull kserve/storage-initializer: PyPI's
# kserve-storage (KSERVE_STORAGE_VERSION) on the project's base image. KServe's webhook runs it as
# the model pod's init container with arguments `<storage URI> <mount path>`, in pairs.
# Build: hack/images/storage-initializer.sh (prepares the wheels; the build needs no network).
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
COPY wheels /tmp/wheels
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /tmp/wheels kserve-storage \
 && rm -rf /tmp/wheels /opt/venv/bin/pip* \
 && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} +
COPY initializer-entrypoint.py /usr/local/bin/initializer-entrypoint
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
USER 1000:1000
ENTRYPOINT ["/opt/venv/bin/python", "/usr/local/bin/initializer-entrypoint"]
