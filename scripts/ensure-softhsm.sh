#!/usr/bin/env bash
# Makes sure SoftHSM (the PKCS#11 token the tests run against) is installed. Tokens themselves are
# created per test suite in temporary directories by test/helpers/softhsm.ts.
set -euo pipefail

needed=()
[ -e /usr/lib/softhsm/libsofthsm2.so ] && command -v softhsm2-util >/dev/null 2>&1 || needed+=(softhsm2)
command -v p11-kit >/dev/null 2>&1 && [ -n "$(find /usr/lib -name p11-kit-client.so 2>/dev/null | head -1)" ] || needed+=(p11-kit p11-kit-modules)
[ ${#needed[@]} -eq 0 ] && exit 0

echo "ensure-softhsm: installing ${needed[*]} (Debian packages) ..."
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; else
  echo "ensure-softhsm: please install as root: apt-get install -y ${needed[*]}" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-softhsm: no apt-get here; install SoftHSM 2 (and p11-kit) with your package manager" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${needed[@]}" >/dev/null
echo "ensure-softhsm: done"
