#!/usr/bin/env bash
# Headless Chromium and its matching WebDriver from Debian (chromium, chromium-driver: the same
# version by construction), and Selenium from PyPI in its own venv (.venv-ui), for the KFP UI test.
# Selenium 4.51: 4.52 wants a certifi newer than the package index here serves.
# Idempotent. Usage: hack/kfp/ensure-browser.sh   (prints the venv's python)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SELENIUM_VERSION=${SELENIUM_VERSION:-4.51.0}
VENV=${UI_VENV:-$ROOT/.venv-ui}
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  [[ $(id -u) -eq 0 ]] || { echo "ensure-browser: chromium missing and not root" >&2; exit 3; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-liberation >/dev/null
fi
if [[ ! -f $VENV/.installed-$SELENIUM_VERSION ]]; then
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet "selenium==$SELENIUM_VERSION"
  touch "$VENV/.installed-$SELENIUM_VERSION"
fi
echo "$VENV/bin/python"
