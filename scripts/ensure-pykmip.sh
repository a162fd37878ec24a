#!/usr/bin/env bash
# Makes sure PyKMIP (the real KMIP server the KMIP adapter's tests run against) and the openssl CLI (which
# makes their certificates) are installed. Servers themselves are started per test suite, in temporary
# directories, by test/helpers/pykmip.ts.
set -euo pipefail

needed=()
[ -x /usr/bin/pykmip-server ] && /usr/bin/python3 -c 'import kmip' >/dev/null 2>&1 || needed+=(python3-pykmip)
command -v openssl >/dev/null 2>&1 || needed+=(openssl)
[ ${#needed[@]} -eq 0 ] && exit 0

echo "ensure-pykmip: installing ${needed[*]} (Debian packages) ..."
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; else
  echo "ensure-pykmip: please install as root: apt-get install -y ${needed[*]}" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-pykmip: no apt-get here; install PyKMIP 0.10 (a pykmip-server for /usr/bin/python3) and openssl with your package manager" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${needed[@]}" >/dev/null
echo "ensure-pykmip: done"
