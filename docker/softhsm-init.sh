#!/bin/sh
# docker/compose.yaml's softhsm-init: creates the SoftHSM token 'hsm-bridge' in the shared volume, once,
# with the user PIN from the compose secret. The SO PIN is random and forgotten: a try-out token is
# thrown away (docker compose down -v), never re-initialised.
set -eu
label=hsm-bridge
mkdir -p /var/lib/hsm-bridge/softhsm
if softhsm2-util --show-slots | grep -q "Label: *$label *\$"; then
  echo "softhsm-init: token $label exists"
  exit 0
fi
softhsm2-util --init-token --free --label "$label" \
  --pin "$(cat /run/secrets/hsm-pin)" \
  --so-pin "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
