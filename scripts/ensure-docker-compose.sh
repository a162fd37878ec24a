#!/usr/bin/env bash
# Makes sure the docker-compose client is installed: CI checks docker/compose.yaml with
# `docker-compose config`, which parses and validates the file without a Docker engine.
set -euo pipefail

command -v docker-compose >/dev/null 2>&1 && exit 0

bash "$(dirname "$0")/apt-install.sh" ensure-docker-compose "install docker-compose (Debian's 1.29, or the Compose v2 plugin: then run 'docker compose config')" docker-compose
