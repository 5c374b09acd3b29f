#!/usr/bin/env bash
# Installs what tests/test_browser.py needs: Chromium at /usr/bin/chromium (Debian's
# package; Ubuntu's "chromium" is a snap shim that does not work in containers) and
# Playwright, JupyterLab, Notebook 7 and Voila in the project's .venv. Playwright drives the system
# Chromium, so `playwright install` (a browser download) is not needed.
# Call it from .ci/run after the venv exists:  .ci/browser_setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1

if [ ! -x /usr/bin/chromium ]; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q chromium
fi
/usr/bin/chromium --version

.venv/bin/pip install -q playwright "jupyterlab>=4" "notebook>=7" "voila>=0.5"
# The browser test is marked `browser`; run it alone with:
#   .venv/bin/python -m pytest -q -m browser tests/test_browser.py
