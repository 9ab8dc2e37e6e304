# syntax=docker/dockerfile:1
#
# qparity + TensorRT (GPU).
#
#   docker build -f docker/tensorrt.Dockerfile -t qparity/tensorrt:0.1.0 .   # from the repo root
#   (or: docker compose --profile nvidia build)
#
# Base: NVIDIA's TensorRT container, release 25.01 (tag pinned below). Per NVIDIA's release
# notes and compatibility matrix for the 25.01 container release it holds:
#   TensorRT 10.8.0.43, CUDA 12.8.0 (12.8.0.038), Ubuntu 24.04, Python 3.12.3;
#   it supports GPUs of compute capability 7.5 and later (Turing and newer) and needs a host
#   driver that supports CUDA 12.8 (see NVIDIA's notes for the data-center compatibility
#   branches).
# The TensorRT version is checked while building (TRT_VERSION below, which must equal the
# `tensorrt` pin in docker/constraints.txt), so a retagged base cannot change it silently.
# Note: unlike the slim CPU images, this base is NVIDIA's development image and ships its own
# compilers and TensorRT samples; this Dockerfile adds no build tools to it.

ARG TRT_IMAGE=nvcr.io/nvidia/tensorrt:25.01-py3
ARG TRT_VERSION=10.8.0.43

# ---------------------------------------------------------------------------------------------
FROM ${TRT_IMAGE} AS build
ARG TRT_VERSION

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH
# A virtual environment that also sees the system site-packages, where the base image keeps its
# TensorRT Python bindings: pip then treats tensorrt==TRT_VERSION as installed and does not
# fetch another copy. The venv has no pip of its own; the base image's pip runs inside it (and
# installs into it: the system Python stays untouched, as PEP 668 asks).
RUN python3 -m venv --system-site-packages --without-pip /opt/venv \
    && python -m pip --version
WORKDIR /src

# Layer 1, dependencies only (from pyproject.toml via a placeholder package; see
# cpu.Dockerfile): a change to harness/ does not reinstall them.
# The base image's TensorRT is checked before anything is installed: its version must be
# TRT_VERSION and its CUDA major 12 (tensorrt-cu12 is what the `tensorrt` extra pins outside
# the image); a mismatch stops the build with a message saying which. After the install, no
# pip-installed TensorRT may shadow it (the extra installed here names none; this keeps it so).
COPY docker/constraints.txt docker/constraints.txt
COPY pyproject.toml README.md ./
RUN python -c "import os, sys, tensorrt; v = tensorrt.__version__; c = os.environ.get('CUDA_VERSION', '?'); sys.exit(0 if v == sys.argv[1] and c.startswith('12.') else 'base image: TensorRT ' + v + ' for CUDA ' + c + ', expected TensorRT ' + sys.argv[1] + ' for CUDA 12')" "${TRT_VERSION}" \
    && mkdir harness && touch harness/__init__.py \
    && python -m pip install --no-cache-dir -c docker/constraints.txt ".[tensorrt-container]" \
    && python -m pip uninstall --yes qparity \
    && rm -rf harness build ./*.egg-info \
    && python -c "import glob, sys, importlib.metadata as m; found = sorted(d.metadata['Name'] for d in m.distributions(path=glob.glob('/opt/venv/lib/python3*/site-packages')) if d.metadata['Name'].lower().startswith('tensorrt')); sys.exit('TensorRT from PyPI in the venv (' + ', '.join(found) + ') would shadow the base image TensorRT' if found else 0)"

# Layer 2, the package itself.
COPY harness/ harness/
RUN python -m pip install --no-cache-dir --no-deps . \
    && qparity --help > /dev/null \
    && python -c "import sys, tensorrt; v = tensorrt.__version__; sys.exit(0 if v == sys.argv[1] else 'TensorRT ' + v + ' in the image, expected ' + sys.argv[1])" "${TRT_VERSION}"

# ---------------------------------------------------------------------------------------------
FROM ${TRT_IMAGE}

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="qparity-tensorrt" \
      org.opencontainers.image.description="qparity INT8 QDQ parity harness: TensorRT GPU engine" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="nvcr.io/nvidia/tensorrt:25.01-py3"

# An unprivileged user (uid 10001: Ubuntu 24.04 images already use 1000 for `ubuntu`).
# /cache holds built TensorRT engines; compose mounts a named volume there, which starts as a
# copy of this directory, so it is world-writable (sticky, like /tmp) for whatever uid runs.
RUN groupadd --gid 10001 qparity \
    && useradd --uid 10001 --gid qparity --no-log-init --create-home --shell /usr/sbin/nologin qparity \
    && install -d -m 1777 /cache

COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    QPARITY_MODEL_DIR=/models \
    QPARITY_DATA_DIR=/data \
    QPARITY_RESULTS_DIR=/results

USER 10001:10001
WORKDIR /home/qparity
# A one-shot batch job: nothing to probe while it runs.
HEALTHCHECK NONE
ENTRYPOINT ["qparity"]
CMD ["--help"]
