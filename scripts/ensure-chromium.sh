#!/usr/bin/env bash
# Debian Chromium for the browser tests and benchmarks: Playwright drives
# /usr/bin/chromium and downloads no browser of its own. Does nothing when it
# is there already; otherwise installs the `chromium` package (as root, or
# through sudo), refreshing the package lists first only if apt does not know it.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-cache show chromium >/dev/null 2>&1; then
  "${sudo[@]}" apt-get update -q
fi
"${sudo[@]}" apt-get install -y -q chromium
test -x /usr/bin/chromium
