#!/usr/bin/env bash
# Makes sure the command-line tools the README's examples use are installed: the docs tests
# (test/docs/) run those examples as written, with curl, jq and openssl.
set -euo pipefail

needed=()
for tool in curl jq openssl; do
  command -v "$tool" >/dev/null 2>&1 || needed+=("$tool")
done
[ ${#needed[@]} -eq 0 ] && exit 0

bash "$(dirname "$0")/apt-install.sh" ensure-tools "install ${needed[*]} with your package manager" "${needed[@]}"
