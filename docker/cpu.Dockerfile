# The harness for CPU-only hosts: `make image`, then `docker run --rm -v "$PWD/results:/results" IMAGE`.
#
# Pin the base by digest for bit-for-bit rebuilds:
#   --build-arg BASE_DIGEST=@sha256:<digest of python:3.12.8-slim-bookworm on your registry>
# Prepare TFDS data sets inside the image so it runs offline: --build-arg DATASETS=mnist,cifar10
ARG BASE_IMAGE=python:3.12.8-slim-bookworm
ARG BASE_DIGEST=
FROM ${BASE_IMAGE}${BASE_DIGEST}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    TFDS_DATA_DIR=/opt/tfds

# Every Python package comes from the lock, by version and hash (`make locks` regenerates it).
COPY docker/requirements-cpu.lock /tmp/requirements.lock
RUN python -m venv /opt/venv \
    && pip install --require-hashes --no-deps -r /tmp/requirements.lock \
    && rm /tmp/requirements.lock

# A failed `tfds build` inside the loop must fail the build.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG DATASETS=
RUN mkdir -p /opt/tfds \
    && for name in $(echo "${DATASETS}" | tr ',' ' '); do tfds build "${name}" --data_dir=/opt/tfds || exit 1; done

# The harness runs from its source tree, so records name the exact files baked into the image.
WORKDIR /opt/harness
COPY harness ./harness
COPY benchmarks ./benchmarks
COPY docker/entrypoint.sh /usr/local/bin/harness-entrypoint
ENV PYTHONPATH=/opt/harness

RUN useradd --create-home --uid 1000 harness && mkdir -p /results && chown harness /results
USER 1000
WORKDIR /results
ENTRYPOINT ["harness-entrypoint"]
CMD ["--output_dir=/results/mnist1d_mlp"]
