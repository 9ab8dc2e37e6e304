#!/usr/bin/env bash
# Build qparity's Python base image from Debian packages, for hosts that cannot pull from a
# container registry (the Dockerfiles' default base is python:3.12.12-slim-bookworm from Docker
# Hub). The image is a Debian root file system made by mmdebstrap and loaded with
# `docker import`: nothing is pulled from a registry, only Debian packages are downloaded.
#
#   docker/build-base.sh                              -> qparity/base:bookworm
#   docker/build-base.sh --ca-certs /usr/local/share/ca-certificates
#   docker compose --profile cpu build --build-arg PYTHON_IMAGE=qparity/base:bookworm
#
# Contents: Debian's python3 (3.11 on bookworm) with venv and pip wheels, `python` as a name
# for it (the Dockerfiles run `python -m venv`), ca-certificates; no compiler (every Python
# dependency is a manylinux wheel). dpkg runs with force-unsafe-io inside builds.
#
# Options:
#   --tag TAG         image name                                      (qparity/base:<suite>)
#   --suite SUITE     Debian release; its python3 must satisfy pyproject's requires-python
#                     (>=3.11: bookworm or later)                     (bookworm)
#   --mirror URL      Debian mirror                                   (http://deb.debian.org/debian)
#   --security URL    Debian security mirror                          (http://deb.debian.org/debian-security)
#   --ca-certs DIR    add every *.crt in DIR to the image's trust store (update-ca-certificates).
#                     For hosts whose HTTPS goes through a TLS-inspecting proxy (a corporate
#                     egress, these CI machines): without the proxy's CA, pip inside the image
#                     builds fails with CERTIFICATE_VERIFY_FAILED. The certificates become part
#                     of the base image (and of every qparity image built on it): use it only
#                     for images that stay inside that network.
#   --force           rebuild even if TAG exists
#
# Needs root (mmdebstrap; installed with apt-get when missing) and a running engine
# (docker/start-engine.sh starts one).
set -euo pipefail

SUITE=bookworm
MIRROR=http://deb.debian.org/debian
SECURITY=http://deb.debian.org/debian-security
TAG=
CA_DIR=
FORCE=0

say() { echo "build-base: $*" >&2; }
die() { say "error: $*"; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --tag) TAG=$2; shift 2 ;;
    --suite) SUITE=$2; shift 2 ;;
    --mirror) MIRROR=$2; shift 2 ;;
    --security) SECURITY=$2; shift 2 ;;
    --ca-certs) CA_DIR=$2; shift 2 ;;
    --force) FORCE=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
TAG=${TAG:-qparity/base:$SUITE}

docker info >/dev/null 2>&1 || die "no Docker engine answers (docker/start-engine.sh starts one)"
if [ "$FORCE" = 0 ] && docker image inspect "$TAG" >/dev/null 2>&1; then
  say "$TAG exists ($(docker image inspect --format '{{.Created}}' "$TAG")); --force rebuilds it"
  exit 0
fi
[ "$(id -u)" = 0 ] || die "mmdebstrap needs root"
if ! command -v mmdebstrap >/dev/null; then
  say "apt-get install mmdebstrap"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends mmdebstrap eatmydata >/dev/null
fi

hooks=()
if [ -n "$CA_DIR" ]; then
  compgen -G "$CA_DIR/*.crt" >/dev/null || die "--ca-certs $CA_DIR: no *.crt file there"
  say "adding $(cd "$CA_DIR" && echo ./*.crt | sed 's#\./##g') from $CA_DIR to the trust store"
  hooks+=(--customize-hook="mkdir -p \"\$1/usr/local/share/ca-certificates\" && cp \"$CA_DIR\"/*.crt \"\$1/usr/local/share/ca-certificates/\" && chroot \"\$1\" update-ca-certificates >/dev/null")
fi
# eatmydata makes the bootstrap's dpkg calls skip fsync (the hook ships with mmdebstrap)
[ -d /usr/share/mmdebstrap/hooks/eatmydata ] && command -v eatmydata >/dev/null \
  && hooks+=(--hook-dir=/usr/share/mmdebstrap/hooks/eatmydata)

created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
say "mmdebstrap $SUITE (minbase + python3) | docker import $TAG"
# mmdebstrap runs each hook with the root file system's path as $1: single quotes on purpose
# shellcheck disable=SC2016
mmdebstrap --variant=minbase --quiet \
  --include=python3,python3-venv,python-is-python3,ca-certificates \
  --customize-hook='echo force-unsafe-io > "$1/etc/dpkg/dpkg.cfg.d/docker-unsafe-io"' \
  "${hooks[@]}" \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/*.log "$1"/var/cache/ldconfig/aux-cache' \
  "$SUITE" - \
  "deb $MIRROR $SUITE main" \
  "deb $MIRROR $SUITE-updates main" \
  "deb $SECURITY $SUITE-security main" \
| docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --change "LABEL org.opencontainers.image.title=qparity-base org.opencontainers.image.created=$created org.opencontainers.image.description=Debian-$SUITE-python3-built-by-docker/build-base.sh" \
    --message "docker/build-base.sh: mmdebstrap $SUITE${CA_DIR:+ + CA certificates from $CA_DIR}" \
    - "$TAG" >/dev/null
docker run --rm --network none "$TAG" python -c 'import sys, ssl, venv; print("build-base:", sys.version.split()[0], ssl.OPENSSL_VERSION)' >&2
docker image ls "$TAG"
