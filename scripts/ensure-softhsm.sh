#!/usr/bin/env bash
# Makes sure SoftHSM (the PKCS#11 token the tests run against) is installed. Tokens themselves are
# created per test suite in temporary directories by test/helpers/softhsm.ts.
set -euo pipefail

needed=()
[ -e /usr/lib/softhsm/libsofthsm2.so ] && command -v softhsm2-util >/dev/null 2>&1 || needed+=(softhsm2)
command -v p11-kit >/dev/null 2>&1 && [ -n "$(find /usr/lib -name p11-kit-client.so 2>/dev/null | head -1)" ] || needed+=(p11-kit p11-kit-modules)
[ ${#needed[@]} -eq 0 ] && exit 0

bash "$(dirname "$0")/apt-install.sh" ensure-softhsm "install SoftHSM 2 (and p11-kit) with your package manager" "${needed[@]}"
