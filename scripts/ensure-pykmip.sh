#!/usr/bin/env bash
# Makes sure PyKMIP (the real KMIP server the KMIP adapter's tests run against) and the openssl CLI (which
# makes their certificates) are installed. Servers themselves are started per test suite, in temporary
# directories, by test/helpers/pykmip.ts.
set -euo pipefail

needed=()
[ -x /usr/bin/pykmip-server ] && /usr/bin/python3 -c 'import kmip' >/dev/null 2>&1 || needed+=(python3-pykmip)
command -v openssl >/dev/null 2>&1 || needed+=(openssl)
[ ${#needed[@]} -eq 0 ] && exit 0

bash "$(dirname "$0")/apt-install.sh" ensure-pykmip "install PyKMIP 0.10 (a pykmip-server for /usr/bin/python3) and openssl with your package manager" "${needed[@]}"
