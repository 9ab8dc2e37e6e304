# qparity for the CPU engines: one Dockerfile, one image per engine through build arguments.
#
#   docker build -f docker/cpu.Dockerfile -t qparity/ort-cpu:0.1.0 .          # from the repo root
#   docker build -f docker/cpu.Dockerfile --build-arg IMAGE=openvino --build-arg EXTRAS=openvino \
#                -t qparity/openvino:0.1.0 .
#   (or: docker compose --profile intel build, which passes both per service)
#
#   EXTRAS  the qparity extras installed on top of the core (`pip install ".[EXTRAS]"`, comma-
#           separated). Empty (the default): the core only, i.e. ONNX Runtime, the golden engine
#           and its reference, and the collector. `openvino`: OpenVINO's PyPI wheel as well (it
#           bundles the CPU plugin and TBB, so no Intel runtime image is needed).
#   IMAGE   the image's name in its title label (qparity-${IMAGE}).
#
# Base: Debian 12 slim with CPython 3.12 (or the local Debian base, below). Every Python
# dependency is a manylinux wheel pinned in docker/constraints.txt, so neither stage needs a
# compiler; the final stage gets only the virtual environment, no pip cache, no source tree,
# no build backend.

# The base comes through a build argument: the registry image by default; where no registry is
# reachable, a Debian base made by docker/build-base.sh (Debian's python3, 3.11 on bookworm):
#   docker build --build-arg PYTHON_IMAGE=qparity/base:bookworm ...
# (No `# syntax=` line: BuildKit would pull a frontend image from a registry for it.)
ARG PYTHON_IMAGE=python:3.12.12-slim-bookworm

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src

# Layer 1a, the core dependencies only. They are read from pyproject.toml (not repeated here) by
# installing a placeholder package, then removing it: a change to harness/ does not invalidate
# this (large, slow) layer, only a change to pyproject.toml or the pins does. It comes before
# `ARG EXTRAS` on purpose: the classic builder keys every RUN after an ARG on that ARG's value,
# so here every CPU image shares this layer (one download of the common wheels).
COPY docker/constraints.txt docker/constraints.txt
COPY pyproject.toml README.md ./
RUN mkdir harness && touch harness/__init__.py \
    && pip install --no-cache-dir -c docker/constraints.txt . \
    && pip uninstall --yes qparity \
    && rm -rf harness build ./*.egg-info

# Layer 1b, the image's extras (nothing to do for the core image).
ARG EXTRAS=
RUN if [ -n "${EXTRAS}" ]; then \
        mkdir harness && touch harness/__init__.py \
        && pip install --no-cache-dir -c docker/constraints.txt ".[${EXTRAS}]" \
        && pip uninstall --yes qparity \
        && rm -rf harness build ./*.egg-info; \
    fi

# Layer 2, the package itself (no dependency resolution: layer 1 has them all).
COPY harness/ harness/
RUN pip install --no-cache-dir --no-deps . \
    && pip check \
    && qparity --help > /dev/null

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

# An unprivileged user. compose.yaml may run the container under another uid (QPARITY_UID) so
# that result files belong to whoever runs the benchmark; nothing here depends on this uid.
RUN groupadd --gid 10001 qparity \
    && useradd --uid 10001 --gid qparity --no-log-init --create-home --shell /usr/sbin/nologin qparity

ARG PYTHON_IMAGE
ARG IMAGE=ort-cpu
ARG EXTRAS=
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="qparity-${IMAGE}" \
      org.opencontainers.image.description="qparity INT8 QDQ parity harness, CPU engines: ONNX Runtime (golden engine, reference, collector); extras: '${EXTRAS}'" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

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
