# qemu-user for the emulated-CPU tests (tests/test_emulate_qemu.py): installs it when missing
# and makes those tests fail, instead of skip, without it. Sourced by .ci/run.
if ! command -v qemu-x86_64 >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user >/dev/null
  fi
fi
export QPARITY_REQUIRE_QEMU=1
