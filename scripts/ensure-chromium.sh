#!/usr/bin/env bash
# Makes sure Debian's Chromium is installed: test/transports/rest/docsPage.test.ts loads the /docs page in
# it (headless, through playwright-core, which downloads no browser of its own).
set -euo pipefail

[ -x /usr/bin/chromium ] && exit 0

bash "$(dirname "$0")/apt-install.sh" ensure-chromium "install Chromium so that it runs as /usr/bin/chromium" chromium
