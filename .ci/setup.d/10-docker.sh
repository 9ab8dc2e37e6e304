# shellcheck shell=bash
# Sourced by .ci/run (as root, on a clean Debian 12 machine without systemd or a container
# registry): a Docker engine and the local base image for tests/containers/, through the same
# scripts users run (README, "Docker").
#
#   docker/start-engine.sh   installs docker.io/containerd/runc + the Compose v2 plugin when
#                            missing, starts dockerd (does nothing where an engine answers);
#                            the daemon it started is stopped when .ci/run exits
#   docker/build-base.sh     the Python base from Debian packages (no registry here), with the
#                            machine's extra CA certificates when it has any (HTTPS from builds
#                            goes through a TLS-inspecting proxy on these machines)
#
# Exports QPARITY_BASE_IMAGE (the images are built on it) and QPARITY_REQUIRE_CONTAINERS=1 (a
# container test that cannot run fails instead of skipping: CI cannot pass without them).
# Settings: QPARITY_CI_CA_CERTS, the folder of extra CA certificates
# (/usr/local/share/ca-certificates; none there: the base gets Debian's bundle only).

_qp_t0=$SECONDS
docker/start-engine.sh
CI_CLEANUP+=("$PWD/docker/start-engine.sh --stop")
_qp_ca=${QPARITY_CI_CA_CERTS:-/usr/local/share/ca-certificates}
if compgen -G "$_qp_ca/*.crt" >/dev/null; then
  docker/build-base.sh --tag qparity/base:bookworm --ca-certs "$_qp_ca"
else
  docker/build-base.sh --tag qparity/base:bookworm
fi
export QPARITY_BASE_IMAGE=qparity/base:bookworm
export QPARITY_REQUIRE_CONTAINERS=1
echo "ci: docker engine and base image ready in $((SECONDS - _qp_t0)) s" >&2
unset _qp_t0 _qp_ca
