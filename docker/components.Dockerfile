# The pipeline components' image: the project and its pinned dependencies in a venv; KFP runs each
# lightweight component in it (base_image, install_kfp_package=False).
# Build: make images (hack/wheelhouse.sh first prepares build/; no network needed here).
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
# The dependencies' layer only changes with requirements.lock, so code changes rebuild in seconds.
COPY build/requirements-image.txt requirements.lock /tmp/req/
COPY build/wheelhouse /tmp/wheelhouse
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /tmp/wheelhouse \
      -r /tmp/req/requirements-image.txt -c /tmp/req/requirements.lock
# Feast (the features extra), here only: this image runs the feature server and the feature
# store's pipeline steps. A layer of its own after the one shared with the serving image.
COPY build/requirements-features.txt /tmp/req/
RUN /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /tmp/wheelhouse \
      -r /tmp/req/requirements-features.txt -c /tmp/req/requirements.lock
COPY build/project /tmp/project
RUN /opt/venv/bin/pip install --no-cache-dir --no-index --no-deps /tmp/project/*.whl \
 && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} + \
 && find /opt/venv/lib/python3.11/site-packages -type d -name tests -prune -exec rm -rf {} + \
 && rm -rf /opt/venv/lib/python3.11/site-packages/pyarrow/include \
 && rm -rf /opt/venv/lib/python3.11/site-packages/pip /opt/venv/bin/pip*

FROM ${BASE_IMAGE}
COPY --from=build /opt/venv /opt/venv
RUN useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin mlops
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/mlops
WORKDIR /home/mlops
USER 10001:10001
CMD ["mlops", "--help"]
