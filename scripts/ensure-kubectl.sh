#!/usr/bin/env bash
# Makes sure kubectl (with its built-in kustomize) is installed: the deploy tests (test/deploy/) render
# docker/k8s/ with "kubectl kustomize". Debian 12 ships it as kubernetes-client (1.20, kustomize 2.0:
# the manifests keep to what that version reads).
set -euo pipefail

kubectl kustomize --help >/dev/null 2>&1 && exit 0

bash "$(dirname "$0")/apt-install.sh" ensure-kubectl "install kubectl with your package manager" kubernetes-client
