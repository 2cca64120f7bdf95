# The harness for NVIDIA GPU hosts: `make bench GPU=1`, or
#   docker run --rm --gpus all -v "$PWD/results:/results" IMAGE --benchmark=cifar10_cnn ...
#
# TensorFlow 2.21's GPU build reports CUDA 12.5.1 and cuDNN 9 in tf.sysconfig.get_build_info(),
# so the base is CUDA 12.5.1; the CUDA and cuDNN libraries TF loads come from the exact
# nvidia-* wheels in the lock (tensorflow[and-cuda]). The host needs an NVIDIA driver for
# CUDA 12.5 (>= 555) and the NVIDIA Container Toolkit.
#
# Pin the base by digest for bit-for-bit rebuilds:
#   --build-arg BASE_DIGEST=@sha256:<digest of nvidia/cuda:12.5.1-base-ubuntu24.04 on your registry>
# Prepare TFDS data sets inside the image so it runs offline: --build-arg DATASETS=mnist,cifar10
ARG BASE_IMAGE=nvidia/cuda:12.5.1-base-ubuntu24.04
ARG BASE_DIGEST=
FROM ${BASE_IMAGE}${BASE_DIGEST}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    TFDS_DATA_DIR=/opt/tfds

# Ubuntu 24.04's Python 3.12 (the lock is resolved for it). Its exact build follows the base
# image, which BASE_DIGEST pins; every Python package is pinned by the lock below.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

# Every Python package comes from the lock, by version and hash (`make locks` regenerates it).
COPY docker/requirements-gpu.lock /tmp/requirements.lock
RUN python3 -m venv /opt/venv \
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

# Ubuntu 24.04 images already have user 1000 (ubuntu); the harness gets its own.
RUN useradd --create-home --uid 1001 harness && mkdir -p /results && chown harness /results
USER 1001
WORKDIR /results
ENTRYPOINT ["harness-entrypoint"]
CMD ["--output_dir=/results/mnist1d_mlp"]
