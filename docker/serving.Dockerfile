# The model server's image: runs `mlops serve` on port 8080 over the model folder that KServe's
# storage initializer fills (/mnt/models). Build: make images.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
# Same steps as docker/components.Dockerfile's build stage, so Docker shares the cached layers.
COPY build/requirements-image.txt requirements.lock /tmp/req/
COPY build/wheelhouse /tmp/wheelhouse
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /tmp/wheelhouse \
      -r /tmp/req/requirements-image.txt -c /tmp/req/requirements.lock
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
EXPOSE 8080
ENTRYPOINT ["mlops"]
CMD ["serve", "--model-dir", "/mnt/models", "--model", "churn", "--host", "0.0.0.0"]
