#!/usr/bin/env bash
# Installs Debian packages for a test dependency, as root or with passwordless sudo:
#   bash scripts/apt-install.sh <who is asking> <hint for other systems> package...
set -euo pipefail
who=$1 hint=$2
shift 2
echo "$who: installing $* (Debian packages) ..."
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; else
  echo "$who: please install as root: apt-get install -y $*" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "$who: no apt-get here; $hint" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
echo "$who: done"
