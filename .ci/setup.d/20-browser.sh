# Headless Chromium for the report.html browser test (tests/test_report_html.py).
# Sourced by .ci/run as root on a clean Debian 12 machine; quick when Chromium is already there.
if ! command -v chromium >/dev/null 2>&1; then
  echo "ci: installing Debian's chromium (report.html browser test)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
QPARITY_CHROMIUM="$(command -v chromium)"
# With this set, the browser test fails instead of skipping when Chromium is missing.
export QPARITY_CHROMIUM QPARITY_REQUIRE_BROWSER=1
