#!/bin/sh
# Debian's Chromium for the web page's browser tests (tests/test_web.py drives it headless with
# playwright's Python package and executable_path=/usr/bin/chromium; no browser is ever
# downloaded by playwright). Installed with apt when missing and running as root; otherwise a
# note only: the browser tests then skip with the reason (and fail under MATCH_REQUIRE_SERVERS=1).
set -eu
CHROMIUM=${MATCH_CHROMIUM:-/usr/bin/chromium}
if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-browser: $CHROMIUM is missing; as root: apt-get install -y chromium" >&2
    exit 0
fi
echo "install-browser: installing Debian's chromium"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver fonts-dejavu-core >/dev/null
