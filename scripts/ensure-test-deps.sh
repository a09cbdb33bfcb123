#!/usr/bin/env bash
# What `npm test` needs from the system, installed when missing (as root, or
# through sudo), so a fresh Debian machine passes with no step by hand:
#  - Debian's Chromium for the browser tests and benchmarks: Playwright drives
#    /usr/bin/chromium and downloads no browser of its own;
#  - nftables (`nft`) for the NAT routers of the multi-host tests (test/nat-topology.ts;
#    `ip` from iproute2 makes their network namespaces).
# Does nothing when all are there; refreshes the package lists first only if apt
# does not know a package.
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || missing+=(nftables)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || missing+=(iproute2)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
for pkg in "${missing[@]}"; do
  if ! apt-cache show "$pkg" >/dev/null 2>&1; then
    "${sudo[@]}" apt-get update -q
    break
  fi
done
"${sudo[@]}" apt-get install -y -q "${missing[@]}"
test -x /usr/bin/chromium
