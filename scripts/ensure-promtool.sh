#!/usr/bin/env bash
# Makes sure promtool is installed: CI checks and unit-tests the Prometheus alert rules
# (docker/prometheus/alerts.yaml) with it. Debian ships it in the prometheus package.
set -euo pipefail

command -v promtool >/dev/null 2>&1 && exit 0

bash "$(dirname "$0")/apt-install.sh" ensure-promtool "install promtool (Prometheus) with your package manager" prometheus
